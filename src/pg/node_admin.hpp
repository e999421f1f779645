// Group membership: create_group (node_admin.cpp), join_group (join.cpp) and
// the waits that tell when a node is ready and in sync (waits.cpp). The SQL
// functions in sql_functions.cpp call these.
#pragma once

#include <cstdint>
#include <string>

#include "catalog.hpp"

namespace pgmesh::node_admin {

// Raises the error that names the fix when the server is not set up for
// pgmesh (preload, wal_level, track_commit_timestamp).
void check_server_setup();

uint64_t create_group(const std::string &node_name, const std::string &node_dsn);
uint64_t join_group(const std::string &node_name, const std::string &node_dsn,
                    const std::string &join_using_dsn);
bool wait_for_ready(int timeout_seconds);
bool wait_for_sync(int timeout_seconds);
void set_apply_paused(bool paused);
// pgmesh.hold_apply: every apply worker of this database stops at a
// transaction boundary, until the caller's transaction ends; returns once
// they all have (so the positions in pg_replication_origin_status stay as
// they are). Throws 55P03 after the timeout.
void hold_apply(int timeout_seconds);

// pgmesh.part_node (part.cpp): removes a node from the group, live or dead.
void part_node(const std::string &node_name);
// pgmesh.forward_missing (forward.cpp): starts a forwarding worker that
// applies the dead node's transactions this node lacks, from the source's
// relay slot, up to the dead node's commit LSN `up_to`; returns at once
// (nothing to do when this node has them). 55P03 while one runs.
void forward_missing(uint64_t dead_id, uint64_t source_id, uint64_t up_to);
// pgmesh.forward_progress: this node's position in the dead node's
// transactions, whether a forwarding worker runs, and why the last one
// stopped short (empty if it did not).
struct ForwardProgress {
    uint64_t applied = 0;
    bool running = false;
    std::string error;
};
ForwardProgress forward_progress(uint64_t dead_id);
// Set by _PG_init when loaded through shared_preload_libraries.
extern bool loaded_at_startup;

// Starts this database's manager when the current transaction commits.
void start_manager_at_commit();
// Wakes this database's manager (and workers) when the current transaction
// commits: pgmesh.node changed, so streams may have to start or stop.
void wake_manager_at_commit();

// Checks shared by create_group and join_group; each throws pg::Error naming
// the fix.
void check_node_name(const std::string &name);
void check_not_a_node();
// The DSN a node gives for itself must lead back to this very database:
// peers will use it to stream from us.
void check_dsn_reaches_self(const std::string &dsn);
// A fresh random node id (positive as a bigint).
uint64_t new_node_id();

// A logical slot on this node, read from shared memory: no catalog access,
// so the waits work for callers who may not read pgmesh's catalogs.
struct LocalSlot {
    bool exists;  // SearchNamedReplicationSlot finds only slots in use
    bool active;
    uint64_t confirmed_flush;
};
LocalSlot local_slot(const std::string &name);

// The manager's round (part.cpp): drops this node's slots for parted peers
// and its origins for them; when this node itself has parted, all of them
// and its relay slot.
// Needs no transaction (it opens its own); a drop that fails (still in use)
// is tried again at the next round.
void drop_what_parted_nodes_left(const catalog::Nodes &nodes);

}  // namespace pgmesh::node_admin
