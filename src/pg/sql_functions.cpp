// SQL-callable functions of the pgmesh schema: thin C shims that read the
// arguments and call C++ through pg::entry.
#include <algorithm>
#include <string>

#include "catalog.hpp"
#include "conflict_admin.hpp"
#include "guard.hpp"
#include "node_admin.hpp"
#include "remote.hpp"
#include "shmem.hpp"
#include "settings.hpp"
#include "tombstones.hpp"
#include "versions.hpp"

namespace {

std::string text_arg(FunctionCallInfo fcinfo, int n, const char *name) {
    if (PG_ARGISNULL(n))
        throw pgmesh::pg::Error(ERRCODE_NULL_VALUE_NOT_ALLOWED,
                                std::string(name) + " must not be NULL");
    return pgmesh::pg::call(
        [&] { return static_cast<const char *>(text_to_cstring(PG_GETARG_TEXT_PP(n))); });
}

int timeout_arg(FunctionCallInfo fcinfo) {
    int timeout = PG_ARGISNULL(0) ? 60 : PG_GETARG_INT32(0);
    if (timeout < 0)
        throw pgmesh::pg::Error(ERRCODE_INVALID_PARAMETER_VALUE, "timeout must not be negative");
    return timeout;
}

}  // namespace

extern "C" {

PG_FUNCTION_INFO_V1(pgmesh_create_group);
PG_FUNCTION_INFO_V1(pgmesh_join_group);
PG_FUNCTION_INFO_V1(pgmesh_wait_for_ready);
PG_FUNCTION_INFO_V1(pgmesh_wait_for_sync);
PG_FUNCTION_INFO_V1(pgmesh_hold_apply);
PG_FUNCTION_INFO_V1(pgmesh_part_node);
PG_FUNCTION_INFO_V1(pgmesh_forward_missing);
PG_FUNCTION_INFO_V1(pgmesh_forward_progress);
PG_FUNCTION_INFO_V1(pgmesh_pause_apply);
PG_FUNCTION_INFO_V1(pgmesh_resume_apply);
PG_FUNCTION_INFO_V1(pgmesh_worker_status);
PG_FUNCTION_INFO_V1(pgmesh_mask_dsn);
PG_FUNCTION_INFO_V1(pgmesh_set_conflict_resolver);
PG_FUNCTION_INFO_V1(pgmesh_skip_transaction);
PG_FUNCTION_INFO_V1(pgmesh_global_lock_info);
PG_FUNCTION_INFO_V1(pgmesh_node_changed);
PG_FUNCTION_INFO_V1(pgmesh_record_tombstone);
PG_FUNCTION_INFO_V1(pgmesh_versions_for_copy);

// What a joining node copies besides the data (versions.hpp).
Datum pgmesh_versions_for_copy(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::catalog::Nodes nodes = pgmesh::catalog::read_nodes();
        pgmesh::versions::Reader reader(nodes.require_local().id, nodes.copied_until);
        pgmesh::pg::call([&] {
            InitMaterializedSRF(fcinfo, 0);
            pgmesh::versions::put_versions_for_copy(
                reinterpret_cast<ReturnSetInfo *>(fcinfo->resultinfo), reader);
        });
        return (Datum)0;
    });
}

// The triggers pgmesh_tombstone (AFTER DELETE FOR EACH ROW) and
// pgmesh_truncate (AFTER TRUNCATE) of every replicated table
// (tombstones.hpp): the deleted key's tombstone, or the table's, in the
// deleting transaction.
Datum pgmesh_record_tombstone(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        auto *trigger = reinterpret_cast<TriggerData *>(fcinfo->context);
        bool row_delete = CALLED_AS_TRIGGER(fcinfo) && TRIGGER_FIRED_AFTER(trigger->tg_event) &&
                          TRIGGER_FIRED_FOR_ROW(trigger->tg_event) &&
                          TRIGGER_FIRED_BY_DELETE(trigger->tg_event);
        bool truncate = CALLED_AS_TRIGGER(fcinfo) && TRIGGER_FIRED_AFTER(trigger->tg_event) &&
                        TRIGGER_FIRED_BY_TRUNCATE(trigger->tg_event);
        if (!row_delete && !truncate)
            throw pgmesh::pg::Error(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                                    "pgmesh.record_tombstone() must be called as an AFTER DELETE "
                                    "row trigger or an AFTER TRUNCATE trigger");
        pgmesh::pg::call([&] {
            Relation rel = trigger->tg_relation;
            Datum key = 0;
            if (truncate && pgmesh::settings::tombstones) {
                key = pgmesh::tombstones::whole_table_key();
            } else if (row_delete) {
                TupleDesc desc = RelationGetDescr(rel);
                auto *values = static_cast<Datum *>(palloc(desc->natts * sizeof(Datum)));
                auto *isnull = static_cast<bool *>(palloc(desc->natts * sizeof(bool)));
                heap_deform_tuple(trigger->tg_trigtuple, desc, values, isnull);
                key = pgmesh::tombstones::key_of(rel, values, isnull);
            }
            if (key != 0) pgmesh::tombstones::record(RelationGetRelid(rel), key);
        });
        return PointerGetDatum(nullptr);
    });
}

