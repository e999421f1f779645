// The group's key (pgmesh.local_node.group_key): pgmesh's own logical
// messages are sealed with HMAC-SHA256 under it, so that a message another
// role emitted with pg_logical_emit_message is never acted on
// (core/mesh_message.hpp).
#pragma once

#include <string>

#include "mesh_message.hpp"

namespace pgmesh::group_key {

// A new random key as hex (create_group).
std::string generate_hex();

// HMAC-SHA256 under this node's group key, read from the catalog (needs an
// open transaction; throws 55000 when the database is not a node).
mesh::Mac mac();

}  // namespace pgmesh::group_key
