#include "apply.hpp"

#include <variant>

#include "guard.hpp"

namespace pgmesh::apply {

namespace {

// Executor state for one change on one relation, as PostgreSQL's apply
// worker builds it. Plain struct: it lives in frames PostgreSQL may longjmp
// out of (the transaction abort then releases what it holds).
struct ChangeState {
    Relation rel;
    EState *estate;
    ResultRelInfo *result_rel;
};

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
    ExecCloseIndices(cs.result_rel);
    ExecResetTupleTable(cs.estate->es_tupleTable, false);
    FreeExecutorState(cs.estate);
    table_close(cs.rel, NoLock);
    PopActiveSnapshot();
    CommandCounterIncrement();
}

[[noreturn]] void apply_error(int code, const char *fmt, const char *a, const char *b = "") {
    ereport(ERROR, (errcode(code), errmsg(fmt, a, b)));
    pg_unreachable();
}

Datum convert_value(const ColumnMap &col, const proto::Value &value, const RelationMap &map,
                    size_t index) {
    char *copy = static_cast<char *>(palloc(value.data.size() + 1));
    memcpy(copy, value.data.data(), value.data.size());
    copy[value.data.size()] = '\0';
    if (value.kind == proto::ValueKind::kText)
        return InputFunctionCall(const_cast<FmgrInfo *>(&col.text_input), copy, col.input_ioparam,
                                 col.local_typmod);
    if (!col.has_binary_input || map.remote.columns[index].type_oid != col.local_type)
        ereport(ERROR, (errcode(ERRCODE_DATATYPE_MISMATCH),
                        errmsg("binary value for column \"%s\" of \"%s.%s\" does not match the "
                               "local column type",
                               map.remote.columns[index].name.c_str(), map.remote.schema.c_str(),
                               map.remote.name.c_str()),
                        errhint("Give the column the same type on every node.")));
    StringInfoData buf;
    buf.data = copy;
    buf.len = static_cast<int>(value.data.size());
    buf.maxlen = buf.len + 1;
    buf.cursor = 0;
    Datum d = ReceiveFunctionCall(const_cast<FmgrInfo *>(&col.binary_input), &buf,
                                  col.input_ioparam, col.local_typmod);
    if (buf.cursor != buf.len)
        ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
                        errmsg("incorrect binary data format in column \"%s\" of \"%s.%s\"",
                               map.remote.columns[index].name.c_str(), map.remote.schema.c_str(),
                               map.remote.name.c_str())));
    return d;
}

void check_width(const RelationMap &map, const proto::Tuple &tuple) {
    if (tuple.size() != map.columns.size())
        ereport(ERROR,
                (errcode(ERRCODE_PROTOCOL_VIOLATION),
                 errmsg("peer sent %zu values for \"%s.%s\", which has %zu columns", tuple.size(),
                        map.remote.schema.c_str(), map.remote.name.c_str(), map.columns.size())));
}

// Stores the remote values into `slot`. Columns the remote left unchanged
// (TOAST) or does not know keep what `base` has (NULL without a base).
void fill_slot(const RelationMap &map, const proto::Tuple &tuple, TupleTableSlot *slot,
               TupleTableSlot *base) {
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

bool find_local_row(ChangeState &cs, const RelationMap &map, const proto::Tuple &key,
                    TupleTableSlot *local) {
    TupleTableSlot *search =
        ExecInitExtraTupleSlot(cs.estate, RelationGetDescr(cs.rel), &TTSOpsVirtual);
    fill_key_slot(map, key, search);
    return RelationFindReplTupleByIndex(cs.rel, map.key_index, LockTupleExclusive, search, local);
}

void do_insert(const RelationMap &map, const proto::Insert &m) {
    ChangeState cs = begin_change(map.local_relid);
    TupleTableSlot *slot =
        ExecInitExtraTupleSlot(cs.estate, RelationGetDescr(cs.rel), &TTSOpsVirtual);
    fill_slot(map, m.new_tuple, slot, nullptr);
    ExecSimpleRelationInsert(cs.result_rel, cs.estate, slot);
    end_change(cs);
}

// Returns false when the row was not found (update_missing).
bool do_update(const RelationMap &map, const proto::Update &m) {
    require_key(map);
    ChangeState cs = begin_change(map.local_relid);
    TupleTableSlot *local = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
    bool found = find_local_row(cs, map, m.old_key ? *m.old_key : m.new_tuple, local);
    if (found) {
        TupleTableSlot *updated =
            ExecInitExtraTupleSlot(cs.estate, RelationGetDescr(cs.rel), &TTSOpsVirtual);
        fill_slot(map, m.new_tuple, updated, local);
        EPQState epq;
        EvalPlanQualInit(&epq, cs.estate, nullptr, NIL, -1);
        ExecSimpleRelationUpdate(cs.result_rel, cs.estate, &epq, local, updated);
        EvalPlanQualEnd(&epq);
    }
    end_change(cs);
    return found;
}

bool do_delete(const RelationMap &map, const proto::Delete &m) {
    require_key(map);
    ChangeState cs = begin_change(map.local_relid);
    TupleTableSlot *local = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
    bool found = find_local_row(cs, map, m.old_key, local);
    if (found) {
        EPQState epq;
        EvalPlanQualInit(&epq, cs.estate, nullptr, NIL, -1);
        ExecSimpleRelationDelete(cs.result_rel, cs.estate, &epq, local);
        EvalPlanQualEnd(&epq);
    }
    end_change(cs);
    return found;
}

}  // namespace

