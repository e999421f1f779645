#include "apply.hpp"

#include <algorithm>
#include <optional>
#include <variant>

#include "guard.hpp"
#include "replicated.hpp"
#include "settings.hpp"
#include "shmem.hpp"
#include "spi.hpp"
#include "user_context.hpp"

namespace pgmesh::apply {

// Executor state for one change on one relation, as PostgreSQL's apply
// worker builds it. Plain struct: it lives in frames PostgreSQL may longjmp
// out of (the transaction abort then releases what it holds).
struct ChangeState {
    Relation rel;
    EState *estate;
    ResultRelInfo *result_rel;
};

namespace {

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

// Inserts `slot` as ExecSimpleRelationInsert does (triggers, generated
// columns, constraints), but speculatively, as INSERT ... ON CONFLICT does.
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
            recheck = ExecInsertIndexTuples(rri, slot, cs.estate, false, false, nullptr, NIL);
    } else {
        TransactionId xid = GetCurrentTransactionId();
        uint32 token = SpeculativeInsertionLockAcquire(xid);
        table_tuple_insert_speculative(rel, slot, cs.estate->es_output_cid, 0, nullptr, token);
        bool raced = false;
        recheck = ExecInsertIndexTuples(rri, slot, cs.estate, false, true, &raced, arbiters);
        table_tuple_complete_speculative(rel, slot, token, !raced);
        SpeculativeInsertionLockRelease(xid);
        if (raced) return false;
    }
    ExecARInsertTriggers(cs.estate, rri, slot, recheck, nullptr);
    return true;
}

// The current user (the table's owner, see AsTableOwner) may make this kind
// of change to the table.
void require_privilege(Oid relid, AclMode mode) {
    AclResult acl = pg_class_aclcheck(relid, GetUserId(), mode);
    if (acl != ACLCHECK_OK) aclcheck_error(acl, OBJECT_TABLE, get_rel_name(relid));
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

// Applies a change as the owner of its table (user_context.hpp), who must be
// allowed to make it, as PostgreSQL 16's apply does. Triggers, defaults,
// constraints and resolver functions then run with the owner's rights, never
// with the worker's.
class AsTableOwner {
public:
    AsTableOwner(Oid owner, Oid relid, AclMode mode) {
        saved_ = pg::call([&] { return user_context::switch_to_untrusted(owner); });
        active_ = true;
        try {
            pg::call([&] { check_owner_may_apply(relid, mode); });
        } catch (...) {
            restore();
            throw;
        }
    }
    ~AsTableOwner() {
        try {
            restore();
        } catch (...) {
            // The error that got us here aborts the transaction, and the
            // abort restores the user as well.
        }
    }
    AsTableOwner(const AsTableOwner &) = delete;
    AsTableOwner &operator=(const AsTableOwner &) = delete;

    void restore() {
        if (!active_) return;
        active_ = false;
        pg::call([&] { user_context::restore(saved_); });
    }

private:
    user_context::Saved saved_{};
    bool active_ = false;
};

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

Applier::Applier(ApplyIdentity identity) : identity_(std::move(identity)) {
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
    // Set first: a failure to look the table up names it in the history.
    current_relation_ = &it->second;
    if (!it->second.resolved) resolve(it->second);
    if (it->second.resolvers_version != resolvers_version_) load_resolvers(it->second);
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
            // Binary values come only for built-in types, whose OIDs are the
            // same on every node: a different one here is read as the
            // remote type and converted through text.
            if (remote.type_oid != col.local_type && remote.type_oid < FirstNormalObjectId &&
                SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(remote.type_oid))) {
                Oid receive = InvalidOid;
                Oid output = InvalidOid;
                bool varlena = false;
                getTypeBinaryInputInfo(remote.type_oid, &receive, &col.remote_ioparam);
                getTypeOutputInfo(remote.type_oid, &output, &varlena);
                fmgr_info_cxt(receive, &col.remote_receive, cache_context_);
                fmgr_info_cxt(output, &col.remote_output, cache_context_);
                col.converts = true;
            }
        }
        map.local_only.clear();
        for (int a = 0; a < desc->natts; a++) {
            Form_pg_attribute att = TupleDescAttr(desc, a);
            if (att->attisdropped || att->attgenerated) continue;
            bool sent =
                std::any_of(map.columns.begin(), map.columns.end(),
                            [&](const ColumnMap &c) { return c.local_attnum == att->attnum; });
            if (!sent) map.local_only.push_back(att->attnum);
        }
        map.local_relid = relid;
        map.owner = rel->rd_rel->relowner;
        map.key_index = replicated::key_index(rel);
        map.unique_indexes.clear();
        List *indexes = RelationGetIndexList(rel);
        ListCell *lc;
        foreach (lc, indexes) {
            Oid index_oid = lfirst_oid(lc);
            if (index_oid == map.key_index) continue;
            Relation index = index_open(index_oid, AccessShareLock);
            Form_pg_index form = index->rd_index;
            // Plain immediate unique indexes only: expression and partial
            // indexes cannot be probed with a row.
            bool usable = form->indisunique && form->indimmediate && form->indisvalid &&
                          RelationGetIndexExpressions(index) == NIL &&
                          RelationGetIndexPredicate(index) == NIL;
            if (usable) {
                UniqueIndex u;
                u.oid = index_oid;
                for (int k = 0; k < form->indnkeyatts; k++)
                    u.attnums.push_back(form->indkey.values[k]);
                map.unique_indexes.push_back(std::move(u));
            }
            index_close(index, AccessShareLock);
        }
        table_close(rel, NoLock);
    });
    load_resolvers(map);
}

