// Hooks in every backend: what a session may not do to replicated tables is
// refused here, before anything changes. Today the ExecutorStart hook; the
// DDL capture (ProcessUtility) joins it.
#include "hooks.hpp"

#include "ddl_lock.hpp"
#include "fault.hpp"
#include "postgres_headers.hpp"
#include "replicated.hpp"
#include "shmem.hpp"

namespace pgmesh::hooks {

namespace {

ExecutorStart_hook_type previous_executor_start = nullptr;

// UPDATE and DELETE find the row on other nodes by its key: refuse them on
// tables that cannot send one (no primary key, REPLICA IDENTITY NOTHING), on
// every node, before anything changes.
void refuse_unidentified(Oid relid, const char *statement) {
    Relation rel = table_open(relid, NoLock);
    bool refuse = replicated::is_replicated(rel) && !replicated::identifies_rows(rel);
    bool no_key = !OidIsValid(replicated::key_index(rel));
    // Names only for the error: this runs at every UPDATE and DELETE.
    const char *name = refuse ? pstrdup(RelationGetRelationName(rel)) : nullptr;
    const char *schema = refuse ? get_namespace_name(RelationGetNamespace(rel)) : nullptr;
    table_close(rel, NoLock);
    if (!refuse) return;
    const char *qualified = quote_qualified_identifier(schema, name);
    if (no_key)
        ereport(ERROR,
                (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                 errmsg("cannot %s table \"%s\" because it has no primary key", statement, name),
                 errdetail("pgmesh finds rows on other nodes by their primary key."),
                 errhint("Add a primary key: ALTER TABLE %s ADD PRIMARY KEY (...).", qualified)));
    ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                    errmsg("cannot %s table \"%s\" because its replica identity is NOTHING",
                           statement, name),
                    errdetail("pgmesh finds rows on other nodes by their key, which REPLICA "
                              "IDENTITY NOTHING leaves out of the WAL."),
                    errhint("ALTER TABLE %s REPLICA IDENTITY DEFAULT;", qualified)));
}

// A partitioned table's rows live in its leaf partitions, and those are what
// replicates; tuple routing (ON CONFLICT, MERGE) picks the leaf at run time.
void refuse_unidentified_tree(Oid relid, char relkind, const char *statement) {
    if (relkind == RELKIND_RELATION) {
        refuse_unidentified(relid, statement);
        return;
    }
    if (relkind != RELKIND_PARTITIONED_TABLE) return;
    ListCell *lc;
    foreach (lc, find_all_inheritors(relid, NoLock, nullptr)) {
        Oid member = lfirst_oid(lc);
        if (get_rel_relkind(member) == RELKIND_RELATION) refuse_unidentified(member, statement);
    }
}

// What one ModifyTable node does to the rows of its i-th result relation
// that needs their key: nullptr when it only inserts.
const char *keyed_action(const ModifyTable *node, int i) {
    switch (node->operation) {
        case CMD_UPDATE:
            return "UPDATE";
        case CMD_DELETE:
            return "DELETE FROM";
        case CMD_INSERT:
            return node->onConflictAction == ONCONFLICT_UPDATE
                       ? "INSERT ... ON CONFLICT DO UPDATE into"
                       : nullptr;
        case CMD_MERGE: {
            ListCell *lc;
            foreach (lc, static_cast<List *>(list_nth(node->mergeActionLists, i))) {
                auto *action = lfirst_node(MergeAction, lc);
                if (action->commandType == CMD_UPDATE || action->commandType == CMD_DELETE)
                    return "MERGE with UPDATE or DELETE into";
            }
            return nullptr;
        }
        default:
            return nullptr;
    }
}

void check_modify_table(const PlannedStmt *stmt, const Plan *plan) {
    if (!plan || !IsA(plan, ModifyTable)) return;
    auto *node = reinterpret_cast<const ModifyTable *>(plan);
    int i = 0;
    ListCell *lc;
    foreach (lc, node->resultRelations) {
        const char *action = keyed_action(node, i++);
        if (!action) continue;
        RangeTblEntry *rte = rt_fetch(lfirst_int(lc), stmt->rtable);
        if (rte->rtekind == RTE_RELATION)
            refuse_unidentified_tree(rte->relid, rte->relkind, action);
    }
}

// Every form of statement that changes existing rows: UPDATE and DELETE,
// data-modifying WITH queries (their ModifyTable is the top of a subplan),
// INSERT ... ON CONFLICT DO UPDATE and MERGE. Rule actions and statements
// inside functions reach the executor as statements of their own.
void refuse_keyless_writes(QueryDesc *query) {
    const PlannedStmt *stmt = query->plannedstmt;
    if (!stmt || stmt->resultRelations == NIL) return;
    // Apply's own writes never leave this node (the origin filter).
    if (replorigin_session_origin != InvalidRepOriginId) return;
    if (!OidIsValid(get_extension_oid("pgmesh", true))) return;
    if (fault::armed("skip_keyless_check")) return;
    check_modify_table(stmt, stmt->planTree);
    ListCell *lc;
    foreach (lc, stmt->subplans) check_modify_table(stmt, static_cast<const Plan *>(lfirst(lc)));
}

// Writes wait while another node's write lock blocks their tables
// (ddl_lock.hpp).
void wait_for_write_locks(QueryDesc *query) {
    const PlannedStmt *stmt = query->plannedstmt;
    if (!stmt || stmt->resultRelations == NIL) return;
    if (replorigin_session_origin != InvalidRepOriginId) return;
    ListCell *lc;
    foreach (lc, stmt->resultRelations) {
        RangeTblEntry *rte = rt_fetch(lfirst_int(lc), stmt->rtable);
        if (rte->rtekind == RTE_RELATION &&
            (rte->relkind == RELKIND_RELATION || rte->relkind == RELKIND_PARTITIONED_TABLE))
            ddl_lock::block_writes_to(rte->relid);
    }
}

void executor_start(QueryDesc *query, int eflags) {
    refuse_keyless_writes(query);
    wait_for_write_locks(query);
    if (previous_executor_start)
        previous_executor_start(query, eflags);
    else
        standard_ExecutorStart(query, eflags);
}

}  // namespace

void install() {
    previous_executor_start = ExecutorStart_hook;
    ExecutorStart_hook = executor_start;
}

}  // namespace pgmesh::hooks
