// Module entry: _PG_init (settings, shared memory, supervisor, hooks) and the
// C entry points of the background workers.
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
}

namespace pgmesh::settings {
bool conflict_history = true;
}

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
    MarkGUCPrefixReserved("pgmesh");
    pgmesh::hooks::install();
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
