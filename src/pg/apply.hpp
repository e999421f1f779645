// Applying decoded pgmesh messages to local tables through the executor:
// rows are found by their primary key index and inserted, updated or deleted
// with index maintenance, constraints and (ENABLE ALWAYS/REPLICA) triggers,
// as PostgreSQL's own apply worker does; never by building SQL text.
//
// One remote transaction is one local transaction; the caller (the apply
// worker) commits it with the origin's commit LSN and time, so progress and
// data commit atomically.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "conflict.hpp"
#include "guard.hpp"
#include "postgres_headers.hpp"
#include "protocol.hpp"

namespace pgmesh::apply {

// How one remote column lands in the local table.
struct ColumnMap {
    AttrNumber local_attnum = InvalidAttrNumber;  // 0: no such local column
    Oid local_type = InvalidOid;
    int32 local_typmod = -1;
    Oid input_ioparam = InvalidOid;
    FmgrInfo text_input;    // typinput
    FmgrInfo binary_input;  // typreceive
    bool has_binary_input = false;
    // The remote column has another (built-in) type, e.g. int4 against int8:
    // a binary value is read as the remote type and converted through text.
    bool converts = false;
    Oid remote_ioparam = InvalidOid;
    FmgrInfo remote_receive;
    FmgrInfo remote_output;
};

// A unique index other than the primary key, checked for update_exists and
// for inserts colliding on it.
struct UniqueIndex {
    Oid oid = InvalidOid;
    std::vector<AttrNumber> attnums;
};

// How the table resolves each conflict type (pgmesh.conflict_resolver).
struct ResolverChoice {
    conflict::Resolver resolver = conflict::Resolver::kError;
    Oid function = InvalidOid;  // for kUserFunction
};

struct RelationMap {
    proto::Relation remote;
    bool resolved = false;  // local side looked up since the last invalidation
    Oid local_relid = InvalidOid;
    Oid owner = InvalidOid;  // changes are applied as this role
    Oid key_index = InvalidOid;
    std::vector<ColumnMap> columns;  // one per remote column
    // Local columns the peer does not send: an inserted row gets their
    // DEFAULT, an updated row keeps its value.
    std::vector<AttrNumber> local_only;
    std::vector<UniqueIndex> unique_indexes;
    std::array<ResolverChoice, conflict::kTypeCount> resolvers;
    uint64_t resolvers_version = UINT64_MAX;  // shmem version they were read at
};

// Who is applying: this node, the peer streamed from.
struct ApplyIdentity {
    Oid dboid = InvalidOid;
    uint64_t local_node_id = 0;
    uint64_t peer_node_id = 0;
    std::string peer_name;
    int64_t copied_until = 0;  // catalog::Nodes::copied_until
};

// Executor state for one change (apply.cpp).
struct ChangeState;

// A conflict to write to pgmesh.conflict_history once the change that met it
// is done (history is written as pgmesh, never as the table's owner).
struct PendingConflict {
    conflict::Type type;
    conflict::Resolution resolution;
    std::string local_json;
    std::string remote_json;
    int64_t local_commit_time = 0;
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

class Applier {
public:
    explicit Applier(ApplyIdentity identity);
    ~Applier();
    Applier(const Applier &) = delete;
    Applier &operator=(const Applier &) = delete;

    // Applies one message. BEGIN opens the local transaction; COMMIT is
    // returned to the caller to commit (see commit()).
    void handle(const proto::Decoded &message);
    void commit(const proto::Commit &commit);
    bool in_transaction() const { return in_remote_transaction_; }
    const proto::Begin &current() const { return begin_; }

    // Relcache invalidation: forget local lookups (all when relid is 0).
    void invalidate(Oid relid);

    // Records the failure of the current change, a conflict resolved as an
    // error or any other error (apply_error), in history and counters. The
    // failed transaction must have been rolled back.
    void record_failure(const pg::Error &error, const std::string &message);

    // The remote transaction with this commit LSN is thrown away instead of
    // applied (pgmesh.skip_transaction), once.
    void skip_transaction_at(uint64_t commit_lsn) { skip_lsn_ = commit_lsn; }
    bool skipping() const { return skipping_; }

private:
    RelationMap &relation(uint32_t remote_relid);
    void resolve(RelationMap &map);
    void lookup_local(RelationMap &map);
    void load_resolvers(RelationMap &map);

    // These two return false when a local transaction committed a row with
    // a colliding key between the probe and the insert: the change is then
    // run again, and the probe now finds that row.
    [[nodiscard]] bool apply_insert(RelationMap &map, const proto::Insert &m);
    [[nodiscard]] bool apply_update(RelationMap &map, const proto::Update &m);
    void apply_delete(RelationMap &map, const proto::Delete &m);
    void apply_truncate(const proto::Truncate &m);

    // The row version of a local tuple: its commit time and writing node.
    conflict::Version version_of(TupleTableSlot *slot);
    uint64_t node_of_origin(RepOriginId origin);
    // Whether the local row was last written by a node other than the peer
    // (origin differs).
    bool written_by_another_node(TupleTableSlot *local);
    conflict::Version remote_version() const;
    // Decides a conflict, records it (history, counters) and returns what to
    // do. `remote` may be replaced by a user function's row.
    conflict::Resolution decide(ChangeState &cs, RelationMap &map, conflict::Type type,
                                TupleTableSlot *local, TupleTableSlot *&remote);
    void record(conflict::Type type, conflict::Resolution resolution, TupleTableSlot *local,
                TupleTableSlot *remote);
    // Writes the conflicts of the change just applied to the history.
    void write_pending_conflicts();
    void insert_history_row(const PendingConflict &conflict, const char *message);
    void count(conflict::Type type);
    // Whether this failure (of this remote transaction, same conflict type)
    // was already recorded: a stopped worker meets it at every retry.
    bool repeats_last_failure(conflict::Type type);

    ApplyIdentity identity_;
    std::unordered_map<uint32_t, RelationMap> relations_;
    std::unordered_map<RepOriginId, uint64_t> origin_nodes_;
    const RelationMap *current_relation_ = nullptr;  // of the change being applied
    std::vector<PendingConflict> pending_conflicts_;
    uint64_t resolvers_version_ = 0;  // read at each BEGIN
    uint64_t skip_lsn_ = 0;
    bool skipping_ = false;
    MemoryContext message_context_;  // reset after every message
    MemoryContext cache_context_;    // FmgrInfo of the column maps
    bool in_remote_transaction_ = false;
    proto::Begin begin_;
};

}  // namespace pgmesh::apply