void Applier::load_resolvers(RelationMap &map) {
    uint64_t version = resolvers_version_;
    for (int t = 0; t < conflict::kTypeCount; t++)
        map.resolvers[t] =
            ResolverChoice{conflict::default_resolver(static_cast<conflict::Type>(t)), InvalidOid};
    spi::Rows rows = spi::query(
        "SELECT conflict_type, resolver, "
        "CASE WHEN resolver LIKE '%(%' THEN pg_catalog.to_regprocedure(resolver)::pg_catalog.oid "
        "END FROM pgmesh.conflict_resolver WHERE table_schema = $1 AND table_name = $2",
        {spi::text(map.remote.schema), spi::text(map.remote.name)});
    for (const spi::Row &row : rows) {
        auto type = conflict::parse_type(row.at(0).value_or(""));
        if (!type) continue;
        ResolverChoice &choice = map.resolvers[static_cast<size_t>(*type)];
        if (auto builtin = conflict::parse_resolver(row.at(1).value_or("")))
            choice = ResolverChoice{*builtin, InvalidOid};
        else if (row.at(2))
            choice = ResolverChoice{conflict::Resolver::kUserFunction,
                                    static_cast<Oid>(std::stoul(*row.at(2)))};
    }
    map.resolvers_version = version;
}

void Applier::commit(const proto::Commit &commit) {
    if (!in_remote_transaction_)
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent COMMIT outside a transaction");
    pg::call([&] {
        replorigin_session_origin_lsn = commit.end_lsn;
        replorigin_session_origin_timestamp = commit.commit_time;
        // The origin's progress is written with the commit record, which a
        // transaction that changed nothing (skipped, or every change a
        // no-op) would not write: without an xid a restart would apply (or
        // skip) it again.
        if (!TransactionIdIsValid(GetTopTransactionIdIfAny())) (void)GetTopTransactionId();
        CommitTransactionCommand();
        pgstat_report_activity(STATE_IDLE, nullptr);
    });
    in_remote_transaction_ = false;
}

conflict::Version Applier::remote_version() const {
    return conflict::Version{begin_.commit_time, begin_.origin_node_id};
}

