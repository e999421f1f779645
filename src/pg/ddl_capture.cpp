#include "ddl_capture.hpp"

#include <string>

#include "catalog.hpp"
#include "ddl.hpp"
#include "ddl_describe.hpp"
#include "ddl_lock.hpp"
#include "group_key.hpp"
#include "guard.hpp"
#include "settings.hpp"
#include "node_admin.hpp"
#include "shmem.hpp"
#include "tombstones.hpp"

namespace pgmesh::ddl_capture {

namespace {

ProcessUtility_hook_type previous_process_utility = nullptr;

// The text of this statement alone: a multi-statement string (psql -c, a
// migration tool's script) sends each statement on its own.
std::string statement_text(const PlannedStmt &stmt, const char *query) {
    std::string_view all(query ? query : "");
    if (stmt.stmt_location < 0 || static_cast<size_t>(stmt.stmt_location) > all.size())
        return std::string(all);
    std::string_view text = all.substr(static_cast<size_t>(stmt.stmt_location));
    if (stmt.stmt_len > 0) text = text.substr(0, static_cast<size_t>(stmt.stmt_len));
    return std::string(text);
}

// COPY FROM and TRUNCATE write without the executor: they wait for a write
// lock here as INSERT, UPDATE and DELETE do in the ExecutorStart hook.
void block_utility_writes(Node *parse) {
    List *relations = NIL;
    if (IsA(parse, CopyStmt)) {
        auto *copy = reinterpret_cast<CopyStmt *>(parse);
        if (copy->is_from && copy->relation) relations = list_make1(copy->relation);
    } else if (IsA(parse, TruncateStmt)) {
        relations = reinterpret_cast<TruncateStmt *>(parse)->relations;
    }
    ListCell *lc;
    foreach (lc, relations) {
        Oid relid = RangeVarGetRelid(lfirst_node(RangeVar, lc), NoLock, true);
        if (OidIsValid(relid)) ddl_lock::block_writes_to(relid);
    }
}

ddl_lock::Tables tables_of(const ddl_describe::Statement &st) {
    ddl_lock::Tables tables;
    tables.all = st.all_tables;
    for (Oid relid : st.tables) {
        const char *schema = nullptr;
        const char *name = nullptr;
        pg::call([&] {
            name = get_rel_name(relid);
            Oid nsp = get_rel_namespace(relid);
            schema = OidIsValid(nsp) ? get_namespace_name(nsp) : nullptr;
        });
        if (name && schema) tables.names.emplace_back(schema, name);
    }
    return tables;
}

// Sends the statement, with the role that runs it and its search_path, in
// this transaction's stream.
void send_statement(const PlannedStmt &stmt, const char *query, uint64_t self, uint64_t lock_id) {
    mesh::DdlStatement m;
    m.origin_node = self;
    m.lock_id = lock_id;
    m.statement = statement_text(stmt, query);
    const char *role = nullptr;
    const char *search_path = nullptr;
    m.xid = pg::call([&] {
        role = GetUserNameFromId(GetUserId(), false);
        search_path = GetConfigOption("search_path", false, false);
        return GetTopTransactionId();
    });
    m.role = role;
    m.search_path = search_path ? search_path : "";
    std::string content = mesh::seal(m, group_key::mac());
    pg::call([&] {
        (void)LogLogicalMessage(mesh::kDdlPrefix.data(), content.data(), content.size(), true);
    });
}

// Before the statement runs. True when it is replicated.
bool before(PlannedStmt *stmt, const char *query, ProcessUtilityContext context) {
    // Parts of a statement already captured whole (CREATE SCHEMA's
    // elements, ALTER TABLE's generated steps), an extension's script (its
    // CREATE EXTENSION is what replicates) and apply's own replay.
    if (context == PROCESS_UTILITY_SUBCOMMAND || creating_extension ||
        replorigin_session_origin != InvalidRepOriginId)
        return false;
    // Only ROLLBACK runs in a failed transaction, and the catalogs are out
    // of reach there.
    if (IsAbortedTransactionBlockState() || !shmem::is_node(MyDatabaseId)) return false;
    Node *parse = stmt->utilityStmt;
    if (IsA(parse, TransactionStmt) &&
        reinterpret_cast<TransactionStmt *>(parse)->kind == TRANS_STMT_PREPARE && ddl_lock::held())
        throw pg::Error(ERRCODE_FEATURE_NOT_SUPPORTED,
                        "cannot PREPARE a transaction that holds pgmesh's global DDL lock", {},
                        "Commit the DDL in an ordinary transaction.");
    pg::call([&] { block_utility_writes(parse); });

    ddl_describe::Statement st = ddl_describe::describe(*stmt, query);
    ddl::Decision decision = ddl::classify(st.command);
    std::string tag(st.command.tag);
    if (decision.action == ddl::Action::kLocal || decision.action == ddl::Action::kNever)
        return false;
    if (!settings::replicate_ddl) {
        pg::call([&] {
            ereport(LOG,
                    (errmsg("pgmesh.replicate_ddl is off: %s ran on this node only", tag.c_str()),
                     errdetail("Statement: %s", statement_text(*stmt, query).c_str())));
        });
        return false;
    }
    if (decision.action == ddl::Action::kRefuse)
        throw pg::Error(ERRCODE_FEATURE_NOT_SUPPORTED, decision.message, {}, decision.hint);
    if (!settings::permit_ddl_locking && !settings::bdr_permit_ddl_locking)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        tag + " is replicated and needs pgmesh's global DDL lock",
                        "pgmesh.permit_ddl_locking is off in this session.",
                        "Run the DDL in a transaction that first does SET LOCAL "
                        "pgmesh.permit_ddl_locking = on (bdr.permit_ddl_locking works too).");
    catalog::Nodes nodes = catalog::read_nodes();
    const catalog::Node &local = nodes.require_local();
    if (local.state != node::State::kReady)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "this node has not finished joining: DDL cannot be replicated yet", {},
                        "Wait for pgmesh.wait_for_ready().");
    mesh::Strength strength = decision.action == ddl::Action::kReplicateWriteLock
                                  ? mesh::Strength::kWrite
                                  : mesh::Strength::kDdl;
    uint64_t lock_id = ddl_lock::acquire(strength, tables_of(st), nodes);
    send_statement(*stmt, query, local.id, lock_id);
    return true;
}

