// Group membership: create_group, join_group and the waits that tell when a
// node is ready and in sync (SQL functions in sql_functions.cpp call these).
#pragma once

#include <cstdint>
#include <string>

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

// Set by _PG_init when loaded through shared_preload_libraries.
extern bool loaded_at_startup;

// Database whose manager must start when the current transaction commits.
void start_manager_at_commit();

}  // namespace pgmesh::node_admin