uint64_t Applier::node_of_origin(RepOriginId origin) {
    if (origin == InvalidRepOriginId) return identity_.local_node_id;
    if (auto it = origin_nodes_.find(origin); it != origin_nodes_.end()) return it->second;
    char *name = nullptr;
    pg::call([&] { replorigin_by_oid(origin, true, &name); });
    uint64_t node = 0;
    // Origins named pgmesh_<16 hex digits> stand for peers; any other (a
    // join's copy, a foreign tool) for no node.
    if (name && strlen(name) == 23 && strncmp(name, "pgmesh_", 7) == 0)
        node = std::strtoull(name + 7, nullptr, 16);
    origin_nodes_[origin] = node;
    return node;
}

conflict::Version Applier::version_of(TupleTableSlot *slot) {
    TransactionId xmin = InvalidTransactionId;
    TimestampTz time = 0;
    RepOriginId origin = InvalidRepOriginId;
    bool known = pg::call([&] {
        bool should_free = false;
        HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
        xmin = HeapTupleHeaderGetXmin(tuple->t_data);
        if (!TransactionIdIsNormal(xmin)) return false;
        return TransactionIdGetCommitTsData(xmin, &time, &origin);
    });
    if (!known) return conflict::Version{0, 0};  // frozen or from before tracking
    // The join's copy (written locally before copied_until, or under the
    // copy origin) is older than anything that streams in after it.
    if (origin == InvalidRepOriginId && time <= identity_.copied_until)
        return conflict::Version{0, 0};
    uint64_t node = node_of_origin(origin);
    if (node == 0) return conflict::Version{0, 0};
    return conflict::Version{time, node};
}

bool Applier::written_by_another_node(TupleTableSlot *local) {
    // Node 0: the join's copy or frozen rows, which no change competes with.
    uint64_t node = version_of(local).node_id;
    return node != 0 && node != identity_.peer_node_id;
}

void Applier::count(conflict::Type type) {
    pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        if (shmem::WorkerSlot *w =
                shmem::worker_slot(identity_.dboid, identity_.peer_node_id, false))
            w->conflicts[static_cast<size_t>(type)]++;
        LWLockRelease(shmem::state().lock);
    });
}

