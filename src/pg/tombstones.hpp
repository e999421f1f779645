// Tombstones (docs/conflicts.md): the version of each delete, kept after its
// row is gone, so that an older insert or update that arrives later loses to
// it on every node. One row of pgmesh.tombstone per deleted key: the local
// table and the text of its key columns. Its version is that of the
// tombstone row itself, i.e. the commit time and origin of the transaction
// that last wrote it, exactly as a table row's version is its xmin's: a
// local DELETE writes it in the deleting transaction (the pgmesh_tombstone
// trigger), apply writes it in the remote transaction (committed with the
// origin's time and origin).
//
// Everything here calls PostgreSQL and may ereport: call it inside pg::call.
#pragma once

#include <optional>

#include "conflict.hpp"
#include "postgres_headers.hpp"
#include "versions.hpp"

namespace pgmesh::tombstones {

// The key of a row of `rel` as tombstones store it: a text[] of its key
// columns (replicated::key_index), each in its type's text form here.
// values/isnull are the row's, indexed by attribute number - 1. Returns
// (Datum) 0 when the table has no key index, or pgmesh.tombstones is off.
Datum key_of(Relation rel, const Datum *values, const bool *isnull);

// The key of a TRUNCATE's tombstone, which stands for every key of its
// table: an empty text[].
Datum whole_table_key();

// The version of the key's tombstone, if there is one: its own columns'
// for a tombstone the join copied, else its xmin's.
std::optional<conflict::Version> find(Oid relid, Datum key, versions::Reader &reader);

// Records the key's tombstone with this transaction's version: inserted,
// or the existing one rewritten (a copied version it carried goes).
void record(Oid relid, Datum key);

// Adds the triggers pgmesh_tombstone (AFTER DELETE FOR EACH ROW) and
// pgmesh_truncate (AFTER TRUNCATE FOR EACH STATEMENT) to a replicated table
// that lacks them. They fire for local sessions only: apply records its own
// tombstones. Tables of other kinds are left alone.
void add_trigger(Oid relid);
// The same for every replicated table of this database (a node is created).
void add_triggers_everywhere();

// The manager's share (manager.cpp), between transactions: every few
// seconds a sealed clock tick into this node's WAL (mesh::ClockTick), which
// tells each peer how far it has caught up with us; every minute the
// tombstones that every peer's progress has made useless are collected
// (pgmesh.collect_tombstones()). C++: calls PostgreSQL through pg::call.
void manager_round(uint64_t local_node_id);

}  // namespace pgmesh::tombstones
