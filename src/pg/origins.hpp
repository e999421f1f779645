// Replication origins on this node: one per peer (node::origin_name), and
// the join's copy origin. The session origin marks what this backend writes
// so that the output plugin (filter_by_origin) keeps it here.
//
// The calls throw pg::Error; they need an open transaction except where said.
#pragma once

#include <cstdint>
#include <string>

#include "postgres_headers.hpp"

namespace pgmesh::origins {

// The origin with this name, created when missing.
RepOriginId find_or_create(const std::string &name);

// This session writes as `origin` from now on (replorigin_session_setup).
void start_session(RepOriginId origin);
// This session writes as itself again, after start_session(). No
// transaction needed; C only (it runs in transaction callbacks).
void end_session();

// The node an origin stands for; 0 for none (InvalidRepOriginId, the copy
// origin, a foreign tool's origin).
uint64_t node_of(RepOriginId origin);

// Moves the origin's progress to `lsn` (never backwards), as a join does
// when it knows where its copy ends.
void advance(RepOriginId origin, uint64_t lsn);

}  // namespace pgmesh::origins
