// What pgmesh replicates, decided in one place: the output plugin sends the
// changes of these tables, the ExecutorStart hook refuses on them what could
// not be replicated, apply writes into them, set_conflict_resolver accepts
// only them.
#pragma once

#include "postgres_headers.hpp"

namespace pgmesh::replicated {

// Ordinary permanent tables outside the system catalogs. Of pgmesh's own
// schema only the group-wide settings (node, conflict_resolver) travel; the
// rest is node-local.
bool is_replicated(Relation rel);
// A table of pgmesh's own that stays on this node (all in schema pgmesh but
// pgmesh.node and pgmesh.conflict_resolver). Plain C.
bool is_local_catalog(Oid namespace_oid, const char *name);
bool is_local_catalog(Oid relid);

// The index that finds a row on another node: the replica identity index,
// otherwise the primary key (REPLICA IDENTITY FULL or NOTHING). InvalidOid
// when there is neither.
Oid key_index(Relation rel);

// Whether this node's UPDATE and DELETE on rel can be replicated: the old
// row's key must reach the peers, which takes a key index and a replica
// identity that logs it (DEFAULT or USING INDEX log the key, FULL the whole
// row; NOTHING logs nothing).
bool identifies_rows(Relation rel);

// The columns of key_index (palloc'd; attribute numbers offset by
// FirstLowInvalidHeapAttributeNumber, as RelationGetIndexAttrBitmap has them).
Bitmapset *key_attrs(Relation rel);

}  // namespace pgmesh::replicated
