// The global DDL/write lock on this node (docs/ddl.md): the state machine of
// core/global_lock.hpp kept in shared memory, and the four kinds of process
// that drive it:
//  - a backend running replicated DDL asks for the lock and waits for every
//    ready peer's grant (acquire());
//  - apply workers feed it the lock messages of their peer's stream
//    (on_message()), and before applying more from a write-lock holder wait
//    until every other peer's grant has been applied here;
//  - the manager sends what the machine decides (grants, releases, resets);
//  - the apply worker from a write-lock holder holds the write blocks here:
//    session-level locks on a per-table "write gate" that every local writer
//    takes in a shared mode (block_writes_to()). Being the process that then
//    applies the holder's DDL, it cancels the writers waiting at its gates
//    that would otherwise deadlock with that DDL (before_replay());
//  - pgmesh.global_lock shows it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "catalog.hpp"
#include "global_lock.hpp"
#include "mesh_message.hpp"
#include "postgres_headers.hpp"
#include "protocol.hpp"

namespace pgmesh::ddl_lock {

inline constexpr int kMaxTables = 64;
inline constexpr int kOutboxSize = 64;

// What the manager has to send or do, in order.
enum class Out : uint8_t { kGrant, kRelease, kUnblock, kRequestAgain };
struct OutItem {
    Out kind;
    glock::Lock lock;
};

// Per database, in shared memory (shmem::DatabaseSlot), under the pgmesh
// LWLock. Zeroed memory is the free state.
struct Slot {
    glock::State state;
    // The local holder: its backend (woken by grants) and the tables its
    // write lock blocks.
    PGPROC *holder_proc;
    bool request_all;
    int request_count;
    NameData request_schema[kMaxTables];
    NameData request_table[kMaxTables];
    // A remote write lock granted here: the tables the manager blocks.
    uint64_t block_lock_id;
    bool block_all;
    int block_count;
    Oid block_relids[kMaxTables];
    // The write blocks the holder's apply worker has taken, for this round.
    uint64_t gates_lock_id;
    uint32_t gates_seq;
    // Set by that worker while it replays the holder's DDL, until that
    // transaction ends: writers at its gates would be in the DDL's way.
    bool replaying_ddl;
    // kReleasing: RELEASE goes out once every peer applied this LSN.
    uint64_t release_after_lsn;
    bool reset_sent;           // RESET goes out once per server start,
    uint64_t reset_after_lsn;  // once every peer confirmed this (WAL end at start)
    // The manager put pgmesh.granted_write_lock back (once per server start).
    bool restored;
    int out_count;
    OutItem out[kOutboxSize];
};

// The tables a write lock blocks: schema-qualified names, or all.
struct Tables {
    bool all = false;
    std::vector<std::pair<std::string, std::string>> names;
};

// Backend: takes the global lock at `strength` for the current transaction
// (or upgrades the one it holds), waiting up to pgmesh.ddl_lock_timeout for
// every ready peer. Throws 55P03 naming the nodes that did not answer.
// Returns the lock id. The lock is released when the transaction ends.
uint64_t acquire(mesh::Strength strength, const Tables &tables, const catalog::Nodes &nodes);

// Whether this backend's transaction holds (or asks for) the global lock.
bool held();

// Backend, before it writes to `relid`: waits while a remote write lock
// blocks writes to it (or to every table) here, by taking the write gates of
// the table, of the partitioned tables above it and of "every table" in a
// shared mode until the transaction ends. Plain C (inside pg::call); does
// nothing for apply workers, for tables that do not replicate, and in
// databases that are not nodes (after waiting, in a just-started server,
// for a granted lock to be put back: wait_until_restored()). A writer
// canceled at a gate by before_replay() fails with 40P01 saying why.
void block_writes_to(Oid relid);

// Apply worker, before it runs replicated DDL from the peer it streams from:
// if it holds that peer's write blocks, cancels the local writers that wait
// at the gates, and takes SHARE on the blocked tables (and their partitions)
// for the rest of the transaction, which holds up new writers there. Such a
// writer holds a lock on the table that the DDL needs while it waits for a
// gate this worker holds: left alone, the two would wait for each other
// until the deadlock detector canceled one of them, after deadlock_timeout,
// possibly this worker. The writers get 40P01 and a hint to retry at once
// instead, and so do writers that reach a gate until the transaction ends.
// Needs an open transaction. Takes the write blocks first if this worker
// does not hold them yet for a lock granted to `peer`.
void before_replay(uint64_t peer);

// Apply worker: a lock message from `peer`'s stream.
void on_message(uint64_t self, uint64_t peer, const mesh::Mac &mac, const proto::Message &m);

// Apply worker from `peer`: while this node grants `peer` a write lock,
// holds its write blocks (session-level locks on each table's "write gate",
// which local writers take in a shared mode), taking them when asked and
// letting go when the lock ends. Cheap when there is nothing to do.
void apply_worker_tick(uint64_t peer);

// Manager, once per server start before the node counts as one
// (shmem is_node) and before any apply worker starts: puts the write lock
// this node had granted and not yet seen end (pgmesh.granted_write_lock)
// back into shared memory, so that its writers stay blocked until the
// holder's DDL is applied here. Needs no open transaction.
void restore_after_start();

// block_writes_to(), while the database does not count as a node yet (the
// server just started): if this node had granted a write lock (a row in
// pgmesh.granted_write_lock), waits until the manager has put it back, then
// returns true (the caller checks the gates). False at once otherwise.
// Plain C (inside pg::call).
bool wait_until_restored();

// Manager: one round of sending. Needs no open transaction.
void manager_round(uint64_t self, const catalog::Nodes &nodes);
// Manager: how soon the next round is due (ms).
long manager_naptime(long idle_ms);

// Apply worker shared-memory flag for pgmesh.status.
bool worker_waiting(uint64_t peer);

}  // namespace pgmesh::ddl_lock