// A table created on a node, here or by replay, gets the tombstone trigger.
void after(PlannedStmt *stmt) {
    Node *parse = stmt->utilityStmt;
    const RangeVar *created = nullptr;
    if (IsA(parse, CreateStmt))
        created = reinterpret_cast<CreateStmt *>(parse)->relation;
    else if (IsA(parse, CreateTableAsStmt))
        created = reinterpret_cast<CreateTableAsStmt *>(parse)->into->rel;
    // Not in an extension's script (its tables are its own), and only where
    // pgmesh's shared memory exists (preloaded) and the database is a node.
    if (!created || creating_extension || !node_admin::loaded_at_startup ||
        IsAbortedTransactionBlockState() || !shmem::is_node(MyDatabaseId))
        return;
    pg::call([&] {
        Oid relid = RangeVarGetRelid(created, NoLock, true);
        if (OidIsValid(relid)) tombstones::add_trigger(relid);
    });
}

void process_utility(PlannedStmt *stmt, const char *query, bool read_only_tree,
                     ProcessUtilityContext context, ParamListInfo params, QueryEnvironment *env,
                     DestReceiver *dest, QueryCompletion *qc) {
    bool replicated = pgmesh::pg::entry([&] { return before(stmt, query, context); });
    if (previous_process_utility)
        previous_process_utility(stmt, query, read_only_tree, context, params, env, dest, qc);
    else
        standard_ProcessUtility(stmt, query, read_only_tree, context, params, env, dest, qc);
    pgmesh::pg::entry([&] { after(stmt); });
    if (replicated) pgmesh::pg::entry([&] { ddl_describe::warn_if_keyless(*stmt); });
}

}  // namespace

void install() {
    previous_process_utility = ProcessUtility_hook;
    ProcessUtility_hook = process_utility;
}

}  // namespace pgmesh::ddl_capture
