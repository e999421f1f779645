#include "tombstones.hpp"

#include "group_key.hpp"
#include "guard.hpp"
#include "mesh_message.hpp"
#include "replicated.hpp"
#include "settings.hpp"
#include "spi.hpp"

namespace pgmesh::tombstones {

namespace {

constexpr const char *kDeleteTrigger = "pgmesh_tombstone";
constexpr const char *kTruncateTrigger = "pgmesh_truncate";

bool has_trigger(Relation rel, const char *name) {
    TriggerDesc *triggers = rel->trigdesc;
    for (int i = 0; triggers && i < triggers->numtriggers; i++)
        if (strcmp(triggers->triggers[i].tgname, name) == 0) return true;
    return false;
}

void create_trigger(Relation rel, const char *name, bool row, int16 events) {
    CreateTrigStmt *stmt = makeNode(CreateTrigStmt);
    stmt->trigname = pstrdup(name);
    stmt->relation = makeRangeVar(get_namespace_name(RelationGetNamespace(rel)),
                                  pstrdup(RelationGetRelationName(rel)), -1);
    stmt->funcname =
        list_make2(makeString(pstrdup("pgmesh")), makeString(pstrdup("record_tombstone")));
    stmt->row = row;
    stmt->timing = TRIGGER_TYPE_AFTER;
    stmt->events = events;
    (void)CreateTrigger(stmt, nullptr, RelationGetRelid(rel), InvalidOid, InvalidOid, InvalidOid,
                        InvalidOid, InvalidOid, nullptr, false, false);
    CommandCounterIncrement();
}

Oid tombstone_relid() {
    Oid nsp = get_namespace_oid("pgmesh", false);
    Oid relid = get_relname_relid("tombstone", nsp);
    if (!OidIsValid(relid)) elog(ERROR, "pgmesh.tombstone is missing");
    return relid;
}

// Finds the key's tombstone under a snapshot that sees this transaction's
// own writes, including the current command's (one statement may delete a
// key, re-insert it and delete it again).
bool find_tuple(Relation rel, Oid relid, Datum key, HeapTuple *copy) {
    ScanKeyData keys[2];
    ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_OIDEQ, ObjectIdGetDatum(relid));
    ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_ARRAY_EQ, key);
    Oid index = RelationGetPrimaryKeyIndex(rel);
    SysScanDesc scan = systable_beginscan(rel, index, true, SnapshotSelf, 2, keys);
    HeapTuple tuple = systable_getnext(scan);
    bool found = HeapTupleIsValid(tuple);
    if (found) *copy = heap_copytuple(tuple);
    systable_endscan(scan);
    return found;
}

// Advisory lock tags of tombstone writers (field4; the write gate's is
// 0x504D): SQL's advisory locks use 1 and 2, so no session can take them.
constexpr uint16 kTombstoneField = 0x5054;

// Serializes the writers of one key's tombstone (a local DELETE, apply
// workers of several peers) until their transactions end, so that each
// finds the one before it committed, not in flight. Keys that share a hash
// only wait for each other.
void lock_key(Oid relid, Datum key) {
    auto *array = DatumGetArrayTypeP(key);
    uint32 hash =
        DatumGetUInt32(hash_any(reinterpret_cast<const unsigned char *>(array), VARSIZE(array)));
    LOCKTAG tag;
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, relid, hash, kTombstoneField);
    (void)LockAcquire(&tag, ExclusiveLock, false, false);
}

}  // namespace

