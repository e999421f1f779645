#include "apply_heap.hpp"

#include <cstring>

#include "guard.hpp"
#include "user_context.hpp"

namespace pgmesh::apply {

namespace {

Datum convert_value(const ColumnMap &col, const proto::Value &value, const RelationMap &map,
                    size_t index) {
    const proto::Column &remote = map.remote.columns[index];
    char *copy = static_cast<char *>(palloc(value.data.size() + 1));
    memcpy(copy, value.data.data(), value.data.size());
    copy[value.data.size()] = '\0';
    if (value.kind == proto::ValueKind::kText)
        return InputFunctionCall(const_cast<FmgrInfo *>(&col.text_input), copy, col.input_ioparam,
                                 col.local_typmod);
    bool same_type = remote.type_oid == col.local_type;
    if (same_type ? !col.has_binary_input : !col.converts)
        ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
                        errmsg("peer sent a binary value of type %u for column \"%s\" of "
                               "\"%s.%s\", which only built-in types may have",
                               remote.type_oid, remote.name.c_str(), map.remote.schema.c_str(),
                               map.remote.name.c_str())));
    StringInfoData buf;
    buf.data = copy;
    buf.len = static_cast<int>(value.data.size());
    buf.maxlen = buf.len + 1;
    buf.cursor = 0;
    FmgrInfo *receive = const_cast<FmgrInfo *>(same_type ? &col.binary_input : &col.remote_receive);
    Datum d = ReceiveFunctionCall(receive, &buf, same_type ? col.input_ioparam : col.remote_ioparam,
                                  same_type ? col.local_typmod : -1);
    if (buf.cursor != buf.len)
        ereport(ERROR,
                (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
                 errmsg("incorrect binary data format in column \"%s\" of \"%s.%s\"",
                        remote.name.c_str(), map.remote.schema.c_str(), map.remote.name.c_str())));
    if (same_type) return d;
    // Another type here (int4 there, int8 here): through its text form, as
    // a text value would have come.
    char *text = OutputFunctionCall(const_cast<FmgrInfo *>(&col.remote_output), d);
    return InputFunctionCall(const_cast<FmgrInfo *>(&col.text_input), text, col.input_ioparam,
                             col.local_typmod);
}

void check_width(const RelationMap &map, const proto::Tuple &tuple) {
    if (tuple.size() != map.columns.size())
        ereport(ERROR,
                (errcode(ERRCODE_PROTOCOL_VIOLATION),
                 errmsg("peer sent %zu values for \"%s.%s\", which has %zu columns", tuple.size(),
                        map.remote.schema.c_str(), map.remote.name.c_str(), map.columns.size())));
}

// The DEFAULT of every local column the peer does not send, into `slot`
// (NULL where there is none), as PostgreSQL's apply fills them. Runs as the
// table's owner, like the rest of the change.
void fill_defaults(ChangeState &cs, const RelationMap &map, TupleTableSlot *slot) {
    ExprContext *econtext = GetPerTupleExprContext(cs.estate);
    for (AttrNumber attnum : map.local_only) {
        auto *expr = reinterpret_cast<Expr *>(build_column_default(cs.rel, attnum));
        if (!expr) continue;
        ExprState *state = ExecInitExpr(expression_planner(expr), nullptr);
        slot->tts_values[attnum - 1] = ExecEvalExpr(state, econtext, &slot->tts_isnull[attnum - 1]);
    }
}

// The unique indexes the probes cover (the key and map.unique_indexes): a
// concurrent row in one of these sends the change round again. A collision
// in any other unique index or exclusion constraint stays an error, since no
// probe would ever find it.
List *probed_indexes(const RelationMap &map) {
    List *oids = NIL;
    if (OidIsValid(map.key_index)) oids = lappend_oid(oids, map.key_index);
    for (const UniqueIndex &index : map.unique_indexes) oids = lappend_oid(oids, index.oid);
    return oids;
}

void check_owner_may_apply(Oid relid, AclMode mode) {
    require_privilege(relid, mode);
    // Apply cannot honour row-level security policies, and a policy it
    // skipped would let the owner write what the policy forbids: refused, as
    // PostgreSQL's own apply refuses it.
    if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
        ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                        errmsg("user \"%s\" cannot replicate into table \"%s\", which has "
                               "row-level security enabled for it",
                               GetUserNameFromId(GetUserId(), true), get_rel_name(relid)),
                        errhint("Apply runs as the table's owner: let the owner bypass row-level "
                                "security (no FORCE ROW LEVEL SECURITY, or BYPASSRLS).")));
}

