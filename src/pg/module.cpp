// Module entry: _PG_init (settings, shared memory, supervisor, hooks) and the
// C entry points of the background workers.
#include "ddl_capture.hpp"
#include "fault.hpp"
#include "guard.hpp"
#include "hooks.hpp"
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
PGDLLEXPORT void pgmesh_forward_main(Datum arg);
}

namespace pgmesh::settings {
bool conflict_history = true;
bool permit_ddl_locking = false;
bool bdr_permit_ddl_locking = false;
bool replicate_ddl = true;
int ddl_lock_timeout = 60000;
bool tombstones = true;
int max_clock_skew = 60000;
}  // namespace pgmesh::settings

void _PG_init(void) {
    DefineCustomBoolVariable(
        "pgmesh.conflict_history", "Records every replication conflict in pgmesh.conflict_history.",
        "Counters in pgmesh.status are kept either way.", &pgmesh::settings::conflict_history, true,
        PGC_SIGHUP, 0, nullptr, nullptr, nullptr);
    DefineCustomStringVariable("pgmesh.fault_points",
                               "Arms named fault points (for tests; see src/pg/fault.hpp).",
                               "A comma-separated list of name or name=action (hold, error, "
                               "sleep:<ms>); empty arms none.",
                               &pgmesh::fault::points, "", PGC_SUSET, GUC_NOT_IN_SAMPLE,
                               pgmesh::fault::check_points, nullptr, nullptr);
    DefineCustomBoolVariable(
        "pgmesh.permit_ddl_locking",
        "Lets this session take the global DDL lock for replicated DDL.",
        "Replicated DDL without it fails; set it with SET LOCAL in the migration's transaction.",
        &pgmesh::settings::permit_ddl_locking, false, PGC_USERSET, 0, nullptr, nullptr, nullptr);
    // Migration hooks written for BDR (SHOW / SET LOCAL bdr.permit_ddl_locking)
    // work unchanged.
    DefineCustomBoolVariable("bdr.permit_ddl_locking",
                             "Alias of pgmesh.permit_ddl_locking, for migration hooks written for "
                             "BDR.",
                             nullptr, &pgmesh::settings::bdr_permit_ddl_locking, false, PGC_USERSET,
                             0, nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("pgmesh.replicate_ddl", "Replicates DDL run in this session.",
                             "Off (superusers only) runs DDL on this node only, and logs it.",
                             &pgmesh::settings::replicate_ddl, true, PGC_SUSET, 0, nullptr, nullptr,
                             nullptr);
    DefineCustomIntVariable("pgmesh.ddl_lock_timeout",
                            "How long taking the global DDL lock waits for every node.", nullptr,
                            &pgmesh::settings::ddl_lock_timeout, 60000, 1, INT_MAX, PGC_USERSET,
                            GUC_UNIT_MS, nullptr, nullptr, nullptr);
    DefineCustomBoolVariable("pgmesh.tombstones",
                             "Deletes leave tombstones, so that nodes converge in any order.",
                             "Off only to measure what tombstones cost: nodes may then diverge.",
                             &pgmesh::settings::tombstones, true, PGC_SIGHUP, GUC_NOT_IN_SAMPLE,
                             nullptr, nullptr, nullptr);
    DefineCustomIntVariable("pgmesh.max_clock_skew",
                            "How far apart the clocks of the nodes may be.",
                            "Tombstones are collected this much later than every node has "
                            "applied everything older.",
                            &pgmesh::settings::max_clock_skew, 60000, 0, INT_MAX, PGC_SIGHUP,
                            GUC_UNIT_MS, nullptr, nullptr, nullptr);
    MarkGUCPrefixReserved("pgmesh");
    pgmesh::hooks::install();
    pgmesh::ddl_capture::install();
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

static void pgmesh_forward_exit(int, Datum arg) {
    LWLockAcquire(pgmesh::shmem::state().lock, LW_EXCLUSIVE);
    if (pgmesh::shmem::DatabaseSlot *d = pgmesh::shmem::database_slot(DatumGetObjectId(arg), false))
        d->forward_running = false;
    LWLockRelease(pgmesh::shmem::state().lock);
}

void pgmesh_forward_main(Datum arg) {
    // First of all: however it ends, pgmesh.forward_progress must see it.
    before_shmem_exit(pgmesh_forward_exit, arg);
    pqsignal(SIGTERM, die);
    pqsignal(SIGHUP, SignalHandlerForConfigReload);
    BackgroundWorkerUnblockSignals();
    uint64_t extra[3] = {};
    memcpy(extra, MyBgworkerEntry->bgw_extra, sizeof extra);
    pgmesh::pg::entry([&] {
        pgmesh::workers::forward_main(DatumGetObjectId(arg), extra[0],
                                      pgmesh::workers::ForwardJob{extra[1], extra[2]});
    });
}
