// Conflicts met while applying (as PostgreSQL's logical/conflict.c): the
// version of a local row, the decision by the table's resolver (conflict.hpp
// has the rules, user functions are called here), and the record of each
// conflict in pgmesh.conflict_history and the counters of pgmesh.status.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "apply_heap.hpp"
#include "conflict.hpp"
#include "guard.hpp"
#include "postgres_headers.hpp"
#include "protocol.hpp"
#include "relation_map.hpp"
#include "versions.hpp"

namespace pgmesh::apply {

// Who is applying: this node, the peer streamed from.
struct ApplyIdentity {
    Oid dboid = InvalidOid;
    uint64_t local_node_id = 0;
    uint64_t peer_node_id = 0;
    std::string peer_name;
    int64_t copied_until = 0;  // catalog::Nodes::copied_until
};

// Where apply is: the remote transaction and the change being applied. The
// history and the error context report it.
struct Position {
    bool in_transaction = false;
    proto::Begin transaction;               // valid while in_transaction
    const char *change = nullptr;           // "INSERT", ...; nullptr between changes
    const RelationMap *relation = nullptr;  // of the change, once known
};

// A conflict whose resolution is to stop apply; carries what the history
// needs after the transaction is rolled back.
class ConflictError : public pg::Error {
public:
    ConflictError(conflict::Type conflict_type, int sqlerrcode, std::string message,
                  std::string detail, std::string hint)
        : pg::Error(sqlerrcode, std::move(message), std::move(detail), std::move(hint)),
          type(conflict_type) {}
    conflict::Type type;
    std::string local_json;
    std::string remote_json;
};

class Conflicts {
public:
    Conflicts(const ApplyIdentity &identity, const Position &position)
        : identity_(identity),
          position_(position),
          versions_(identity.local_node_id, identity.copied_until) {}
    Conflicts(const Conflicts &) = delete;
    Conflicts &operator=(const Conflicts &) = delete;

    // The row version of a local tuple: its commit time and writing node.
    conflict::Version version_of(Relation rel, TupleTableSlot *slot);
    // The version of the remote transaction being applied.
    conflict::Version remote_version() const;
    // Records a conflict decided by the caller (pending until
    // write_pending()).
    void record(conflict::Type type, conflict::Resolution resolution, TupleTableSlot *local,
                TupleTableSlot *remote, int64_t local_commit_time);

    // Whether the local row was last written by a node other than the peer
    // (origin differs). The join's copy and frozen rows count as no node.
    bool written_by_another_node(Relation rel, TupleTableSlot *local);

    // Decides a conflict by the table's resolver and records it (pending
    // until write_pending()); returns what to do. `remote` may be replaced by
    // a user function's row. A resolution of "error" throws ConflictError.
    // Without a local row, `missing_version` is what the key holds instead
    // (its tombstone's version, or none).
    conflict::Resolution decide(ChangeState &cs, const RelationMap &map, conflict::Type type,
                                TupleTableSlot *local, TupleTableSlot *&remote,
                                conflict::Version missing_version = {});

    // What the key holds here (conflict::KeyState): the row in `local` when
    // `found`, otherwise the tombstone of `key` (tombstones::key_of), if
    // any.
    conflict::KeyState key_state(bool found, TupleTableSlot *local, Relation rel, Datum key);

    // Writes the conflicts of the change just applied to the history, as
    // pgmesh (never as the table's owner).
    void write_pending();
    // Forgets them: their transaction is rolled back.
    void discard_pending() { pending_.clear(); }

    // Records the failure of the current change, a conflict resolved as an
    // error or any other error (apply_error), in history and counters, in a
    // transaction of its own. The failed transaction must have been rolled
    // back.
    void record_failure(const pg::Error &error);

private:
    // A conflict to write to the history once the change that met it is
    // done.
    struct Pending {
        conflict::Type type;
        conflict::Resolution resolution;
        std::string local_json;
        std::string remote_json;
        int64_t local_commit_time = 0;
    };

    void insert_history_row(const Pending &conflict, const char *message);
    void count(conflict::Type type);
    // Whether this failure (of this remote transaction, same conflict type)
    // was already recorded: a stopped worker meets it at every retry.
    bool repeats_last_failure(conflict::Type type);

    const ApplyIdentity &identity_;
    const Position &position_;
    versions::Reader versions_;
    std::vector<Pending> pending_;
};

}  // namespace pgmesh::apply
