// Conflict rules: which conflicts exist, which resolvers a table may choose,
// and the deterministic decision every node makes. Pure C++ so that the rules
// are unit-tested apart from the executor that detects the conflicts.
//
// Convergence rests on every node deciding the same way from the same facts:
// a row version is identified by (origin commit time, origin node id), which
// is the same on every node that holds it.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace pgmesh::conflict {

// Names follow PostgreSQL 18's conflict types, plus apply_error.
enum class Type : uint8_t {
    kInsertExists,
    kUpdateOriginDiffers,
    kUpdateExists,
    kUpdateMissing,
    kDeleteOriginDiffers,
    kDeleteMissing,
    kMultipleUniqueConflicts,
    kApplyError,
};
inline constexpr int kTypeCount = 8;

enum class Resolver : uint8_t {
    kLastUpdateWins,
    kFirstUpdateWins,
    kApplyRemote,
    kKeepLocal,
    kError,
    kUserFunction,  // decided by a SQL function the table names
};

// What apply does about one conflict.
enum class Resolution : uint8_t {
    kApplyRemote,  // write the remote change (for *_missing: insert it / nothing to delete)
    kKeepLocal,    // leave the local row, skip the remote change
    kSkip,         // nothing to act on (the row is gone)
    kError,        // stop this peer's apply with an error
};

// A row version: who wrote it and when (origin commit timestamp, PostgreSQL
// TimestampTz). Rows frozen before commit timestamps were tracked have
// commit_time 0.
struct Version {
    int64_t commit_time = 0;
    uint64_t node_id = 0;
};

// Later commit time wins; equal times are broken by the larger node id, so
// that every node picks the same winner.
bool newer(const Version &a, const Version &b);

// The decision for a conflict under a resolver. kUserFunction is not decided
// here (the caller runs the function); asking for it is a logic error.
Resolution resolve(Type type, Resolver resolver, const Version &local, const Version &remote);

// The default resolver of each conflict type: last-update-wins where two
// versions compete, delete wins over a concurrent update, errors stop apply.
Resolver default_resolver(Type type);

// Whether a resolver makes sense for a conflict type (e.g. nothing can be
// "kept" when the local row is missing).
bool allowed(Type type, Resolver resolver);

std::string_view name(Type type);
std::string_view name(Resolver resolver);
std::string_view name(Resolution resolution);
std::optional<Type> parse_type(std::string_view text);
// Built-in resolver names only; a function is given by its signature.
std::optional<Resolver> parse_resolver(std::string_view text);

}  // namespace pgmesh::conflict
