#include "conflict.hpp"

#include <array>
#include <stdexcept>

#include "cpp_only.hpp"

namespace pgmesh::conflict {

namespace {

constexpr std::array<std::string_view, kTypeCount> kTypeNames = {"insert_exists",
                                                                 "update_origin_differs",
                                                                 "update_exists",
                                                                 "update_missing",
                                                                 "delete_origin_differs",
                                                                 "delete_missing",
                                                                 "multiple_unique_conflicts",
                                                                 "apply_error",
                                                                 "insert_deleted",
                                                                 "update_deleted"};

constexpr std::array<std::string_view, 6> kResolverNames = {
    "last_update_wins", "first_update_wins", "apply_remote", "keep_local", "error",
    "user_function"};

bool row_missing(Type type) {
    return type == Type::kUpdateMissing || type == Type::kDeleteMissing;
}

bool two_versions(Type type) {
    return type == Type::kInsertExists || type == Type::kUpdateOriginDiffers ||
           type == Type::kUpdateExists || type == Type::kDeleteOriginDiffers;
}

// Against a tombstone or nothing: versions compare, but there is no local
// row to keep or to hand to a function.
bool no_local_row(Type type) {
    return row_missing(type) || type == Type::kInsertDeleted || type == Type::kUpdateDeleted;
}

}  // namespace

bool newer(const Version &a, const Version &b) {
    if (a.commit_time != b.commit_time) return a.commit_time > b.commit_time;
    return a.node_id > b.node_id;
}

std::optional<Type> classify(Change change, const KeyState &local, uint64_t peer) {
    using Kind = KeyState::Kind;
    if (local.kind == Kind::kNothing) {
        if (change == Change::kInsert) return std::nullopt;
        return change == Change::kUpdate ? Type::kUpdateMissing : Type::kDeleteMissing;
    }
    if (local.version.node_id == 0 || local.version.node_id == peer) return std::nullopt;
    if (local.kind == Kind::kRow) {
        switch (change) {
            case Change::kInsert:
                return Type::kInsertExists;
            case Change::kUpdate:
                return Type::kUpdateOriginDiffers;
            case Change::kDelete:
                return Type::kDeleteOriginDiffers;
        }
    }
    switch (change) {
        case Change::kInsert:
            return Type::kInsertDeleted;
        case Change::kUpdate:
            return Type::kUpdateDeleted;
        case Change::kDelete:
            return Type::kDeleteMissing;
    }
    return std::nullopt;
}

Outcome outcome(Change change, std::optional<Resolution> resolution) {
    if (resolution && *resolution != Resolution::kApplyRemote) return Outcome::kUnchanged;
    return change == Change::kDelete ? Outcome::kRemoteDelete : Outcome::kRemoteRow;
}

Resolution resolve(Type type, Resolver resolver, const Version &local, const Version &remote) {
    if (!allowed(type, resolver))
        throw std::logic_error("resolver " + std::string(name(resolver)) + " for " +
                               std::string(name(type)));
    switch (resolver) {
        case Resolver::kError:
            return Resolution::kError;
        case Resolver::kApplyRemote:
            return Resolution::kApplyRemote;
        case Resolver::kKeepLocal:
            return no_local_row(type) ? Resolution::kSkip : Resolution::kKeepLocal;
        case Resolver::kLastUpdateWins:
            return newer(remote, local) ? Resolution::kApplyRemote : Resolution::kKeepLocal;
        case Resolver::kFirstUpdateWins:
            return newer(remote, local) ? Resolution::kKeepLocal : Resolution::kApplyRemote;
        case Resolver::kUserFunction:
            break;
    }
    throw std::logic_error("the user function resolver is decided by its function");
}

Resolver default_resolver(Type type) {
    switch (type) {
        case Type::kInsertExists:
        case Type::kUpdateOriginDiffers:
        case Type::kUpdateExists:
        case Type::kDeleteOriginDiffers:
        case Type::kInsertDeleted:
        case Type::kUpdateDeleted:
        // Against nothing the change is newer (Version{} is older than any
        // change): an update re-creates its row, a delete leaves its
        // tombstone.
        case Type::kUpdateMissing:
        case Type::kDeleteMissing:
            return Resolver::kLastUpdateWins;
        case Type::kMultipleUniqueConflicts:
        case Type::kApplyError:
            return Resolver::kError;
    }
    return Resolver::kError;
}

bool allowed(Type type, Resolver resolver) {
    switch (type) {
        case Type::kMultipleUniqueConflicts:
        case Type::kApplyError:
            return resolver == Resolver::kError;
        default:
            break;
    }
    if (no_local_row(type))
        // No local row to hand to a function.
        return resolver != Resolver::kUserFunction;
    return two_versions(type);
}

std::string_view name(Type type) {
    return kTypeNames.at(static_cast<size_t>(type));
}
std::string_view name(Resolver resolver) {
    return kResolverNames.at(static_cast<size_t>(resolver));
}
std::string_view name(Resolution resolution) {
    switch (resolution) {
        case Resolution::kApplyRemote:
            return "apply_remote";
        case Resolution::kKeepLocal:
            return "keep_local";
        case Resolution::kSkip:
            return "skip";
        case Resolution::kError:
            return "error";
    }
    return "error";
}

std::optional<Type> parse_type(std::string_view text) {
    for (size_t i = 0; i < kTypeNames.size(); i++)
        if (kTypeNames[i] == text) return static_cast<Type>(i);
    return std::nullopt;
}

std::optional<Resolver> parse_resolver(std::string_view text) {
    for (size_t i = 0; i + 1 < kResolverNames.size(); i++)  // not "user_function"
        if (kResolverNames[i] == text) return static_cast<Resolver>(i);
    return std::nullopt;
}

}  // namespace pgmesh::conflict
