#include "versions.hpp"

#include "origins.hpp"
#include "replicated.hpp"
#include "tombstones.hpp"

namespace pgmesh::versions {

Reader::Written Reader::written_by(TransactionId xmin) {
    TimestampTz time = 0;
    RepOriginId origin = InvalidRepOriginId;
    if (!TransactionIdIsNormal(xmin) || !TransactionIdGetCommitTsData(xmin, &time, &origin))
        return {};  // frozen, or from before tracking
    // The join's copy: written here, by pg_restore, before copied_until.
    if (origin == InvalidRepOriginId && time <= copied_until_) return {{}, true};
    uint64_t node = node_of_origin(origin);
    if (node == 0) return {};
    return {{time, node}, false};
}

uint64_t Reader::node_of_origin(RepOriginId origin) {
    if (origin == InvalidRepOriginId) return local_node_id_;
    if (auto it = origin_nodes_.find(origin); it != origin_nodes_.end()) return it->second;
    uint64_t node = origins::node_of(origin);
    origin_nodes_[origin] = node;
    return node;
}

conflict::Version Reader::of_row(Relation rel, HeapTuple row) {
    Written w = written_by(HeapTupleHeaderGetXmin(row->t_data));
    if (!w.copied) return w.version;
    TupleDesc desc = RelationGetDescr(rel);
    auto *values = static_cast<Datum *>(palloc(desc->natts * sizeof(Datum)));
    auto *isnull = static_cast<bool *>(palloc(desc->natts * sizeof(bool)));
    heap_deform_tuple(row, desc, values, isnull);
    Datum key = tombstones::key_of(rel, values, isnull);
    std::optional<conflict::Version> copied;
    if (key != 0) copied = copied_row_version(RelationGetRelid(rel), key);
    return copied.value_or(conflict::Version{});
}

std::optional<conflict::Version> stored_version(HeapTuple tuple, TupleDesc desc,
                                                AttrNumber time_attnum) {
    bool null_time = false;
    bool null_node = false;
    Datum time = heap_getattr(tuple, time_attnum, desc, &null_time);
    Datum node = heap_getattr(tuple, time_attnum + 1, desc, &null_node);
    if (null_time || null_node) return std::nullopt;
    return conflict::Version{DatumGetTimestampTz(time), static_cast<uint64_t>(DatumGetInt64(node))};
}

std::optional<conflict::Version> copied_row_version(Oid relid, Datum key) {
    Oid nsp = get_namespace_oid("pgmesh", false);
    Relation rel = table_open(get_relname_relid("row_version", nsp), AccessShareLock);
    ScanKeyData keys[2];
    ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
    ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_ARRAY_EQ, key);
    SysScanDesc scan =
        systable_beginscan(rel, RelationGetPrimaryKeyIndex(rel), true, nullptr, 2, keys);
    std::optional<conflict::Version> version;
    if (HeapTuple tuple = systable_getnext(scan); HeapTupleIsValid(tuple))
        version = stored_version(tuple, RelationGetDescr(rel), 3);
    systable_endscan(scan);
    table_close(rel, AccessShareLock);
    return version;
}

namespace {

void put_version(ReturnSetInfo *rsinfo, Oid relid, Datum key, bool deleted,
                 const conflict::Version &version) {
    Datum values[6] = {CStringGetTextDatum(get_namespace_name(get_rel_namespace(relid))),
                       CStringGetTextDatum(get_rel_name(relid)),
                       key,
                       BoolGetDatum(deleted),
                       TimestampTzGetDatum(version.commit_time),
                       Int64GetDatum(static_cast<int64>(version.node_id))};
    bool nulls[6] = {false, false, false, false, false, false};
    tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

}  // namespace

void put_versions_for_copy(ReturnSetInfo *rsinfo, Reader &reader) {
    Oid pgmesh_ns = get_namespace_oid("pgmesh", false);
    List *relids = NIL;
    Relation classes = table_open(RelationRelationId, AccessShareLock);
    SysScanDesc scan = systable_beginscan(classes, InvalidOid, false, nullptr, 0, nullptr);
    for (HeapTuple t; HeapTupleIsValid(t = systable_getnext(scan));) {
        auto *form = reinterpret_cast<Form_pg_class>(GETSTRUCT(t));
        if (form->relkind == RELKIND_RELATION && form->oid >= FirstNormalObjectId &&
            form->relnamespace != pgmesh_ns)
            relids = lappend_oid(relids, form->oid);
    }
    systable_endscan(scan);
    table_close(classes, AccessShareLock);

    ListCell *lc;
    foreach (lc, relids) {
        Relation rel = table_open(lfirst_oid(lc), AccessShareLock);
        if (replicated::is_replicated(rel)) {
            TableScanDesc rows = table_beginscan(rel, GetActiveSnapshot(), 0, nullptr);
            TupleDesc desc = RelationGetDescr(rel);
            auto *values = static_cast<Datum *>(palloc(desc->natts * sizeof(Datum)));
            auto *isnull = static_cast<bool *>(palloc(desc->natts * sizeof(bool)));
            for (HeapTuple row; (row = heap_getnext(rows, ForwardScanDirection)) != nullptr;) {
                conflict::Version version = reader.of_row(rel, row);
                if (version.node_id == 0) continue;  // older than any change: nothing to keep
                heap_deform_tuple(row, desc, values, isnull);
                Datum key = tombstones::key_of(rel, values, isnull);
                if (key != 0) put_version(rsinfo, RelationGetRelid(rel), key, false, version);
            }
            table_endscan(rows);
        }
        table_close(rel, AccessShareLock);
    }

    Relation tombstones = table_open(get_relname_relid("tombstone", pgmesh_ns), AccessShareLock);
    TableScanDesc all = table_beginscan(tombstones, GetActiveSnapshot(), 0, nullptr);
    TupleDesc desc = RelationGetDescr(tombstones);
    for (HeapTuple t; (t = heap_getnext(all, ForwardScanDirection)) != nullptr;) {
        bool null_relid = false;
        bool null_key = false;
        Datum relid = heap_getattr(t, 1, desc, &null_relid);
        Datum key = heap_getattr(t, 2, desc, &null_key);
        if (!get_rel_name(DatumGetObjectId(relid))) continue;  // dropped since
        conflict::Version version =
            stored_version(t, desc, 3).value_or(reader.of_xmin(HeapTupleHeaderGetXmin(t->t_data)));
        if (version.node_id != 0) put_version(rsinfo, DatumGetObjectId(relid), key, true, version);
    }
    table_endscan(all);
    table_close(tombstones, AccessShareLock);
}

}  // namespace pgmesh::versions
