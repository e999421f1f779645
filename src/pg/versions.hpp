// The version of a row or a tombstone on this node (conflict::Version):
// (origin commit time, origin node id), the same on every node that holds
// it. Mostly it is the commit timestamp and origin of the transaction that
// wrote it (its xmin). Two cases need more:
//
// - rows of the join's copy: pg_restore wrote them here, but they keep the
//   version they had on the node they were copied from, recorded at the
//   join in pgmesh.row_version;
// - tombstones copied at the join carry theirs in their own columns.
//
// Everything here calls PostgreSQL and may ereport: call it inside pg::call.
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>

#include "conflict.hpp"
#include "postgres_headers.hpp"

namespace pgmesh::versions {

class Reader {
public:
    // copied_until: catalog::Nodes::copied_until (0: no copy here).
    Reader(uint64_t local_node_id, int64_t copied_until)
        : local_node_id_(local_node_id), copied_until_(copied_until) {}

    // The version transaction xmin wrote; {0, 0} when unknown (frozen, from
    // before commit timestamps were tracked) or the join's copy.
    conflict::Version of_xmin(TransactionId xmin) { return written_by(xmin).version; }

    // The version of a row of `rel`: of its xmin, or for a row of the join's
    // copy the one it had where it was copied from ({0, 0} if not known).
    conflict::Version of_row(Relation rel, HeapTuple row);

private:
    struct Written {
        conflict::Version version;
        bool copied = false;  // by the join's pg_restore
    };
    Written written_by(TransactionId xmin);
    uint64_t node_of_origin(RepOriginId origin);

    uint64_t local_node_id_;
    int64_t copied_until_;
    std::unordered_map<RepOriginId, uint64_t> origin_nodes_;
};

// A version stored in two columns of a tuple, commit time at `time_attnum`
// and node id right after it; nullopt when either is NULL.
std::optional<conflict::Version> stored_version(HeapTuple tuple, TupleDesc desc,
                                                AttrNumber time_attnum);

// The recorded version of a row of the join's copy, if any.
std::optional<conflict::Version> copied_row_version(Oid relid, Datum key);

// pgmesh.versions_for_copy(), into a materialized SRF's tuplestore: under
// the active snapshot, (schema, table, key, false, version) for every row of
// every replicated table whose version is known, then (schema, table, key,
// true, version) for every tombstone of an existing table.
void put_versions_for_copy(ReturnSetInfo *rsinfo, Reader &reader);

}  // namespace pgmesh::versions