// Row trigger on pgmesh.node (ENABLE ALWAYS, so apply fires it too).
Datum pgmesh_node_changed(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        if (!CALLED_AS_TRIGGER(fcinfo))
            throw pgmesh::pg::Error(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
                                    "pgmesh.node_changed() must be called as a trigger");
        pgmesh::node_admin::wake_manager_at_commit();
        return PointerGetDatum(nullptr);
    });
}

Datum pgmesh_set_conflict_resolver(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        if (PG_ARGISNULL(0))
            throw pgmesh::pg::Error(ERRCODE_NULL_VALUE_NOT_ALLOWED, "relation must not be NULL");
        pgmesh::conflict_admin::set_conflict_resolver(PG_GETARG_OID(0),
                                                      text_arg(fcinfo, 1, "conflict_type"),
                                                      text_arg(fcinfo, 2, "resolver"));
        return (Datum)0;
    });
}

Datum pgmesh_skip_transaction(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        if (PG_ARGISNULL(1))
            throw pgmesh::pg::Error(ERRCODE_NULL_VALUE_NOT_ALLOWED,
                                    "remote_commit_lsn must not be NULL");
        pgmesh::conflict_admin::skip_transaction(text_arg(fcinfo, 0, "peer_node_name"),
                                                 PG_GETARG_LSN(1));
        return (Datum)0;
    });
}

Datum pgmesh_create_group(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        auto id = pgmesh::node_admin::create_group(text_arg(fcinfo, 0, "node_name"),
                                                   text_arg(fcinfo, 1, "node_dsn"));
        return Int64GetDatum(static_cast<int64>(id));
    });
}

Datum pgmesh_join_group(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        auto id = pgmesh::node_admin::join_group(text_arg(fcinfo, 0, "node_name"),
                                                 text_arg(fcinfo, 1, "node_dsn"),
                                                 text_arg(fcinfo, 2, "join_using_dsn"));
        return Int64GetDatum(static_cast<int64>(id));
    });
}

Datum pgmesh_wait_for_ready(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry(
        [&] { return BoolGetDatum(pgmesh::node_admin::wait_for_ready(timeout_arg(fcinfo))); });
}

Datum pgmesh_wait_for_sync(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry(
        [&] { return BoolGetDatum(pgmesh::node_admin::wait_for_sync(timeout_arg(fcinfo))); });
}

Datum pgmesh_pause_apply(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::node_admin::set_apply_paused(true);
        return (Datum)0;
    });
}

Datum pgmesh_resume_apply(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::node_admin::set_apply_paused(false);
        return (Datum)0;
    });
}

Datum pgmesh_forward_missing(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::node_admin::forward_missing(static_cast<uint64_t>(PG_GETARG_INT64(0)),
                                            static_cast<uint64_t>(PG_GETARG_INT64(1)),
                                            PG_GETARG_LSN(2));
        return (Datum)0;
    });
}

Datum pgmesh_forward_progress(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::node_admin::ForwardProgress p =
            pgmesh::node_admin::forward_progress(static_cast<uint64_t>(PG_GETARG_INT64(0)));
        return pgmesh::pg::call([&] {
            TupleDesc desc = nullptr;
            if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE)
                elog(ERROR, "return type must be a row type");
            Datum values[3] = {LSNGetDatum(p.applied), BoolGetDatum(p.running),
                               CStringGetTextDatum(p.error.c_str())};
            bool nulls[3] = {false, false, p.error.empty()};
            return HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(desc), values, nulls));
        });
    });
}

Datum pgmesh_part_node(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::node_admin::part_node(text_arg(fcinfo, 0, "node_name"));
        return (Datum)0;
    });
}

Datum pgmesh_hold_apply(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::node_admin::hold_apply(timeout_arg(fcinfo));
        return (Datum)0;
    });
}

Datum pgmesh_mask_dsn(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        std::string masked = pgmesh::remote::mask_dsn(text_arg(fcinfo, 0, "dsn"));
        return pgmesh::pg::call([&] { return PointerGetDatum(cstring_to_text(masked.c_str())); });
    });
}