// An ENABLE ALWAYS or ENABLE REPLICA trigger on TRUNCATE: user code that
// apply's TRUNCATE runs.
bool has_apply_truncate_trigger(Relation rel) {
    TriggerDesc *triggers = rel->trigdesc;
    for (int i = 0; triggers && i < triggers->numtriggers; i++) {
        const Trigger &t = triggers->triggers[i];
        if (TRIGGER_FOR_TRUNCATE(t.tgtype) &&
            (t.tgenabled == TRIGGER_FIRES_ALWAYS || t.tgenabled == TRIGGER_FIRES_ON_REPLICA))
            return true;
    }
    return false;
}

}  // namespace

ChangeState begin_change(Oid relid) {
    ChangeState cs{};
    PushActiveSnapshot(GetTransactionSnapshot());
    cs.rel = table_open(relid, RowExclusiveLock);
    cs.estate = CreateExecutorState();
    RangeTblEntry *rte = makeNode(RangeTblEntry);
    rte->rtekind = RTE_RELATION;
    rte->relid = relid;
    rte->relkind = cs.rel->rd_rel->relkind;
    rte->rellockmode = AccessShareLock;
    ExecInitRangeTable(cs.estate, list_make1(rte));
    cs.result_rel = makeNode(ResultRelInfo);
    InitResultRelInfo(cs.result_rel, cs.rel, 1, nullptr, 0);
    cs.estate->es_output_cid = GetCurrentCommandId(true);
    ExecOpenIndices(cs.result_rel, false);
    AfterTriggerBeginQuery();
    return cs;
}

void end_change(ChangeState &cs) {
    AfterTriggerEndQuery(cs.estate);
    // AFTER triggers open the relations they fire on as trigger targets
    // (ExecGetTriggerResultRel): closed here, as the executor's end does.
    ExecCloseResultRelations(cs.estate);
    ExecCloseRangeTableRelations(cs.estate);
    ExecCloseIndices(cs.result_rel);
    ExecResetTupleTable(cs.estate->es_tupleTable, false);
    FreeExecutorState(cs.estate);
    table_close(cs.rel, NoLock);
    PopActiveSnapshot();
    CommandCounterIncrement();
}

// Stores the remote values into `slot`. Columns the remote left unchanged
// (TOAST) or does not know keep what `base` has; without a base (a new row)
// those it does not know get their DEFAULT.
void fill_slot(ChangeState &cs, const RelationMap &map, const proto::Tuple &tuple,
               TupleTableSlot *slot, TupleTableSlot *base) {
    check_width(map, tuple);
    int natts = slot->tts_tupleDescriptor->natts;
    ExecClearTuple(slot);
    if (base) {
        slot_getallattrs(base);
        memcpy(slot->tts_values, base->tts_values, natts * sizeof(Datum));
        memcpy(slot->tts_isnull, base->tts_isnull, natts * sizeof(bool));
    } else {
        memset(slot->tts_isnull, true, natts * sizeof(bool));
    }
    for (size_t i = 0; i < tuple.size(); i++) {
        const ColumnMap &col = map.columns[i];
        if (col.local_attnum == InvalidAttrNumber) continue;
        int a = col.local_attnum - 1;
        switch (tuple[i].kind) {
            case proto::ValueKind::kNull:
                slot->tts_isnull[a] = true;
                slot->tts_values[a] = 0;
                break;
            case proto::ValueKind::kUnchanged:
                if (!base)
                    ereport(ERROR,
                            (errcode(ERRCODE_PROTOCOL_VIOLATION),
                             errmsg("peer sent an unchanged-TOAST marker outside an UPDATE")));
                break;
            default:
                slot->tts_values[a] = convert_value(col, tuple[i], map, i);
                slot->tts_isnull[a] = false;
        }
    }
    if (!base) fill_defaults(cs, map, slot);
    ExecStoreVirtualTuple(slot);
}

// Key columns of `tuple` into a slot shaped like the table, for the index
// lookup.
void fill_key_slot(const RelationMap &map, const proto::Tuple &tuple, TupleTableSlot *slot) {
    check_width(map, tuple);
    int natts = slot->tts_tupleDescriptor->natts;
    ExecClearTuple(slot);
    memset(slot->tts_isnull, true, natts * sizeof(bool));
    for (size_t i = 0; i < tuple.size(); i++) {
        const ColumnMap &col = map.columns[i];
        if (!map.remote.columns[i].is_key || col.local_attnum == InvalidAttrNumber) continue;
        if (tuple[i].kind != proto::ValueKind::kText && tuple[i].kind != proto::ValueKind::kBinary)
            continue;
        int a = col.local_attnum - 1;
        slot->tts_values[a] = convert_value(col, tuple[i], map, i);
        slot->tts_isnull[a] = false;
    }
    ExecStoreVirtualTuple(slot);
}

