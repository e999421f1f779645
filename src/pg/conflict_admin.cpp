#include "conflict_admin.hpp"

#include "catalog.hpp"
#include "conflict.hpp"
#include "guard.hpp"
#include "replicated.hpp"
#include "shmem.hpp"
#include "spi.hpp"
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

namespace {

struct TargetTable {
    const char *schema;
    const char *name;
    Oid rowtype;
    Oid owner;
    bool replicated;
    bool owned;  // by the caller
};

TargetTable target_table(Oid relation) {
    return pg::call([&] {
        // A missing relation (OID 0, or dropped meanwhile) is a user error,
        // not the internal one relation_open would raise.
        Relation rel = try_relation_open(relation, AccessShareLock);
        if (!rel)
            ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
                            errmsg("relation with OID %u does not exist", relation)));
        if (rel->rd_rel->relkind != RELKIND_RELATION)
            ereport(ERROR, (errcode(ERRCODE_WRONG_OBJECT_TYPE),
                            errmsg("\"%s\" is not a table", RelationGetRelationName(rel))));
        TargetTable t{};
        t.schema = get_namespace_name(RelationGetNamespace(rel));
        t.name = pstrdup(RelationGetRelationName(rel));
        t.rowtype = rel->rd_rel->reltype;
        t.owner = rel->rd_rel->relowner;
        t.replicated = replicated::is_replicated(rel);
        t.owned = compat::owns_relation(relation, GetUserId());
        relation_close(rel, AccessShareLock);
        return t;
    });
}

// The function a resolver text names ('f(text, anyelement, anyelement)'),
// looked up as the caller would (their search_path); InvalidOid if none.
Oid lookup_function(const std::string &signature) {
    return pg::call([&] {
        LOCAL_FCINFO(fcinfo, 1);
        InitFunctionCallInfoData(*fcinfo, nullptr, 1, InvalidOid, nullptr, nullptr);
        fcinfo->args[0].value = CStringGetTextDatum(signature.c_str());
        fcinfo->args[0].isnull = false;
        Datum oid = to_regprocedure(fcinfo);
        return fcinfo->isnull ? InvalidOid : DatumGetObjectId(oid);
    });
}

std::string qualified_function_name(Oid function) {
    return pg::call(
        [&] { return static_cast<const char *>(format_procedure_qualified(function)); });
}

std::string role_name(Oid role) {
    return pg::call([&] { return static_cast<const char *>(GetUserNameFromId(role, false)); });
}

}  // namespace

void set_conflict_resolver(Oid relation, const std::string &conflict_type,
                           const std::string &resolver) {
    auto type = conflict::parse_type(conflict_type);
    if (!type)
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE,
                        "unknown conflict type \"" + conflict_type + "\"", {},
                        "Conflict types are: " + all_type_names() + ".");
    TargetTable table = target_table(relation);
    std::string table_text = std::string(table.schema) + "." + table.name;
    if (!table.replicated)
        throw pg::Error(ERRCODE_FEATURE_NOT_SUPPORTED,
                        "pgmesh does not replicate table \"" + table_text + "\"",
                        "System catalogs, pgmesh's own node-local tables, and temporary and "
                        "unlogged tables never replicate, so they have no conflicts.",
                        "Give an ordinary table that replicates.");
    if (!table.owned)
        throw pg::Error(ERRCODE_INSUFFICIENT_PRIVILEGE, "must be owner of table " + table_text, {},
                        "Only the table's owner chooses how its conflicts are resolved.");
    auto builtin = conflict::parse_resolver(resolver);
    Oid function = InvalidOid;
    if (!builtin && resolver.find('(') != std::string::npos) function = lookup_function(resolver);
    if (!builtin && !OidIsValid(function))
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE, "unknown resolver \"" + resolver + "\"",
                        {},
                        "Use last_update_wins, first_update_wins, apply_remote, keep_local, "
                        "error, or a function signature such as 'my_resolver(text, anyelement, "
                        "anyelement)'.");
    std::string stored = builtin ? resolver : qualified_function_name(function);
    if (!builtin) {
        check_user_function(function, table.rowtype, resolver);
        // The function runs as the table's owner on every node (see
        // docs/security.md): both the caller and the owner must be allowed
        // to run it.
        for (Oid role : {pg::call([] { return GetUserId(); }), table.owner}) {
            AclResult acl =
                pg::call([&] { return compat::function_aclcheck(function, role, ACL_EXECUTE); });
            if (acl != ACLCHECK_OK)
                throw pg::Error(
                    ERRCODE_INSUFFICIENT_PRIVILEGE,
                    "role \"" + role_name(role) + "\" may not execute function " + stored,
                    "Resolver functions run as the owner of the table.",
                    "GRANT EXECUTE ON FUNCTION " + stored + " TO the table's owner.");
        }
    }
    conflict::Resolver chosen = builtin ? *builtin : conflict::Resolver::kUserFunction;
    if (!conflict::allowed(*type, chosen))
        throw pg::Error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "resolver " + std::string(conflict::name(chosen)) + " cannot resolve " + conflict_type,
            {},
            "update_missing and delete_missing take apply_remote, keep_local or "
            "error; multiple_unique_conflicts and apply_error take only error.");
    spi::query(
        "INSERT INTO pgmesh.conflict_resolver (table_schema, table_name, conflict_type, resolver) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (table_schema, table_name, conflict_type) "
        "DO UPDATE SET resolver = excluded.resolver",
        {spi::text(table.schema), spi::text(table.name), spi::text(conflict_type),
         spi::text(stored)});
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