Applier::Applier() {
    message_context_ = pg::call([] {
        return AllocSetContextCreate(TopMemoryContext, "pgmesh apply message",
                                     ALLOCSET_DEFAULT_SIZES);
    });
    cache_context_ = pg::call([] {
        return AllocSetContextCreate(TopMemoryContext, "pgmesh apply relations",
                                     ALLOCSET_DEFAULT_SIZES);
    });
}

Applier::~Applier() = default;  // the contexts go with the worker process

void Applier::invalidate(Oid relid) {
    for (auto &[id, map] : relations_)
        if (!OidIsValid(relid) || map.local_relid == relid) map.resolved = false;
}

RelationMap &Applier::relation(uint32_t remote_relid) {
    auto it = relations_.find(remote_relid);
    if (it == relations_.end())
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent a change for relation " +
                                                        std::to_string(remote_relid) +
                                                        " before describing it");
    if (!it->second.resolved) resolve(it->second);
    return it->second;
}

void Applier::resolve(RelationMap &map) {
    map.columns.assign(map.remote.columns.size(), ColumnMap{});
    // Marked first: an invalidation while resolving marks it stale again.
    map.resolved = true;
    try {
        lookup_local(map);
    } catch (...) {
        map.resolved = false;
        throw;
    }
}

void Applier::lookup_local(RelationMap &map) {
    pg::call([&] {
        RangeVar *rv =
            makeRangeVar(pstrdup(map.remote.schema.c_str()), pstrdup(map.remote.name.c_str()), -1);
        Oid relid = RangeVarGetRelid(rv, RowExclusiveLock, true);
        if (!OidIsValid(relid))
            apply_error(ERRCODE_UNDEFINED_TABLE,
                        "table \"%s.%s\" that the peer replicates does not exist on this node",
                        map.remote.schema.c_str(), map.remote.name.c_str());
        Relation rel = table_open(relid, NoLock);
        if (rel->rd_rel->relkind != RELKIND_RELATION)
            apply_error(ERRCODE_WRONG_OBJECT_TYPE, "\"%s.%s\" is not a table on this node",
                        map.remote.schema.c_str(), map.remote.name.c_str());
        TupleDesc desc = RelationGetDescr(rel);
        for (size_t i = 0; i < map.remote.columns.size(); i++) {
            const proto::Column &remote = map.remote.columns[i];
            ColumnMap &col = map.columns[i];
            for (int a = 0; a < desc->natts; a++) {
                Form_pg_attribute att = TupleDescAttr(desc, a);
                if (att->attisdropped || att->attgenerated ||
                    strcmp(NameStr(att->attname), remote.name.c_str()) != 0)
                    continue;
                col.local_attnum = att->attnum;
                col.local_type = att->atttypid;
                col.local_typmod = att->atttypmod;
            }
            if (col.local_attnum == InvalidAttrNumber)
                apply_error(ERRCODE_UNDEFINED_COLUMN,
                            "column \"%s\" that the peer replicates does not exist in \"%s\"",
                            remote.name.c_str(), RelationGetRelationName(rel));
            Oid func = InvalidOid;
            getTypeInputInfo(col.local_type, &func, &col.input_ioparam);
            fmgr_info_cxt(func, &col.text_input, cache_context_);
            HeapTuple typtup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(col.local_type));
            if (HeapTupleIsValid(typtup)) {
                Oid receive = ((Form_pg_type)GETSTRUCT(typtup))->typreceive;
                ReleaseSysCache(typtup);
                if (OidIsValid(receive)) {
                    fmgr_info_cxt(receive, &col.binary_input, cache_context_);
                    col.has_binary_input = true;
                }
            }
        }
        map.local_relid = relid;
        map.key_index = RelationGetReplicaIndex(rel);
        table_close(rel, NoLock);
    });
}

