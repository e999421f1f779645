// Background workers: the supervisor (one per server) starts a manager per
// pgmesh database; the manager starts one apply worker per peer and restarts
// failed ones with backoff.
#pragma once

#include <cstdint>
#include <string>

#include "postgres_headers.hpp"

namespace pgmesh::workers {

// From _PG_init while shared_preload_libraries is being processed.
void register_supervisor();

// Marks this database as a pgmesh node and wakes the supervisor so that it
// starts the database's manager (called at commit of create/join).
void request_manager(Oid dboid);

// What a forwarding worker does (pgmesh.forward_missing): apply a dead
// node's transactions from `source_id`'s relay slot until our origin for
// the dead node reaches `up_to`.
struct ForwardJob {
    uint64_t source_id = 0;
    uint64_t up_to = 0;
};

// Worker entry points (C++ side; shims in module.cpp).
void supervisor_main();
void manager_main(Oid dboid);
void apply_main(Oid dboid, uint64_t peer_node_id);
void forward_main(Oid dboid, uint64_t dead_node_id, ForwardJob job);

// Starts a forwarding worker in this database; the caller (notified: its
// bgw_notify_pid) waits for it with the handle. nullptr when no worker
// slot is free.
BackgroundWorkerHandle *start_forward_worker(uint64_t dead_node_id, const std::string &dead_name,
                                             ForwardJob job);

}  // namespace pgmesh::workers
