// Conflict rules: which conflicts exist, which resolvers a table may choose,
// and the deterministic decision every node makes. Pure C++ so that the rules
// are unit-tested apart from the executor that detects the conflicts.
//
// Convergence rests on one ordering rule for every operation on a key: each
// row version and each delete carries (origin commit time, origin node id),
// the same on every node that holds it, and every node keeps the greatest
// (docs/conflicts.md). A delete leaves a tombstone with its version, so that
// an older insert or update arriving later loses to it. classify(), resolve()
// and outcome() below are the whole rule; apply calls them, and the unit
// tests run them over every delivery order of small histories.
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
    kInsertDeleted,  // a remote INSERT finds the key's tombstone
    kUpdateDeleted,  // a remote UPDATE finds the key's tombstone
};
inline constexpr int kTypeCount = 10;

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

// A remote change, as the rule sees it: what it does to its key.
enum class Change : uint8_t { kInsert, kUpdate, kDelete };

// What a key holds on this node when a remote change for it arrives: nothing
// (never written here, or its tombstone was collected), a row, or the
// tombstone of a delete; with the version of the row or the tombstone.
struct KeyState {
    enum class Kind : uint8_t { kNothing, kRow, kTombstone };
    Kind kind = Kind::kNothing;
    Version version;
};

// The conflict a change from `peer` meets on its key, or none when the
// change simply applies: the key holds nothing and the change is an insert,
// or what it holds was written by the peer itself (its stream is in commit
// order) or predates every change (version node 0: frozen rows).
std::optional<Type> classify(Change change, const KeyState &local, uint64_t peer);

// What the key holds after the change.
enum class Outcome : uint8_t {
    kUnchanged,     // the local row or tombstone stays
    kRemoteRow,     // the remote row: inserted, or replacing the local row
    kRemoteDelete,  // no row, and a tombstone with the remote version
};
// `resolution` is the decision on classify()'s conflict (std::nullopt when
// there was none); kError never gets here (apply stops instead).
Outcome outcome(Change change, std::optional<Resolution> resolution);

// The decision for a conflict under a resolver. kUserFunction is not decided
// here (the caller runs the function); asking for it is a logic error.
Resolution resolve(Type type, Resolver resolver, const Version &local, const Version &remote);

// The default resolver of each conflict type: last-update-wins wherever a
// change meets a row, a tombstone or nothing (against nothing the change
// wins), errors stop apply.
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