void Applier::commit(const proto::Commit &commit) {
    if (!in_remote_transaction_)
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent COMMIT outside a transaction");
    pg::call([&] {
        replorigin_session_origin_lsn = commit.end_lsn;
        replorigin_session_origin_timestamp = commit.commit_time;
        CommitTransactionCommand();
        pgstat_report_activity(STATE_IDLE, nullptr);
    });
    in_remote_transaction_ = false;
}

void Applier::handle(const proto::Decoded &message) {
    if (const auto *rel = std::get_if<proto::Relation>(&message)) {
        RelationMap &map = relations_[rel->relid];
        map.remote = *rel;
        map.resolved = false;
        return;
    }
    if (const auto *b = std::get_if<proto::Begin>(&message)) {
        if (in_remote_transaction_)
            throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent BEGIN inside a transaction");
        begin_ = *b;
        pg::call([&] {
            SetCurrentStatementStartTimestamp();
            StartTransactionCommand();
            replorigin_session_origin_timestamp = b->commit_time;
            pgstat_report_activity(STATE_RUNNING, "applying remote transaction");
        });
        in_remote_transaction_ = true;
        return;
    }
    if (const auto *c = std::get_if<proto::Commit>(&message)) {
        commit(*c);
        return;
    }
    if (const auto *m = std::get_if<proto::Message>(&message)) {
        // pgmesh's DDL and lock messages come with DDL replication; until
        // then there are none to act on.
        (void)m;
        return;
    }
    if (!in_remote_transaction_)
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent a change outside a transaction");

    MemoryContext context = message_context_;
    if (const auto *ins = std::get_if<proto::Insert>(&message)) {
        RelationMap &map = relation(ins->relid);
        pg::call([&] {
            MemoryContext old = MemoryContextSwitchTo(context);
            do_insert(map, *ins);
            MemoryContextSwitchTo(old);
        });
    } else if (const auto *upd = std::get_if<proto::Update>(&message)) {
        RelationMap &map = relation(upd->relid);
        bool found = pg::call([&] {
            MemoryContext old = MemoryContextSwitchTo(context);
            bool f = do_update(map, *upd);
            MemoryContextSwitchTo(old);
            return f;
        });
        if (!found)
            pg::call([&] {
                ereport(LOG, (errmsg("pgmesh: UPDATE from peer found no row in \"%s.%s\"; "
                                     "skipped (update_missing)",
                                     map.remote.schema.c_str(), map.remote.name.c_str())));
            });
    } else if (const auto *del = std::get_if<proto::Delete>(&message)) {
        RelationMap &map = relation(del->relid);
        bool found = pg::call([&] {
            MemoryContext old = MemoryContextSwitchTo(context);
            bool f = do_delete(map, *del);
            MemoryContextSwitchTo(old);
            return f;
        });
        if (!found)
            pg::call([&] {
                ereport(LOG, (errmsg("pgmesh: DELETE from peer found no row in \"%s.%s\"; "
                                     "skipped (delete_missing)",
                                     map.remote.schema.c_str(), map.remote.name.c_str())));
            });
    } else if (const auto *tr = std::get_if<proto::Truncate>(&message)) {
        std::vector<Oid> local;
        for (uint32_t relid : tr->relids) local.push_back(relation(relid).local_relid);
        pg::call([&] {
            MemoryContext old = MemoryContextSwitchTo(context);
            PushActiveSnapshot(GetTransactionSnapshot());
            List *rels = NIL;
            List *relids = NIL;
            for (Oid relid : local) {
                rels = lappend(rels, table_open(relid, AccessExclusiveLock));
                relids = lappend_oid(relids, relid);
            }
            ExecuteTruncateGuts(rels, relids, NIL, DROP_RESTRICT, tr->restart_identity);
            ListCell *lc;
            foreach (lc, rels) table_close(static_cast<Relation>(lfirst(lc)), NoLock);
            PopActiveSnapshot();
            CommandCounterIncrement();
            MemoryContextSwitchTo(old);
        });
    }
    pg::call([&] { MemoryContextReset(context); });
}

}  // namespace pgmesh::apply
