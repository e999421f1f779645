#include "conflict_admin.hpp"

#include "catalog.hpp"
#include "conflict.hpp"
#include "guard.hpp"
#include "remote.hpp"
#include "shmem.hpp"
#include "walstream.hpp"
#include "xact_end.hpp"

namespace pgmesh::conflict_admin {

namespace {

// Apply workers re-read resolvers when the version moves; it moves only once
// the new settings are visible.
void bump_resolvers_version(bool committed) {
    if (!committed) return;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, true)) d->resolvers_version++;
    LWLockRelease(shmem::state().lock);
}

std::string all_type_names() {
    std::string names;
    for (int t = 0; t < conflict::kTypeCount; t++)
        names += (t ? ", " : "") + std::string(conflict::name(static_cast<conflict::Type>(t)));
    return names;
}

// A user resolver is (conflict_type text, local <row>, remote <row>) returning
// <row>, where <row> is the table's row type or anyelement.
void check_user_function(Oid function, Oid rowtype, const std::string &resolver) {
    bool ok = pg::call([&] {
        HeapTuple tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(function));
        if (!HeapTupleIsValid(tuple)) return false;
        auto *proc = reinterpret_cast<Form_pg_proc>(GETSTRUCT(tuple));
        auto row_like = [&](Oid t) { return t == rowtype || t == ANYELEMENTOID; };
        bool fits = proc->pronargs == 3 && proc->proargtypes.values[0] == TEXTOID &&
                    row_like(proc->proargtypes.values[1]) &&
                    row_like(proc->proargtypes.values[2]) && row_like(proc->prorettype) &&
                    !proc->proretset;
        ReleaseSysCache(tuple);
        return fits;
    });
    if (!ok)
        throw pg::Error(ERRCODE_INVALID_FUNCTION_DEFINITION,
                        "function " + resolver + " cannot resolve conflicts", {},
                        "A resolver function takes (conflict_type text, local_row, remote_row) "
                        "of the table's row type or anyelement and returns such a row, or NULL "
                        "to keep the local row.");
}

}  // namespace

void set_conflict_resolver(Oid relation, const std::string &conflict_type,
                           const std::string &resolver) {
    auto type = conflict::parse_type(conflict_type);
    if (!type)
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE,
                        "unknown conflict type \"" + conflict_type + "\"", {},
                        "Conflict types are: " + all_type_names() + ".");
    struct TableName {
        const char *schema;
        const char *name;
        Oid rowtype;
        Oid function;
        const char *function_text;
    };
    TableName table = pg::call([&] {
        TableName t{};
        Relation rel = relation_open(relation, AccessShareLock);
        if (rel->rd_rel->relkind != RELKIND_RELATION)
            ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                            errmsg("\"%s\" is not a table", RelationGetRelationName(rel))));
        t.schema = get_namespace_name(RelationGetNamespace(rel));
        t.name = pstrdup(RelationGetRelationName(rel));
        t.rowtype = rel->rd_rel->reltype;
        relation_close(rel, AccessShareLock);
        if (!conflict::parse_resolver(resolver) && resolver.find('(') != std::string::npos) {
            // to_regprocedure: an unknown or malformed name is NULL, not an error.
            Oid argtypes[1] = {TEXTOID};
            Datum args[1] = {CStringGetTextDatum(resolver.c_str())};
            SPI_connect();
            SPI_execute_with_args("SELECT to_regprocedure($1)::oid", 1, argtypes, args, nullptr,
                                  true, 1);
            bool isnull = true;
            Datum oid = SPI_processed == 1 ? SPI_getbinval(SPI_tuptable->vals[0],
                                                           SPI_tuptable->tupdesc, 1, &isnull)
                                           : (Datum)0;
            SPI_finish();
            t.function = isnull ? InvalidOid : DatumGetObjectId(oid);
            if (OidIsValid(t.function)) t.function_text = format_procedure_qualified(t.function);
        }
        return t;
    });
    auto builtin = conflict::parse_resolver(resolver);
    if (!builtin && !OidIsValid(table.function))
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE, "unknown resolver \"" + resolver + "\"",
                        {},
                        "Use last_update_wins, first_update_wins, apply_remote, keep_local, "
                        "error, or a function signature such as 'my_resolver(text, anyelement, "
                        "anyelement)'.");
    if (!builtin) check_user_function(table.function, table.rowtype, resolver);
    conflict::Resolver chosen = builtin ? *builtin : conflict::Resolver::kUserFunction;
    if (!conflict::allowed(*type, chosen))
        throw pg::Error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "resolver " + std::string(conflict::name(chosen)) + " cannot resolve " + conflict_type,
            {},
            "update_missing and delete_missing take apply_remote, keep_local or "
            "error; multiple_unique_conflicts and apply_error take only error.");
    std::string stored = builtin ? resolver : table.function_text;
    std::string sql =
        "INSERT INTO pgmesh.conflict_resolver (table_schema, table_name, conflict_type, "
        "resolver) VALUES (" +
        remote::quote_literal(table.schema) + ", " + remote::quote_literal(table.name) + ", " +
        remote::quote_literal(conflict_type) + ", " + remote::quote_literal(stored) +
        ") ON CONFLICT (table_schema, table_name, conflict_type) DO UPDATE SET resolver = "
        "excluded.resolver";
    pg::call([&] {
        SPI_connect();
        SPI_execute(sql.c_str(), false, 0);
        SPI_finish();
    });
    xact_end::at_end(bump_resolvers_version);
}

void skip_transaction(const std::string &peer_node_name, uint64_t remote_commit_lsn) {
    catalog::Nodes nodes = catalog::read_nodes();
    const catalog::Node *peer = nullptr;
    for (const catalog::Node &n : nodes.all)
        if (n.name == peer_node_name && !n.is_local) peer = &n;
    if (!peer)
        throw pg::Error(ERRCODE_UNDEFINED_OBJECT, "no peer node named \"" + peer_node_name + "\"",
                        {}, "See SELECT node_name FROM pgmesh.nodes.");
    if (remote_commit_lsn == 0)
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE, "remote_commit_lsn must not be 0/0", {},
                        "Take the commit LSN from last_error in pgmesh.status.");
    uint64_t peer_id = peer->id;
    pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        shmem::WorkerSlot *w = shmem::worker_slot(MyDatabaseId, peer_id, true);
        if (w) {
            w->skip_lsn = remote_commit_lsn;
            w->retry_now = true;  // no need to wait out the backoff
        }
        LWLockRelease(shmem::state().lock);
        shmem::wake_database(MyDatabaseId);
    });
}

}  // namespace pgmesh::conflict_admin
