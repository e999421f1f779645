// pgmesh's GUCs (defined in module.cpp). Process globals, as PostgreSQL's
// configuration model has them.
#pragma once

namespace pgmesh::settings {

// pgmesh.conflict_history: record conflicts in pgmesh.conflict_history.
extern bool conflict_history;

// pgmesh.permit_ddl_locking and its alias bdr.permit_ddl_locking: a session
// may take the global lock for replicated DDL (either one on is enough).
extern bool permit_ddl_locking;
extern bool bdr_permit_ddl_locking;
// pgmesh.replicate_ddl (superuser): off runs DDL on this node only.
extern bool replicate_ddl;
// pgmesh.ddl_lock_timeout (ms): how long acquiring the global lock waits.
extern int ddl_lock_timeout;

// pgmesh.tombstones (reload): deletes leave tombstones (docs/conflicts.md).
// Off only to measure what they cost: nodes may then diverge.
extern bool tombstones;
// pgmesh.max_clock_skew (ms, reload): how far apart the nodes' clocks may be;
// tombstones are kept that much longer than every node needs them.
extern int max_clock_skew;

}  // namespace pgmesh::settings
