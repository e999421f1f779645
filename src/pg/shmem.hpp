// Shared memory of pgmesh: one slot per apply worker (what pgmesh.status
// shows), one per database (its manager and the pause switch), and a fixed
// table of snowflake sequences. Plain C layout: every backend maps it at the
// same address. The workers and databases are guarded by one LWLock, the
// snowflake table by one of its own (it is taken for every id handed out).
#pragma once

#include <cstdint>

#include "conflict.hpp"
#include "ddl_lock.hpp"
#include "postgres_headers.hpp"

namespace pgmesh::shmem {

inline constexpr int kErrorLength = 512;

struct WorkerSlot {
    bool in_use;
    Oid dboid;
    uint64_t peer_node_id;
    pid_t pid;  // 0 while no worker runs for this peer
    PGPROC *proc;
    bool connected;
    uint64_t received_lsn;         // peer's WAL position last reported to us
    uint64_t applied_lsn;          // end of the last applied remote commit
    TimestampTz last_commit_time;  // origin commit time of that transaction
    TimestampTz last_message_time;
    // Every transaction the peer committed before this time (its clock) is
    // applied here: its newest clock tick or applied commit. Tombstones wait
    // for every peer's (tombstones.hpp). 0: not known since the server
    // started.
    TimestampTz caught_up_to;
    uint64_t applied_transactions;
    uint64_t conflicts[conflict::kTypeCount];
    uint64_t skip_lsn;  // pgmesh.skip_transaction: commit LSN to throw away
    // The failure that last stopped this worker (remote commit LSN, conflict
    // type): a retry that fails the same way is not counted again.
    uint64_t failed_lsn;
    int failed_type;
    bool retry_now;  // skip our backoff: the operator fixed something
    // Waiting before applying more from this peer, which holds a write lock,
    // until every other peer's grant has been applied (ddl_lock.hpp).
    bool waiting_for_lock;
    // At a transaction boundary and staying there while the database's
    // apply is held (pgmesh.hold_apply): a join reads origin positions that
    // match its snapshot exactly.
    bool holding;
    char last_error[kErrorLength];
};

struct DatabaseSlot {
    bool in_use;
    Oid dboid;
    pid_t manager_pid;
    PGPROC *manager_proc;
    bool apply_paused;
    int apply_holds;  // sessions in pgmesh.hold_apply until their transaction ends
    bool is_node;     // the database has a pgmesh node: keep a manager running
    // Bumped by every request for a manager (a node was created or joined):
    // a manager that read the catalog before the request must not clear
    // is_node on what it read.
    uint64_t node_requests;
    uint64_t resolvers_version;  // bumped when pgmesh.conflict_resolver changes
    ddl_lock::Slot lock;         // the global DDL/write lock as this node sees it
    // A forwarding worker (pgmesh.forward_missing) runs: set by the call
    // that starts it, cleared when it exits.
    bool forward_running;
    // Why the last forwarding worker stopped short; empty when it did not.
    char forward_error[kErrorLength];
};

// One sequence that pgmesh.snowflake_nextval hands out ids for, in one
// database (src/pg/snowflake.cpp). Every id handed out is at most
// `reserved`, the value the sequence holds on disk. A slot can be taken for
// another sequence at any time: the sequence's value is all it needs to
// start again.
struct SnowflakeSlot {
    Oid dboid;  // InvalidOid: free
    Oid seqoid;
    int64_t last_issued;
    int64_t reserved;
    uint64_t last_used;  // State::snowflake_clock at the last use: the oldest goes first
};

// Sequences in use at once, over all databases, before the least recently
// used is read back from its sequence on its next use.
inline constexpr int kSnowflakeSlots = 256;

struct State {
    LWLock *lock;
    int nworkers;
    int ndatabases;
    PGPROC *supervisor_proc;
    LWLock *snowflake_lock;
    uint64_t snowflake_clock;
    SnowflakeSlot snowflake[kSnowflakeSlots];
    // WorkerSlot workers[nworkers] then DatabaseSlot databases[ndatabases]
};

void request();  // from _PG_init: reserve space and the lock
State &state();  // attach (idempotent) and return
WorkerSlot *workers();
DatabaseSlot *databases();

// Finds or claims the slot for (db, peer); nullptr when all are taken.
// Caller holds the lock exclusively.
WorkerSlot *worker_slot(Oid dboid, uint64_t peer_node_id, bool create);
DatabaseSlot *database_slot(Oid dboid, bool create);

// The slot of (db, sequence), claimed if missing (a new slot knows of no id:
// last_issued and reserved are INT64_MIN). Caller holds snowflake_lock
// exclusively.
SnowflakeSlot *snowflake_slot(Oid dboid, Oid seqoid);

// Whether the database is a pgmesh node (its manager runs). Takes the lock.
bool is_node(Oid dboid);

// Wakes the manager and apply workers of a database (after catalog or pause
// changes).
void wake_database(Oid dboid);

}  // namespace pgmesh::shmem
