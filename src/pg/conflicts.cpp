#include "conflicts.hpp"

#include "origins.hpp"
#include "settings.hpp"
#include "shmem.hpp"
#include "spi.hpp"
#include "tombstones.hpp"

namespace pgmesh::apply {

conflict::Version Conflicts::remote_version() const {
    return conflict::Version{position_.transaction.commit_time,
                             position_.transaction.origin_node_id};
}

conflict::Version Conflicts::version_of(Relation rel, TupleTableSlot *slot) {
    return pg::call([&] {
        bool should_free = false;
        HeapTuple tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
        return versions_.of_row(rel, tuple);
    });
}

conflict::KeyState Conflicts::key_state(bool found, TupleTableSlot *local, Relation rel,
                                        Datum key) {
    using Kind = conflict::KeyState::Kind;
    if (found) return {Kind::kRow, version_of(rel, local)};
    conflict::KeyState state{Kind::kNothing, {}};
    if (key == 0) return state;
    // The key's own tombstone and its table's (a TRUNCATE's): the newer
    // one counts.
    for (bool whole_table : {false, true}) {
        std::optional<conflict::Version> version = pg::call([&] {
            return tombstones::find(RelationGetRelid(rel),
                                    whole_table ? tombstones::whole_table_key() : key, versions_);
        });
        if (!version) continue;
        if (state.kind == Kind::kNothing || conflict::newer(*version, state.version))
            state = {Kind::kTombstone, *version};
    }
    return state;
}

bool Conflicts::written_by_another_node(Relation rel, TupleTableSlot *local) {
    // Node 0: frozen rows (or a copied row of unknown version), which no
    // change competes with.
    uint64_t node = version_of(rel, local).node_id;
    return node != 0 && node != identity_.peer_node_id;
}

void Conflicts::count(conflict::Type type) {
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

void Conflicts::record(conflict::Type type, conflict::Resolution resolution, TupleTableSlot *local,
                       TupleTableSlot *remote, int64_t local_commit_time) {
    count(type);
    if (!settings::conflict_history) return;
    Pending conflict{type, resolution, {}, {}, local_commit_time};
    pg::call([&] {
        if (const char *json = row_json(local)) conflict.local_json = json;
        if (const char *json = row_json(remote)) conflict.remote_json = json;
    });
    pending_.push_back(std::move(conflict));
}

void Conflicts::write_pending() {
    for (const Pending &conflict : pending_) insert_history_row(conflict, nullptr);
    pending_.clear();
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

void Conflicts::insert_history_row(const Pending &conflict, const char *message) {
    const RelationMap *map = position_.relation;
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
         spi::timestamptz_or_null(position_.transaction.commit_time),
         spi::lsn(position_.transaction.final_lsn),
         spi::int8(static_cast<int64_t>(position_.transaction.xid)),
         message ? spi::text(message) : spi::Param{}});
}

conflict::Resolution Conflicts::decide(ChangeState &cs, const RelationMap &map, conflict::Type type,
                                       TupleTableSlot *local, TupleTableSlot *&remote,
                                       conflict::Version missing_version) {
    conflict::Version local_version = local ? version_of(cs.rel, local) : missing_version;
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
        resolution = conflict::resolve(type, resolver, local_version, remote_version());
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
    record(type, resolution, local, remote, local_version.commit_time);
    return resolution;
}

bool Conflicts::repeats_last_failure(conflict::Type type) {
    return pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        shmem::WorkerSlot *w = shmem::worker_slot(identity_.dboid, identity_.peer_node_id, false);
        bool repeat = w && w->failed_lsn == position_.transaction.final_lsn &&
                      w->failed_type == static_cast<int>(type);
        if (w) {
            w->failed_lsn = position_.transaction.final_lsn;
            w->failed_type = static_cast<int>(type);
        }
        LWLockRelease(shmem::state().lock);
        return repeat;
    });
}

void Conflicts::record_failure(const pg::Error &error) {
    // Runs in a fresh transaction after the failed one was rolled back; it
    // records only, so it carries no origin progress.
    const auto *conflict_error = dynamic_cast<const ConflictError *>(&error);
    conflict::Type type = conflict_error ? conflict_error->type : conflict::Type::kApplyError;
    pending_.clear();  // rolled back with the transaction
    if (!repeats_last_failure(type)) count(type);
    if (!settings::conflict_history) return;
    Pending failure{type, conflict::Resolution::kError,
                    conflict_error ? conflict_error->local_json : std::string(),
                    conflict_error ? conflict_error->remote_json : std::string(), 0};
    RepOriginId origin = replorigin_session_origin;
    pg::call([] {
        replorigin_session_origin = InvalidRepOriginId;
        StartTransactionCommand();
    });
    try {
        insert_history_row(failure, error.message().c_str());
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

}  // namespace pgmesh::apply
