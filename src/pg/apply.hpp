// Applying a peer's stream (dispatch and commit): one remote transaction is
// one local transaction, committed with the origin's commit LSN and time so
// that progress and data commit atomically. Each change goes through the
// relation map (relation_map.hpp), the executor (apply_heap.hpp) and, when
// it meets a local row it competes with, the table's resolver
// (conflicts.hpp). pgmesh's logical messages go to their subsystems through
// one router (message_router.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "conflicts.hpp"
#include "guard.hpp"
#include "mesh_message.hpp"
#include "message_router.hpp"
#include "postgres_headers.hpp"
#include "protocol.hpp"
#include "relation_map.hpp"

namespace pgmesh::apply {

class Applier {
public:
    explicit Applier(ApplyIdentity identity);
    Applier(const Applier &) = delete;
    Applier &operator=(const Applier &) = delete;

    // Applies one message. BEGIN opens the local transaction, COMMIT commits
    // it.
    void handle(const proto::Decoded &message);
    bool in_transaction() const { return position_.in_transaction; }
    const proto::Begin &current() const { return position_.transaction; }

    // Relcache invalidation: forget local lookups (all when relid is 0).
    void invalidate(Oid relid) { relations_.invalidate(relid); }

    // Records the failure of the current change in history and counters.
    // The failed transaction must have been rolled back.
    void record_failure(const pg::Error &error) { conflicts_.record_failure(error); }

    // The remote transaction with this commit LSN is thrown away instead of
    // applied (pgmesh.skip_transaction), once.
    void skip_transaction_at(uint64_t commit_lsn) { skip_lsn_ = commit_lsn; }
    bool skipping() const { return skipping_; }
    // Whether the last (or current) transaction ran replicated DDL. Its
    // holder may wait for our feedback to release the global lock.
    bool replayed_ddl() const { return replayed_ddl_; }
    // The newest clock tick of the peer applied (mesh::ClockTick), 0 before
    // the first: everything the peer committed before it is applied here.
    int64_t clock_tick() const { return clock_tick_; }

    // The error context line of where apply is ("processing remote
    // transaction ... from node ... with commit LSN ..., INSERT on table
    // ..."), as PostgreSQL's apply worker reports it; empty between
    // transactions. Writes into `buf` (always terminated); no allocation, so
    // that an error context callback may call it.
    void describe_position(char *buf, size_t size) const noexcept;

private:
    void begin(const proto::Begin &begin);
    void commit(const proto::Commit &commit);
    void apply_change(const proto::Decoded &message);
    // The relation of a change, up to date; becomes the current one.
    RelationMap &relation(uint32_t remote_relid);

    // These two return false when a local transaction committed a row with
    // a colliding key between the probe and the insert: the change is then
    // run again, and the probe now finds that row.
    [[nodiscard]] bool apply_insert(RelationMap &map, const proto::Insert &m);
    [[nodiscard]] bool apply_update(RelationMap &map, const proto::Update &m);
    // An UPDATE whose row is not here: by the key's tombstone (or none), the
    // row comes back or the update is dropped.
    [[nodiscard]] bool update_where_no_row(ChangeState &cs, RelationMap &map,
                                           const proto::Update &m, TupleTableSlot *updated);
    void apply_delete(RelationMap &map, const proto::Delete &m);
    void apply_truncate(const proto::Truncate &m);
    // Records the TRUNCATE's tombstone of the table and deletes its rows
    // that are older than the TRUNCATE. Returns whether a newer row stays;
    // if not, nothing was deleted and the table is to be truncated whole.
    bool truncate_keeping_newer_rows(const RelationMap &map);
    void apply_message(const proto::Message &m);
    // Replicated DDL (core/mesh_message.hpp): run as its role, here, in
    // the remote transaction that carries it.
    void apply_ddl(const proto::Message &m);
    // A message with one of pgmesh's prefixes that pgmesh does not send
    // (some role emitted it): a WARNING, and nothing else.
    void ignore_forged(const proto::Message &m, const char *what) const;
    // The group key's MAC, read once (needs an open transaction).
    const mesh::Mac &mac();

    ApplyIdentity identity_;
    Position position_;
    RelationMaps relations_;
    Conflicts conflicts_{identity_, position_};
    // Handlers of pgmesh's logical messages: the DDL and global lock
    // subsystems add theirs here.
    messages::Router router_;
    uint64_t resolvers_version_ = 0;  // read at each BEGIN
    // The transaction changed pgmesh.conflict_resolver: at commit, every
    // apply worker of this database is told to read resolvers again.
    bool resolvers_changed_ = false;
    uint64_t skip_lsn_ = 0;
    bool skipping_ = false;
    bool replayed_ddl_ = false;
    int64_t clock_tick_ = 0;
    MemoryContext message_context_;  // reset after every message
    std::optional<mesh::Mac> mac_;
};

}  // namespace pgmesh::apply