Datum key_of(Relation rel, const Datum *values, const bool *isnull) {
    if (!settings::tombstones) return static_cast<Datum>(0);
    Oid index_oid = replicated::key_index(rel);
    if (!OidIsValid(index_oid)) return static_cast<Datum>(0);
    Relation index = index_open(index_oid, AccessShareLock);
    int nkeys = index->rd_index->indnkeyatts;
    Datum *texts = static_cast<Datum *>(palloc(nkeys * sizeof(Datum)));
    bool *nulls = static_cast<bool *>(palloc(nkeys * sizeof(bool)));
    TupleDesc desc = RelationGetDescr(rel);
    for (int i = 0; i < nkeys; i++) {
        AttrNumber attnum = index->rd_index->indkey.values[i];
        nulls[i] = attnum <= 0 || isnull[attnum - 1];
        if (nulls[i]) {
            texts[i] = 0;
            continue;
        }
        Oid output = InvalidOid;
        bool varlena = false;
        getTypeOutputInfo(TupleDescAttr(desc, attnum - 1)->atttypid, &output, &varlena);
        texts[i] = CStringGetTextDatum(OidOutputFunctionCall(output, values[attnum - 1]));
    }
    index_close(index, AccessShareLock);
    int dims[1] = {nkeys};
    int lbs[1] = {1};
    return PointerGetDatum(
        construct_md_array(texts, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

Datum whole_table_key() {
    return PointerGetDatum(construct_empty_array(TEXTOID));
}

std::optional<conflict::Version> find(Oid relid, Datum key, versions::Reader &reader) {
    Relation rel = table_open(tombstone_relid(), AccessShareLock);
    HeapTuple tuple = nullptr;
    bool found = find_tuple(rel, relid, key, &tuple);
    std::optional<conflict::Version> version;
    if (found)
        version = versions::stored_version(tuple, RelationGetDescr(rel), 3)
                      .value_or(reader.of_xmin(HeapTupleHeaderGetXmin(tuple->t_data)));
    table_close(rel, AccessShareLock);
    return version;
}

void record(Oid relid, Datum key) {
    // RowExclusiveLock also keeps pgmesh.collect_tombstones() out until this
    // transaction ends (it locks the table in SHARE ROW EXCLUSIVE mode): a
    // tombstone found here is not deleted under us.
    Relation rel = table_open(tombstone_relid(), RowExclusiveLock);
    lock_key(relid, key);
    HeapTuple old = nullptr;
    // The version is this transaction's xmin: no version of its own.
    Datum values[4] = {ObjectIdGetDatum(relid), key, 0, 0};
    bool nulls[4] = {false, false, true, true};
    if (!find_tuple(rel, relid, key, &old)) {
        CatalogTupleInsert(rel, heap_form_tuple(RelationGetDescr(rel), values, nulls));
    } else if (!TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(old->t_data))) {
        // Rewritten: the new row version carries this transaction's xmin,
        // hence its commit time and origin.
        HeapTuple tuple = heap_form_tuple(RelationGetDescr(rel), values, nulls);
        CatalogTupleUpdate(rel, &old->t_self, tuple);
    }
    table_close(rel, RowExclusiveLock);
}

void add_trigger(Oid relid) {
    Relation rel = table_open(relid, ShareRowExclusiveLock);
    // pgmesh's own replicated tables (node, conflict_resolver) are not
    // users' data: no tombstones.
    if (replicated::is_replicated(rel) &&
        RelationGetNamespace(rel) != get_namespace_oid("pgmesh", false)) {
        if (!has_trigger(rel, kDeleteTrigger))
            create_trigger(rel, kDeleteTrigger, true, TRIGGER_TYPE_DELETE);
        if (!has_trigger(rel, kTruncateTrigger))
            create_trigger(rel, kTruncateTrigger, false, TRIGGER_TYPE_TRUNCATE);
    }
    table_close(rel, NoLock);
}

void add_triggers_everywhere() {
    Relation classes = table_open(RelationRelationId, AccessShareLock);
    SysScanDesc scan = systable_beginscan(classes, InvalidOid, false, nullptr, 0, nullptr);
    List *relids = NIL;
    HeapTuple tuple;
    while (HeapTupleIsValid(tuple = systable_getnext(scan))) {
        auto *form = reinterpret_cast<Form_pg_class>(GETSTRUCT(tuple));
        if (form->relkind == RELKIND_RELATION && form->relpersistence == RELPERSISTENCE_PERMANENT &&
            form->oid >= FirstNormalObjectId)
            relids = lappend_oid(relids, form->oid);
    }
    systable_endscan(scan);
    table_close(classes, AccessShareLock);
    ListCell *lc;
    foreach (lc, relids) add_trigger(lfirst_oid(lc));
}

namespace {

constexpr long kClockTickMs = 5000;
constexpr long kCollectMs = 60000;

// Next due times; the manager is one process per database.
TimestampTz next_tick = 0;
TimestampTz next_collection = 0;

}  // namespace

void manager_round(uint64_t local_node_id) {
    TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
    bool tick = now >= next_tick;
    bool collect = now >= next_collection;
    if (!tick && !collect) return;
    pg::call([] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        PushActiveSnapshot(GetTransactionSnapshot());
    });
    if (tick) {
        std::string content = mesh::seal(mesh::ClockTick{local_node_id, now}, group_key::mac());
        pg::call([&] {
            (void)LogLogicalMessage(mesh::kClockPrefix.data(), content.data(), content.size(),
                                    false);
        });
        next_tick = now + kClockTickMs * 1000;
    }
    if (collect) {
        spi::query("SELECT pgmesh.collect_tombstones()", {});
        next_collection = now + kCollectMs * 1000;
    }
    pg::call([] {
        PopActiveSnapshot();
        CommitTransactionCommand();
    });
}

}  // namespace pgmesh::tombstones
