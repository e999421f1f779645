// Background workers: the supervisor (one per server) starts a manager per
// pgmesh database; the manager starts one apply worker per peer and restarts
// failed ones with backoff.
#pragma once

#include <cstdint>

#include "postgres_headers.hpp"

namespace pgmesh::workers {

// From _PG_init while shared_preload_libraries is being processed.
void register_supervisor();

// Marks this database as a pgmesh node and wakes the supervisor so that it
// starts the database's manager (called at commit of create/join).
void request_manager(Oid dboid);

// Worker entry points (C++ side; shims in module.cpp).
void supervisor_main();
void manager_main(Oid dboid);
void apply_main(Oid dboid, uint64_t peer_node_id);

}  // namespace pgmesh::workers
