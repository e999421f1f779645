// Module entry: _PG_init (shared memory, supervisor, hooks) and the C entry
// points of the background workers.
#include "guard.hpp"
#include "node_admin.hpp"
#include "settings.hpp"
#include "shmem.hpp"
#include "workers.hpp"

extern "C" {
PG_MODULE_MAGIC;

PGDLLEXPORT void _PG_init(void);
PGDLLEXPORT void pgmesh_supervisor_main(Datum arg);
PGDLLEXPORT void pgmesh_manager_main(Datum arg);
PGDLLEXPORT void pgmesh_apply_main(Datum arg);
}

namespace pgmesh::settings {
bool conflict_history = true;
}

namespace {

ExecutorStart_hook_type previous_executor_start = nullptr;

// Whether changes to `rel` leave this node (mirrors the output plugin).
bool is_replicated_table(Relation rel) {
    if (rel->rd_rel->relkind != RELKIND_RELATION ||
        rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT || IsCatalogRelation(rel))
        return false;
    Oid pgmesh_ns = get_namespace_oid("pgmesh", true);
    return RelationGetNamespace(rel) != pgmesh_ns;
}

// UPDATE and DELETE find the row on other nodes by its primary key: refuse
// them on tables without one, on every node, before anything changes.
void refuse_keyless_writes(QueryDesc *query) {
    if (query->operation != CMD_UPDATE && query->operation != CMD_DELETE) return;
    if (!query->plannedstmt || query->plannedstmt->resultRelations == NIL) return;
    if (!OidIsValid(get_extension_oid("pgmesh", true))) return;
    ListCell *lc;
    foreach (lc, query->plannedstmt->resultRelations) {
        RangeTblEntry *rte = rt_fetch(lfirst_int(lc), query->plannedstmt->rtable);
        if (rte->rtekind != RTE_RELATION || rte->relkind != RELKIND_RELATION) continue;
        Relation rel = table_open(rte->relid, NoLock);
        bool refuse = is_replicated_table(rel) && !OidIsValid(RelationGetReplicaIndex(rel));
        const char *name = pstrdup(RelationGetRelationName(rel));
        table_close(rel, NoLock);
        if (refuse)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("cannot %s table \"%s\" because it has no primary key",
                                   query->operation == CMD_UPDATE ? "UPDATE" : "DELETE FROM", name),
                            errdetail("pgmesh finds rows on other nodes by their primary key."),
                            errhint("Add a primary key: ALTER TABLE %s ADD PRIMARY KEY (...).",
                                    quote_identifier(name))));
    }
}

void executor_start(QueryDesc *query, int eflags) {
    refuse_keyless_writes(query);
    if (previous_executor_start)
        previous_executor_start(query, eflags);
    else
        standard_ExecutorStart(query, eflags);
}

}  // namespace

void _PG_init(void) {
    DefineCustomBoolVariable(
        "pgmesh.conflict_history", "Records every replication conflict in pgmesh.conflict_history.",
        "Counters in pgmesh.status are kept either way.", &pgmesh::settings::conflict_history, true,
        PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    MarkGUCPrefixReserved("pgmesh");
    previous_executor_start = ExecutorStart_hook;
    ExecutorStart_hook = executor_start;
    if (!process_shared_preload_libraries_in_progress) return;  // e.g. walsender decoding
    pgmesh::node_admin::loaded_at_startup = true;
    pgmesh::shmem::request();
    pgmesh::workers::register_supervisor();
}

void pgmesh_supervisor_main(Datum) {
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    pgmesh::pg::entry([] { pgmesh::workers::supervisor_main(); });
}

void pgmesh_manager_main(Datum arg) {
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    pgmesh::pg::entry([&] { pgmesh::workers::manager_main(DatumGetObjectId(arg)); });
}

void pgmesh_apply_main(Datum arg) {
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    uint64_t peer = 0;
    memcpy(&peer, MyBgworkerEntry->bgw_extra, sizeof peer);
    pgmesh::pg::entry([&] { pgmesh::workers::apply_main(DatumGetObjectId(arg), peer); });
}