void require_key(const RelationMap &map) {
    if (!OidIsValid(map.key_index))
        ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                        errmsg("table \"%s.%s\" has no primary key on this node",
                               map.remote.schema.c_str(), map.remote.name.c_str()),
                        errhint("Add the same primary key on every node.")));
}

TupleTableSlot *virtual_slot(ChangeState &cs) {
    return ExecInitExtraTupleSlot(cs.estate, RelationGetDescr(cs.rel), &TTSOpsVirtual);
}

// Deletes the row `row` holds (found and locked by a probe).
void delete_row(ChangeState &cs, TupleTableSlot *row) {
    EPQState epq;
    EvalPlanQualInit(&epq, cs.estate, nullptr, NIL, -1);
    ExecSimpleRelationDelete(cs.result_rel, cs.estate, &epq, row);
    EvalPlanQualEnd(&epq);
}

bool find_by_key(ChangeState &cs, const RelationMap &map, const proto::Tuple &key,
                 TupleTableSlot *local) {
    TupleTableSlot *search = virtual_slot(cs);
    fill_key_slot(map, key, search);
    return RelationFindReplTupleByIndex(cs.rel, map.key_index, LockTupleExclusive, search, local);
}

// Rows other than `self` that `candidate` would collide with in a unique
// index other than the primary key, and in the primary key too when
// `probe_key` (an UPDATE that changes the key). Returns how many distinct
// rows (0, 1 or 2 meaning "more than one"); the first one is left in
// `conflicting`.
int unique_conflicts(ChangeState &cs, const RelationMap &map, TupleTableSlot *candidate,
                     ItemPointer self, bool probe_key, TupleTableSlot *conflicting) {
    probe_key = probe_key && OidIsValid(map.key_index);
    // Most tables have no unique index besides the key: nothing to probe.
    if (map.unique_indexes.empty() && !probe_key) return 0;
    int found = 0;
    ItemPointerData first;
    ItemPointerSetInvalid(&first);
    TupleTableSlot *probe = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
    slot_getallattrs(candidate);
    // Counts the row `index` finds for the candidate's values, if any.
    auto collides_in = [&](Oid index) {
        if (!RelationFindReplTupleByIndex(cs.rel, index, LockTupleExclusive, candidate, probe))
            return;
        if (self && ItemPointerEquals(&probe->tts_tid, self)) return;
        if (found > 0 && ItemPointerEquals(&probe->tts_tid, &first)) return;
        if (found == 0) {
            first = probe->tts_tid;
            ExecCopySlot(conflicting, probe);
            conflicting->tts_tid = probe->tts_tid;
        }
        found++;
    };
    if (probe_key) collides_in(map.key_index);
    for (const UniqueIndex &index : map.unique_indexes) {
        if (found > 1) break;
        bool has_null = false;
        for (AttrNumber attnum : index.attnums) has_null |= candidate->tts_isnull[attnum - 1];
        if (!has_null) collides_in(index.oid);  // NULLs never collide
    }
    return found;  // at most 2: the loop stops once a second row is found
}

