// Operator-facing conflict settings: per-table resolvers and skipping a
// remote transaction that cannot be applied.
#pragma once

#include <cstdint>
#include <string>

#include "postgres_headers.hpp"

namespace pgmesh::conflict_admin {

void set_conflict_resolver(Oid relation, const std::string &conflict_type,
                           const std::string &resolver);
void skip_transaction(const std::string &peer_node_name, uint64_t remote_commit_lsn);

}  // namespace pgmesh::conflict_admin