namespace {

// JSON text of a row held in a slot, for the history.
const char *row_json(TupleTableSlot *slot) {
    if (!slot) return nullptr;
    Datum row = ExecFetchSlotHeapTupleDatum(slot);
    return text_to_cstring(DatumGetTextPP(DirectFunctionCall1(row_to_json, row)));
}

// Calls a user resolver (conflict_type text, local anyelement, remote
// anyelement) -> anyelement. Returns the row to write, or nullptr to keep
// the local row.
TupleTableSlot *call_user_resolver(Oid function, Relation rel, conflict::Type type,
                                   TupleTableSlot *local, TupleTableSlot *remote,
                                   TupleTableSlot *result_slot) {
    Oid rowtype = rel->rd_rel->reltype;
    FmgrInfo flinfo;
    fmgr_info(function, &flinfo);
    // The polymorphic arguments resolve through fn_expr, as in a query.
    List *args =
        list_make3(makeNullConst(TEXTOID, -1, InvalidOid), makeNullConst(rowtype, -1, InvalidOid),
                   makeNullConst(rowtype, -1, InvalidOid));
    flinfo.fn_expr =
        (Node *)makeFuncExpr(function, rowtype, args, InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
    LOCAL_FCINFO(fcinfo, 3);
    InitFunctionCallInfoData(*fcinfo, &flinfo, 3, InvalidOid, nullptr, nullptr);
    std::string_view type_name = conflict::name(type);
    fcinfo->args[0].value =
        PointerGetDatum(cstring_to_text_with_len(type_name.data(), type_name.size()));
    fcinfo->args[0].isnull = false;
    fcinfo->args[1].value = ExecFetchSlotHeapTupleDatum(local);
    fcinfo->args[1].isnull = false;
    fcinfo->args[2].value = ExecFetchSlotHeapTupleDatum(remote);
    fcinfo->args[2].isnull = false;
    Datum result = FunctionCallInvoke(fcinfo);
    if (fcinfo->isnull) return nullptr;
    HeapTupleHeader header = DatumGetHeapTupleHeader(result);
    HeapTupleData tuple;
    tuple.t_len = HeapTupleHeaderGetDatumLength(header);
    ItemPointerSetInvalid(&tuple.t_self);
    tuple.t_tableOid = RelationGetRelid(rel);
    tuple.t_data = header;
    ExecForceStoreHeapTuple(heap_copytuple(&tuple), result_slot, true);
    return result_slot;
}

int conflict_errcode(conflict::Type type) {
    return type == conflict::Type::kMultipleUniqueConflicts ||
                   type == conflict::Type::kInsertExists || type == conflict::Type::kUpdateExists
               ? ERRCODE_UNIQUE_VIOLATION
               : ERRCODE_T_R_SERIALIZATION_FAILURE;
}

}  // namespace

void Applier::record(conflict::Type type, conflict::Resolution resolution, TupleTableSlot *local,
                     TupleTableSlot *remote) {
    count(type);
    if (!settings::conflict_history) return;
    PendingConflict conflict{type, resolution, {}, {}, local ? version_of(local).commit_time : 0};
    pg::call([&] {
        if (const char *json = row_json(local)) conflict.local_json = json;
        if (const char *json = row_json(remote)) conflict.remote_json = json;
    });
    pending_conflicts_.push_back(std::move(conflict));
}

void Applier::write_pending_conflicts() {
    for (const PendingConflict &conflict : pending_conflicts_)
        insert_history_row(conflict, nullptr);
    pending_conflicts_.clear();
}

namespace {

// The columns of a history row, $1 to $14 below. A row of pgmesh.node holds
// a DSN: it is recorded masked, as pgmesh.nodes shows it.
#define PGMESH_TUPLE(param)                                                    \
    "CASE WHEN $3 = 'pgmesh' AND $4 = 'node' THEN pg_catalog.jsonb_set(" param \
    "::pg_catalog.jsonb, '{dsn}', pg_catalog.to_jsonb(pgmesh.mask_dsn(" param  \
    "::pg_catalog.jsonb ->> 'dsn'))) ELSE " param "::pg_catalog.jsonb END"
#define PGMESH_INSERT_HISTORY                                                            \
    "INSERT INTO pgmesh.conflict_history (local_node_id, remote_node_id, table_schema, " \
    "table_name, relid, conflict_type, resolution, local_tuple, remote_tuple, "          \
    "local_commit_time, remote_commit_time, remote_commit_lsn, remote_xid, message) "
#define PGMESH_HISTORY_VALUES                                                            \
    "$1, $2, $3, $4, $5::pg_catalog.oid, $6, $7, " PGMESH_TUPLE("$8") ", " PGMESH_TUPLE( \
        "$9") ", $10, $11, $12, $13, $14"

constexpr const char *kInsertHistory = PGMESH_INSERT_HISTORY "VALUES (" PGMESH_HISTORY_VALUES ")";

// A failure that stops apply comes back at every retry of the same remote
// transaction: the row that recorded it counts it again instead of a new
// row per retry.
constexpr const char *kRecordFailure =
    "WITH repeated AS (UPDATE pgmesh.conflict_history h "
    "SET occurrences = h.occurrences + 1, last_occurred_at = pg_catalog.clock_timestamp() "
    "WHERE h.id = (SELECT pg_catalog.max(id) FROM pgmesh.conflict_history "
    "WHERE remote_node_id = $2 AND remote_commit_lsn = $12 AND resolution = 'error') "
    "AND h.conflict_type = $6 AND h.message IS NOT DISTINCT FROM $14 RETURNING "
    "1) " PGMESH_INSERT_HISTORY "SELECT " PGMESH_HISTORY_VALUES
    " WHERE NOT EXISTS (SELECT FROM repeated)";

#undef PGMESH_INSERT_HISTORY
#undef PGMESH_HISTORY_VALUES
#undef PGMESH_TUPLE

}  // namespace

void Applier::insert_history_row(const PendingConflict &conflict, const char *message) {
    const RelationMap *map = current_relation_;
    auto json = [](const std::string &text) {
        return text.empty() ? spi::Param{} : spi::text(text);
    };
    spi::Param relid{};
    if (map && OidIsValid(map->local_relid)) relid = spi::text(std::to_string(map->local_relid));
    spi::query(
        conflict.resolution == conflict::Resolution::kError ? kRecordFailure : kInsertHistory,
        {spi::int8(static_cast<int64_t>(identity_.local_node_id)),
         spi::int8(static_cast<int64_t>(identity_.peer_node_id)),
         spi::text(map ? map->remote.schema : ""), spi::text(map ? map->remote.name : ""), relid,
         spi::text(conflict::name(conflict.type)), spi::text(conflict::name(conflict.resolution)),
         json(conflict.local_json), json(conflict.remote_json),
         spi::timestamptz_or_null(conflict.local_commit_time),
         spi::timestamptz_or_null(begin_.commit_time), spi::lsn(begin_.final_lsn),
         spi::int8(static_cast<int64_t>(begin_.xid)), message ? spi::text(message) : spi::Param{}});
}

conflict::Resolution Applier::decide(ChangeState &cs, RelationMap &map, conflict::Type type,
                                     TupleTableSlot *local, TupleTableSlot *&remote) {
    const ResolverChoice &choice = map.resolvers[static_cast<size_t>(type)];
    conflict::Resolution resolution;
    if (choice.resolver == conflict::Resolver::kUserFunction && local) {
        // User code: it runs as the table's owner (the change already does),
        // who must still be allowed to call it.
        TupleTableSlot *chosen = pg::call([&] {
            AclResult acl = compat::function_aclcheck(choice.function, GetUserId(), ACL_EXECUTE);
            if (acl != ACLCHECK_OK)
                aclcheck_error(acl, OBJECT_FUNCTION, get_func_name(choice.function));
            TupleTableSlot *out =
                ExecInitExtraTupleSlot(cs.estate, RelationGetDescr(cs.rel), &TTSOpsHeapTuple);
            return call_user_resolver(choice.function, cs.rel, type, local, remote, out);
        });
        resolution = chosen ? conflict::Resolution::kApplyRemote : conflict::Resolution::kKeepLocal;
        if (chosen) remote = chosen;
    } else {
        conflict::Resolver resolver = choice.resolver == conflict::Resolver::kUserFunction
                                          ? conflict::default_resolver(type)
                                          : choice.resolver;
        resolution = conflict::resolve(
            type, resolver, local ? version_of(local) : conflict::Version{}, remote_version());
    }
    if (resolution == conflict::Resolution::kError) {
        // Recorded by record_failure() once this transaction is rolled back;
        // the rows go along as text.
        std::string msg = "conflict " + std::string(conflict::name(type)) + " on table \"" +
                          map.remote.schema + "." + map.remote.name + "\"";
        ConflictError error(type, conflict_errcode(type), msg,
                            "The table's resolver for this conflict is \"error\", or it cannot "
                            "be resolved automatically.",
                            "Fix the local data, or skip the remote transaction with "
                            "pgmesh.skip_transaction().");
        pg::call([&] {
            if (const char *json = row_json(local)) error.local_json = json;
            if (const char *json = row_json(remote)) error.remote_json = json;
        });
        throw error;
    }
    record(type, resolution, local, remote);
    return resolution;
}

bool Applier::apply_insert(RelationMap &map, const proto::Insert &m) {
    ChangeState cs{};
    TupleTableSlot *remote = nullptr;
    TupleTableSlot *local = nullptr;
    TupleTableSlot *other = nullptr;
    bool exists = false;
    int collisions = 0;
    pg::call([&] {
        cs = begin_change(map.local_relid);
        remote = virtual_slot(cs);
        fill_slot(cs, map, m.new_tuple, remote, nullptr);
        local = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
        other = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
        exists = OidIsValid(map.key_index) && find_by_key(cs, map, m.new_tuple, local);
        if (!exists) collisions = unique_conflicts(cs, map, remote, nullptr, false, other);
    });
    if (!exists && collisions == 0)
        return pg::call([&] {
            bool inserted = insert_unless_raced(cs, map, remote);
            end_change(cs);
            return inserted;
        });
    if (collisions > 1) {
        decide(cs, map, conflict::Type::kMultipleUniqueConflicts, other, remote);  // throws
        return true;
    }
    // The same key exists (or another unique key collides): one version wins.
    TupleTableSlot *existing = exists ? local : other;
    conflict::Resolution r = decide(cs, map, conflict::Type::kInsertExists, existing, remote);
    return pg::call([&] {
        bool done = true;
        if (r == conflict::Resolution::kApplyRemote)
            require_privilege(map.local_relid, exists ? ACL_UPDATE : ACL_DELETE);
        if (r == conflict::Resolution::kApplyRemote && exists) {
            EPQState epq;
            EvalPlanQualInit(&epq, cs.estate, nullptr, NIL, -1);
            ExecSimpleRelationUpdate(cs.result_rel, cs.estate, &epq, existing, remote);
            EvalPlanQualEnd(&epq);
        } else if (r == conflict::Resolution::kApplyRemote) {
            delete_row(cs, existing);
            done = insert_unless_raced(cs, map, remote);
        }
        end_change(cs);
        return done;
    });
}

bool Applier::apply_update(RelationMap &map, const proto::Update &m) {
    ChangeState cs{};
    TupleTableSlot *local = nullptr;
    TupleTableSlot *updated = nullptr;
    TupleTableSlot *other = nullptr;
    bool found = false;
    pg::call([&] {
        require_key(map);
        cs = begin_change(map.local_relid);
        local = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
        other = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
        updated = virtual_slot(cs);
        found = find_by_key(cs, map, m.old_key ? *m.old_key : m.new_tuple, local);
    });
    if (!found) {
        // Deleted here meanwhile: by default the delete wins.
        bool complete = std::none_of(m.new_tuple.begin(), m.new_tuple.end(), [](const auto &v) {
            return v.kind == proto::ValueKind::kUnchanged;
        });
        TupleTableSlot *remote = nullptr;
        if (complete) pg::call([&] { fill_slot(cs, map, m.new_tuple, updated, nullptr); });
        if (complete) remote = updated;
        conflict::Resolution r = decide(cs, map, conflict::Type::kUpdateMissing, nullptr, remote);
        return pg::call([&] {
            bool done = true;
            if (r == conflict::Resolution::kApplyRemote && remote) {
                require_privilege(map.local_relid, ACL_INSERT);
                done = insert_unless_raced(cs, map, remote);
            }
            end_change(cs);
            return done;
        });
    }
    int collisions = 0;
    pg::call([&] {
        fill_slot(cs, map, m.new_tuple, updated, local);
        // The origin logs the old key only when the key changed (or for
        // REPLICA IDENTITY FULL): only then can the new key collide.
        collisions =
            unique_conflicts(cs, map, updated, &local->tts_tid, m.old_key.has_value(), other);
    });
    TupleTableSlot *remote = updated;
    if (written_by_another_node(local) &&
        decide(cs, map, conflict::Type::kUpdateOriginDiffers, local, remote) !=
            conflict::Resolution::kApplyRemote) {
        pg::call([&] { end_change(cs); });
        return true;
    }
    if (collisions > 1) decide(cs, map, conflict::Type::kMultipleUniqueConflicts, other, remote);
    bool delete_other = false;
    if (collisions == 1) {
        if (decide(cs, map, conflict::Type::kUpdateExists, other, remote) !=
            conflict::Resolution::kApplyRemote) {
            // By version, the colliding row keeps the value and the row this
            // update moved loses. On the update's origin the colliding row
            // arrives as an insert_exists or update_exists that deletes the
            // older holder of the value; the same row goes here. Other
            // resolvers only skip the update.
            conflict::Resolver resolver =
                map.resolvers[static_cast<size_t>(conflict::Type::kUpdateExists)].resolver;
            bool by_version = resolver == conflict::Resolver::kLastUpdateWins ||
                              resolver == conflict::Resolver::kFirstUpdateWins;
            pg::call([&] {
                if (by_version) {
                    require_privilege(map.local_relid, ACL_DELETE);
                    delete_row(cs, local);
                }
                end_change(cs);
            });
            return true;
        }
        delete_other = true;
    }
    pg::call([&] {
        EPQState epq;
        EvalPlanQualInit(&epq, cs.estate, nullptr, NIL, -1);
        if (delete_other) require_privilege(map.local_relid, ACL_DELETE);
        if (delete_other) ExecSimpleRelationDelete(cs.result_rel, cs.estate, &epq, other);
        ExecSimpleRelationUpdate(cs.result_rel, cs.estate, &epq, local, remote);
        EvalPlanQualEnd(&epq);
        end_change(cs);
    });
    return true;
}

void Applier::apply_delete(RelationMap &map, const proto::Delete &m) {
    ChangeState cs{};
    TupleTableSlot *local = nullptr;
    TupleTableSlot *key = nullptr;
    bool found = false;
    pg::call([&] {
        require_key(map);
        cs = begin_change(map.local_relid);
        local = table_slot_create(cs.rel, &cs.estate->es_tupleTable);
        key = virtual_slot(cs);
        fill_key_slot(map, m.old_key, key);
        found = RelationFindReplTupleByIndex(cs.rel, map.key_index, LockTupleExclusive, key, local);
    });
    conflict::Resolution r = conflict::Resolution::kApplyRemote;
    if (!found)
        r = decide(cs, map, conflict::Type::kDeleteMissing, nullptr, key);
    else if (written_by_another_node(local))
        r = decide(cs, map, conflict::Type::kDeleteOriginDiffers, local, key);
    pg::call([&] {
        if (found && r == conflict::Resolution::kApplyRemote) delete_row(cs, local);
        end_change(cs);
    });
}

void Applier::apply_truncate(const proto::Truncate &m) {
    std::vector<const RelationMap *> maps;
    for (uint32_t relid : m.relids) maps.push_back(&relation(relid));
    if (maps.empty()) return;
    bool one_owner = std::all_of(maps.begin(), maps.end(), [&](const RelationMap *map) {
        return map->owner == maps.front()->owner;
    });
    // Triggers run as the owner of the tables; TRUNCATE fires them all from
    // one call, so that works when the tables share their owner. With
    // several owners it runs as the worker, which is safe only while no
    // user code runs.
    std::optional<AsTableOwner> as_owner;
    if (one_owner) as_owner.emplace(maps.front()->owner, maps.front()->local_relid, ACL_TRUNCATE);
    pg::call([&] {
        PushActiveSnapshot(GetTransactionSnapshot());
        List *rels = NIL;
        List *relids = NIL;
        for (const RelationMap *map : maps) {
            AclResult acl = pg_class_aclcheck(map->local_relid, map->owner, ACL_TRUNCATE);
            if (acl != ACLCHECK_OK)
                aclcheck_error(acl, OBJECT_TABLE, get_rel_name(map->local_relid));
            Relation rel = table_open(map->local_relid, AccessExclusiveLock);
            if (!one_owner && has_apply_truncate_trigger(rel))
                ereport(ERROR,
                        (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
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
        ExecuteTruncateGuts(rels, relids, NIL, DROP_RESTRICT, m.restart_identity);
        ListCell *lc;
        foreach (lc, rels) table_close(static_cast<Relation>(lfirst(lc)), NoLock);
        PopActiveSnapshot();
        CommandCounterIncrement();
    });
}

bool Applier::repeats_last_failure(conflict::Type type) {
    return pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        shmem::WorkerSlot *w = shmem::worker_slot(identity_.dboid, identity_.peer_node_id, false);
        bool repeat =
            w && w->failed_lsn == begin_.final_lsn && w->failed_type == static_cast<int>(type);
        if (w) {
            w->failed_lsn = begin_.final_lsn;
            w->failed_type = static_cast<int>(type);
        }
        LWLockRelease(shmem::state().lock);
        return repeat;
    });
}

void Applier::record_failure(const pg::Error &error, const std::string &message) {
    // Runs in a fresh transaction after the failed one was rolled back; it
    // records only, so it carries no origin progress.
    const auto *conflict_error = dynamic_cast<const ConflictError *>(&error);
    conflict::Type type = conflict_error ? conflict_error->type : conflict::Type::kApplyError;
    pending_conflicts_.clear();  // rolled back with the transaction
    if (!repeats_last_failure(type)) count(type);
    if (!settings::conflict_history) return;
    PendingConflict failure{type, conflict::Resolution::kError,
                            conflict_error ? conflict_error->local_json : std::string(),
                            conflict_error ? conflict_error->remote_json : std::string(), 0};
    RepOriginId origin = replorigin_session_origin;
    pg::call([] {
        replorigin_session_origin = InvalidRepOriginId;
        StartTransactionCommand();
    });
    try {
        insert_history_row(failure, message.c_str());
    } catch (...) {
        pg::call([&] {
            AbortCurrentTransaction();
            replorigin_session_origin = origin;
        });
        throw;
    }
    pg::call([&] {
        CommitTransactionCommand();
        replorigin_session_origin = origin;
    });
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
        current_relation_ = nullptr;
        pending_conflicts_.clear();
        skipping_ = skip_lsn_ != 0 && b->final_lsn == skip_lsn_;
        resolvers_version_ = pg::call([&] {
            SetCurrentStatementStartTimestamp();
            StartTransactionCommand();
            replorigin_session_origin_timestamp = b->commit_time;
            pgstat_report_activity(STATE_RUNNING, "applying remote transaction");
            LWLockAcquire(shmem::state().lock, LW_SHARED);
            shmem::DatabaseSlot *d = shmem::database_slot(identity_.dboid, false);
            uint64_t version = d ? d->resolvers_version : 0;
            LWLockRelease(shmem::state().lock);
            return version;
        });
        in_remote_transaction_ = true;
        return;
    }
    if (const auto *c = std::get_if<proto::Commit>(&message)) {
        commit(*c);
        return;
    }
    if (std::holds_alternative<proto::Message>(message)) {
        // pgmesh's DDL and lock messages come with DDL replication; until
        // then there are none to act on.
        return;
    }
    if (!in_remote_transaction_)
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent a change outside a transaction");
    if (skipping_) return;  // pgmesh.skip_transaction: commit() only advances the origin

    MemoryContext old = pg::call([&] { return MemoryContextSwitchTo(message_context_); });
    auto run_again = [] { pg::call([] { CHECK_FOR_INTERRUPTS(); }); };
    // Each change runs as its table's owner; its conflicts are written to
    // the history afterwards, as pgmesh.
    if (const auto *ins = std::get_if<proto::Insert>(&message)) {
        RelationMap &map = relation(ins->relid);
        AsTableOwner owner(map.owner, map.local_relid, ACL_INSERT);
        while (!apply_insert(map, *ins)) run_again();
        owner.restore();
    } else if (const auto *upd = std::get_if<proto::Update>(&message)) {
        RelationMap &map = relation(upd->relid);
        AsTableOwner owner(map.owner, map.local_relid, ACL_UPDATE);
        while (!apply_update(map, *upd)) run_again();
        owner.restore();
    } else if (const auto *del = std::get_if<proto::Delete>(&message)) {
        RelationMap &map = relation(del->relid);
        AsTableOwner owner(map.owner, map.local_relid, ACL_DELETE);
        apply_delete(map, *del);
        owner.restore();
    } else if (const auto *tr = std::get_if<proto::Truncate>(&message)) {
        apply_truncate(*tr);
    }
    write_pending_conflicts();
    if (current_relation_ && current_relation_->remote.schema == "pgmesh" &&
        current_relation_->remote.name == "conflict_resolver")
        pg::call([&] {
            // Every apply worker of this database re-reads resolvers.
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            if (shmem::DatabaseSlot *d = shmem::database_slot(identity_.dboid, false))
                d->resolvers_version++;
            LWLockRelease(shmem::state().lock);
        });
    pg::call([&] {
        MemoryContextSwitchTo(old);
        MemoryContextReset(message_context_);
    });
}

}  // namespace pgmesh::apply