// Inserts `slot` as ExecSimpleRelationInsert does (triggers, generated
// columns, constraints), but speculatively, as INSERT ... ON CONFLICT does.
// This is a copy of PostgreSQL 15's ExecSimpleRelationInsert
// (executor/execReplication.c) with its index step made speculative: keep it
// in step with that function in every supported version (what differs
// between versions goes through compat, as ExecInsertIndexTuples does).
// A local transaction can commit a row with the same key after our probe
// found none; a plain insert would then raise a unique violation and stop
// apply. Returns false in that case, with our tuple already undone, so that
// the caller probes again and resolves the conflict with the row it finds.
bool insert_unless_raced(ChangeState &cs, const RelationMap &map, TupleTableSlot *slot) {
    ResultRelInfo *rri = cs.result_rel;
    Relation rel = cs.rel;
    if (rri->ri_TrigDesc && rri->ri_TrigDesc->trig_insert_before_row &&
        !ExecBRInsertTriggers(cs.estate, rri, slot))
        return true;  // a trigger said "do nothing"
    if (rel->rd_att->constr && rel->rd_att->constr->has_generated_stored)
        ExecComputeStoredGenerated(rri, cs.estate, slot, CMD_INSERT);
    if (rel->rd_att->constr) ExecConstraints(rri, slot, cs.estate);
    if (rel->rd_rel->relispartition) ExecPartitionCheck(rri, slot, cs.estate, true);
    List *arbiters = rri->ri_NumIndices > 0 ? probed_indexes(map) : NIL;
    List *recheck = NIL;
    if (arbiters == NIL) {
        simple_table_tuple_insert(rel, slot);
        if (rri->ri_NumIndices > 0)
            recheck = compat::insert_index_tuples(rri, slot, cs.estate, false, nullptr, NIL);
    } else {
        TransactionId xid = GetCurrentTransactionId();
        uint32 token = SpeculativeInsertionLockAcquire(xid);
        table_tuple_insert_speculative(rel, slot, cs.estate->es_output_cid, 0, nullptr, token);
        bool raced = false;
        recheck = compat::insert_index_tuples(rri, slot, cs.estate, true, &raced, arbiters);
        table_tuple_complete_speculative(rel, slot, token, !raced);
        SpeculativeInsertionLockRelease(xid);
        if (raced) return false;
    }
    ExecARInsertTriggers(cs.estate, rri, slot, recheck, nullptr);
    return true;
}

// The current user (the table's owner, see AsTableOwner) may make this kind

void require_privilege(Oid relid, AclMode mode) {
    AclResult acl = pg_class_aclcheck(relid, GetUserId(), mode);
    if (acl != ACLCHECK_OK) aclcheck_error(acl, OBJECT_TABLE, get_rel_name(relid));
}

void update_row(ChangeState &cs, TupleTableSlot *local, TupleTableSlot *remote) {
    EPQState epq;
    EvalPlanQualInit(&epq, cs.estate, nullptr, NIL, -1);
    ExecSimpleRelationUpdate(cs.result_rel, cs.estate, &epq, local, remote);
    EvalPlanQualEnd(&epq);
}

TupleTableSlot *table_slot(ChangeState &cs) {
    return table_slot_create(cs.rel, &cs.estate->es_tupleTable);
}

void truncate(std::span<const RelationMap *const> maps, bool restart_identity, bool one_owner) {
    PushActiveSnapshot(GetTransactionSnapshot());
    List *rels = NIL;
    List *relids = NIL;
    for (const RelationMap *map : maps) {
        AclResult acl = pg_class_aclcheck(map->local_relid, map->owner, ACL_TRUNCATE);
        if (acl != ACLCHECK_OK) aclcheck_error(acl, OBJECT_TABLE, get_rel_name(map->local_relid));
        Relation rel = table_open(map->local_relid, AccessExclusiveLock);
        if (!one_owner && has_apply_truncate_trigger(rel))
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("cannot apply a TRUNCATE of tables with different owners: "
                                   "\"%s\" has an ENABLE ALWAYS or ENABLE REPLICA truncate trigger",
                                   RelationGetRelationName(rel)),
                            errdetail("Apply runs user code as the owner of its table, and one "
                                      "TRUNCATE cannot run as several owners."),
                            errhint("Truncate tables of different owners in separate statements, "
                                    "or skip this transaction with pgmesh.skip_transaction().")));
        rels = lappend(rels, rel);
        relids = lappend_oid(relids, map->local_relid);
    }
    ExecuteTruncateGuts(rels, relids, NIL, DROP_RESTRICT, restart_identity);
    ListCell *lc;
    foreach (lc, rels) table_close(static_cast<Relation>(lfirst(lc)), NoLock);
    PopActiveSnapshot();
    CommandCounterIncrement();
}

AsTableOwner::AsTableOwner(Oid owner, Oid relid, AclMode mode) {
    saved_ = pg::call([&] { return user_context::switch_to_untrusted(owner); });
    active_ = true;
    try {
        pg::call([&] { check_owner_may_apply(relid, mode); });
    } catch (...) {
        restore();
        throw;
    }
}

AsTableOwner::~AsTableOwner() {
    try {
        restore();
    } catch (...) {
        // The error that got us here aborts the transaction, and the abort
        // restores the user as well.
    }
}

void AsTableOwner::restore() {
    if (!active_) return;
    active_ = false;
    pg::call([&] { user_context::restore(saved_); });
}

}  // namespace pgmesh::apply