// Rows of shared memory for this database; plain C: no C++ objects here.
Datum pgmesh_worker_status(PG_FUNCTION_ARGS) {
    using pgmesh::shmem::WorkerSlot;
    InitMaterializedSRF(fcinfo, 0);
    ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
    LWLockAcquire(pgmesh::shmem::state().lock, LW_SHARED);
    for (int i = 0; i < pgmesh::shmem::state().nworkers; i++) {
        WorkerSlot *w = &pgmesh::shmem::workers()[i];
        if (!w->in_use || w->dboid != MyDatabaseId) continue;
        Datum values[13];
        bool nulls[13] = {false};
        values[0] = Int64GetDatum(static_cast<int64>(w->peer_node_id));
        values[1] = BoolGetDatum(w->connected && w->pid != 0);
        values[2] = Int32GetDatum(w->pid);
        nulls[2] = w->pid == 0;
        values[3] = LSNGetDatum(w->received_lsn);
        values[4] = LSNGetDatum(w->applied_lsn);
        values[5] = TimestampTzGetDatum(w->last_commit_time);
        nulls[5] = w->last_commit_time == 0;
        values[6] = TimestampTzGetDatum(w->last_message_time);
        nulls[6] = w->last_message_time == 0;
        values[7] = Int64GetDatum(static_cast<int64>(w->applied_transactions));
        uint64_t total = 0;
        StringInfoData by_type;
        initStringInfo(&by_type);
        appendStringInfoChar(&by_type, '{');
        for (int t = 0; t < pgmesh::conflict::kTypeCount; t++) {
            total += w->conflicts[t];
            if (w->conflicts[t] == 0) continue;
            std::string_view type_name =
                pgmesh::conflict::name(static_cast<pgmesh::conflict::Type>(t));
            appendStringInfo(&by_type, "%s\"%.*s\": " UINT64_FORMAT, by_type.len > 1 ? ", " : "",
                             static_cast<int>(type_name.size()), type_name.data(),
                             static_cast<uint64>(w->conflicts[t]));
        }
        appendStringInfoChar(&by_type, '}');
        values[8] = Int64GetDatum(static_cast<int64>(total));
        values[9] = PointerGetDatum(cstring_to_text(by_type.data));
        values[10] = PointerGetDatum(cstring_to_text(w->last_error));
        nulls[10] = w->last_error[0] == '\0';
        values[11] = BoolGetDatum(w->waiting_for_lock);
        values[12] = TimestampTzGetDatum(w->caught_up_to);
        nulls[12] = w->caught_up_to == 0;
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    LWLockRelease(pgmesh::shmem::state().lock);
    return (Datum)0;
}

// The global lock as this node sees it (pgmesh.global_lock): at most one row.
Datum pgmesh_global_lock_info(PG_FUNCTION_ARGS) {
    InitMaterializedSRF(fcinfo, 0);
    ReturnSetInfo *rsinfo = (ReturnSetInfo *)fcinfo->resultinfo;
    LWLockAcquire(pgmesh::shmem::state().lock, LW_SHARED);
    pgmesh::shmem::DatabaseSlot *d = pgmesh::shmem::database_slot(MyDatabaseId, false);
    if (d && d->lock.state.phase != pgmesh::glock::Phase::kFree) {
        const pgmesh::glock::State &st = d->lock.state;
        Datum values[7];
        bool nulls[7] = {false};
        values[0] = Int64GetDatum(static_cast<int64>(st.current.holder));
        values[1] = Int32GetDatum(st.current.holder_pid);
        std::string_view strength = pgmesh::mesh::name(st.current.strength);
        values[2] = PointerGetDatum(cstring_to_text_with_len(strength.data(), strength.size()));
        values[3] = PointerGetDatum(cstring_to_text(pgmesh::glock::name(st.phase)));
        // Who has answered: grants for a local request, grants seen for a
        // remote write lock. The view turns these into who has not.
        const pgmesh::glock::NodeSet &answered =
            st.phase == pgmesh::glock::Phase::kGranted ? st.seen_grants : st.granted;
        Datum ids[pgmesh::glock::kMaxNodes];
        for (int i = 0; i < answered.count; i++)
            ids[i] = Int64GetDatum(static_cast<int64>(answered.ids[i]));
        values[4] = PointerGetDatum(
            construct_array(ids, answered.count, INT8OID, 8, true, TYPALIGN_DOUBLE));
        values[5] = TimestampTzGetDatum(st.since);
        values[6] = Int64GetDatum(static_cast<int64>(st.current.lock_id));
        tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
    }
    LWLockRelease(pgmesh::shmem::state().lock);
    return (Datum)0;
}

}  // extern "C"
