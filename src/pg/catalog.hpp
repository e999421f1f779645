// pgmesh's catalogs (pgmesh.node, pgmesh.local_node). The names derived from
// node ids (slots, origins) and the node states are in core/node.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "node.hpp"

namespace pgmesh::catalog {

struct Node {
    uint64_t id = 0;
    std::string name;
    std::string dsn;
    node::State state = node::State::kJoining;
    bool is_local = false;
};

struct Nodes {
    std::vector<Node> all;
    std::optional<uint64_t> local_id;
    // End of the join's copy (TimestampTz), 0 for the group's first node.
    int64_t copied_until = 0;

    const Node *find(uint64_t id) const;
    const Node *local() const { return local_id ? find(*local_id) : nullptr; }
    // This node's row; throws 55000 naming the fix when the database is not
    // a node.
    const Node &require_local() const;
};

// Reads the node catalog with SPI. Needs an open transaction; throws
// pg::Error (e.g. when the extension is not installed).
Nodes read_nodes();

// Whether this database has the extension installed (catalog lookup).
bool extension_installed();

}  // namespace pgmesh::catalog
