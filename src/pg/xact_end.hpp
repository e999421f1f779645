// Actions that run once when the current transaction ends, committed or
// not: starting a manager once a new node's catalog is visible, resetting a
// session's replication origin, telling apply workers that settings changed.
#pragma once

namespace pgmesh::xact_end {

// Queues `action(committed)` for the end of the current transaction (once,
// however often it is queued). Actions run inside PostgreSQL's transaction
// callback: they must not throw.
void at_end(void (*action)(bool committed));

}  // namespace pgmesh::xact_end
