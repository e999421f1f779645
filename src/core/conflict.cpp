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
                                                                 "apply_error"};

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

}  // namespace

bool newer(const Version &a, const Version &b) {
    if (a.commit_time != b.commit_time) return a.commit_time > b.commit_time;
    return a.node_id > b.node_id;
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
            return row_missing(type) ? Resolution::kSkip : Resolution::kKeepLocal;
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
            return Resolver::kLastUpdateWins;
        case Type::kUpdateMissing:
        case Type::kDeleteMissing:
            return Resolver::kKeepLocal;  // i.e. skip: the row is gone here
        case Type::kDeleteOriginDiffers:
            return Resolver::kApplyRemote;  // delete wins over a concurrent update
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
    if (row_missing(type))
        // No local version to compare with or hand to a function.
        return resolver == Resolver::kApplyRemote || resolver == Resolver::kKeepLocal ||
               resolver == Resolver::kError;
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
