// Supervisor and per-database manager workers.
//
// The supervisor connects to no database. At start it launches a manager in
// every connectable database once (a manager finding no pgmesh node exits);
// afterwards it keeps a manager running in every database marked as a node in
// shared memory (create_group/join_group mark theirs at commit).
//
// The manager reads pgmesh.node every second (and when woken), keeps one
// apply worker per peer and restarts a stopped one with exponential backoff
// (1 s doubling to 60 s; reset after a worker ran for a minute).
#include <algorithm>
#include <map>
#include <set>
#include <string>

#include "catalog.hpp"
#include "ddl_lock.hpp"
#include "fault.hpp"
#include "guard.hpp"
#include "node.hpp"
#include "node_admin.hpp"
#include "relay.hpp"
#include "shmem.hpp"
#include "tombstones.hpp"
#include "workers.hpp"

namespace pgmesh::workers {

namespace {

constexpr long kSupervisorNaptimeMs = 2000;
constexpr long kManagerNaptimeMs = 1000;
constexpr int kMaxBackoffSeconds = 60;

struct Launched {
    BackgroundWorkerHandle *handle = nullptr;  // palloc'd by PostgreSQL
    TimestampTz started_at = 0;
    TimestampTz next_start = 0;
    int failures = 0;
};

BackgroundWorker worker_template(const char *function, const std::string &name, const char *type) {
    BackgroundWorker w{};
    w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    w.bgw_start_time = BgWorkerStart_RecoveryFinished;
    w.bgw_restart_time = BGW_NEVER_RESTART;
    snprintf(w.bgw_library_name, BGW_MAXLEN, "pgmesh");
    snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
    snprintf(w.bgw_name, BGW_MAXLEN, "%s", name.c_str());
    snprintf(w.bgw_type, BGW_MAXLEN, "%s", type);
    w.bgw_notify_pid = MyProcPid;
    return w;
}

// Starts (or keeps) a worker according to its backoff. Returns whether one
// is running or pending.
bool keep_running(Launched &l, BackgroundWorker &w) {
    TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
    if (l.handle) {
        pid_t pid = 0;
        BgwHandleStatus status = pg::call([&] { return GetBackgroundWorkerPid(l.handle, &pid); });
        if (status == BGWH_STARTED || status == BGWH_NOT_YET_STARTED) return true;
        // Stopped: back off unless it had been running for a while.
        bool long_lived = TimestampDifferenceExceeds(l.started_at, now, 60 * 1000);
        l.failures = long_lived ? 0 : std::min(l.failures + 1, 16);
        int delay_s = std::min(kMaxBackoffSeconds, 1 << std::min(l.failures, 6));
        l.next_start = TimestampTzPlusMilliseconds(now, delay_s * 1000L);
        pg::call([&] { pfree(l.handle); });
        l.handle = nullptr;
    }
    if (now < l.next_start) return false;
    BackgroundWorkerHandle *handle = nullptr;
    bool ok = pg::call([&] { return RegisterDynamicBackgroundWorker(&w, &handle); });
    if (!ok) {
        pg::call([&] {
            ereport(WARNING, (errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
                              errmsg("pgmesh could not start worker \"%s\"", w.bgw_name),
                              errhint("Raise max_worker_processes.")));
        });
        l.next_start = TimestampTzPlusMilliseconds(now, 5000);
        return false;
    }
    l.handle = handle;
    l.started_at = now;
    return true;
}

std::vector<std::pair<Oid, std::string>> connectable_databases() {
    std::vector<std::pair<Oid, std::string>> dbs;
    pg::call([&] {
        StartTransactionCommand();
        PushActiveSnapshot(GetTransactionSnapshot());
        Relation rel = table_open(DatabaseRelationId, AccessShareLock);
        TableScanDesc scan = table_beginscan_catalog(rel, 0, nullptr);
        HeapTuple tup;
        while ((tup = heap_getnext(scan, ForwardScanDirection)) != nullptr) {
            auto *db = reinterpret_cast<Form_pg_database>(GETSTRUCT(tup));
            if (db->datallowconn && !db->datistemplate)
                dbs.emplace_back(db->oid, NameStr(db->datname));
        }
        table_endscan(scan);
        table_close(rel, AccessShareLock);
        PopActiveSnapshot();
        CommitTransactionCommand();
    });
    return dbs;
}

void clear_manager_slot(int, Datum arg) {
    Oid dboid = DatumGetObjectId(arg);
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    if (shmem::DatabaseSlot *d = shmem::database_slot(dboid, false);
        d && d->manager_pid == MyProcPid) {
        d->manager_pid = 0;
        d->manager_proc = nullptr;
    }
    LWLockRelease(shmem::state().lock);
}

uint64_t node_requests(Oid dboid) {
    return pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_SHARED);
        shmem::DatabaseSlot *d = shmem::database_slot(dboid, false);
        uint64_t requests = d ? d->node_requests : 0;
        LWLockRelease(shmem::state().lock);
        return requests;
    });
}

// The database is not a node (as of a catalog read that started when
// node_requests was `seen`): clears is_node, unless a node was created or
// joined since, whose commit came after that read. Returns whether it
// cleared it.
bool clear_is_node(Oid dboid, uint64_t seen) {
    return pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        shmem::DatabaseSlot *d = shmem::database_slot(dboid, false);
        bool requested_since = d && d->node_requests != seen;
        if (d && !requested_since) d->is_node = false;
        LWLockRelease(shmem::state().lock);
        return !requested_since;
    });
}

}  // namespace

BackgroundWorkerHandle *start_forward_worker(uint64_t dead_node_id, const std::string &dead_name,
                                             ForwardJob job) {
    BackgroundWorker w =
        worker_template("pgmesh_forward_main", "pgmesh forward of " + dead_name, "pgmesh forward");
    w.bgw_main_arg = ObjectIdGetDatum(MyDatabaseId);
    uint64_t extra[3] = {dead_node_id, job.source_id, job.up_to};
    static_assert(sizeof extra <= BGW_EXTRALEN);
    memcpy(w.bgw_extra, extra, sizeof extra);
    BackgroundWorkerHandle *handle = nullptr;
    return pg::call([&] { return RegisterDynamicBackgroundWorker(&w, &handle); }) ? handle
                                                                                  : nullptr;
}

void register_supervisor() {
    BackgroundWorker w =
        worker_template("pgmesh_supervisor_main", "pgmesh supervisor", "pgmesh supervisor");
    w.bgw_restart_time = 5;
    w.bgw_notify_pid = 0;
    RegisterBackgroundWorker(&w);
}

void request_manager(Oid dboid) {
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    if (shmem::DatabaseSlot *d = shmem::database_slot(dboid, true)) {
        d->is_node = true;
        d->node_requests++;
    }
    PGPROC *supervisor = shmem::state().supervisor_proc;
    LWLockRelease(shmem::state().lock);
    if (supervisor) SetLatch(&supervisor->procLatch);
}

void supervisor_main() {
    pg::call([] {
        BackgroundWorkerInitializeConnection(nullptr, nullptr, 0);
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        shmem::state().supervisor_proc = MyProc;
        LWLockRelease(shmem::state().lock);
    });
    std::map<Oid, Launched> managers;
    std::set<Oid> probed;  // databases whose first manager we started
    for (;;) {
        for (const auto &[dboid, name] : connectable_databases()) {
            bool is_node = pg::call([&] {
                LWLockAcquire(shmem::state().lock, LW_SHARED);
                shmem::DatabaseSlot *d = shmem::database_slot(dboid, false);
                bool result = d && d->is_node;
                LWLockRelease(shmem::state().lock);
                return result;
            });
            Launched &l = managers[dboid];
            if (!is_node && probed.count(dboid)) continue;
            if (!is_node && l.handle) continue;  // the probe is still running
            probed.insert(dboid);
            BackgroundWorker w =
                worker_template("pgmesh_manager_main", "pgmesh manager " + name, "pgmesh manager");
            w.bgw_main_arg = ObjectIdGetDatum(dboid);
            keep_running(l, w);
        }
        pg::wait_latch(kSupervisorNaptimeMs);
    }
}

void manager_main(Oid dboid) {
    pg::call([&] {
        BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
        before_shmem_exit(clear_manager_slot, ObjectIdGetDatum(dboid));
    });
    std::map<uint64_t, Launched> appliers;
    relay::Keeper relay_keeper;
    for (;;) {
        pg::call([] { fault::point("manager_round"); });
        uint64_t requests = node_requests(dboid);
        pg::call([] {
            SetCurrentStatementStartTimestamp();
            StartTransactionCommand();
        });
        bool installed = catalog::extension_installed();
        catalog::Nodes nodes;
        if (installed) nodes = catalog::read_nodes();
        pg::call([] { CommitTransactionCommand(); });
        if (!installed || !nodes.local_id) {
            // Not (or no longer) a pgmesh node: nothing to manage. A node
            // made while we read the catalog is read again.
            if (!clear_is_node(dboid, requests)) continue;
            for (auto &[peer, l] : appliers)
                if (l.handle) pg::call([&] { TerminateBackgroundWorker(l.handle); });
            return;
        }
        // Before writers see a node: a write lock granted before a restart
        // still holds them back.
        ddl_lock::restore_after_start();
        pg::call([&] {
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            if (shmem::DatabaseSlot *d = shmem::database_slot(dboid, true)) {
                d->is_node = true;
                d->manager_pid = MyProcPid;
                d->manager_proc = MyProc;
            }
            LWLockRelease(shmem::state().lock);
        });
        // Before any apply worker starts: what they apply from now on is
        // in the relay slot (relay.hpp).
        if (nodes.require_local().state == node::State::kReady) relay_keeper.round(nodes);
        for (const catalog::Node &peer : nodes.all) {
            if (peer.is_local) continue;
            Launched &l = appliers[peer.id];
            // A joining node is not streamed from until its copy is done and
            // it has its slots for us.
            if (peer.state != node::State::kReady ||
                nodes.require_local().state == node::State::kParted) {
                if (l.handle) pg::call([&] { TerminateBackgroundWorker(l.handle); });
                continue;
            }
            bool retry_now = pg::call([&] {
                LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
                shmem::WorkerSlot *s = shmem::worker_slot(dboid, peer.id, false);
                bool r = s && s->retry_now;
                if (r) s->retry_now = false;
                LWLockRelease(shmem::state().lock);
                return r;
            });
            if (retry_now) {
                // The operator acted (e.g. skip_transaction): no backoff.
                l.next_start = 0;
                l.failures = 0;
            }
            BackgroundWorker w = worker_template("pgmesh_apply_main",
                                                 "pgmesh apply from " + peer.name, "pgmesh apply");
            w.bgw_main_arg = ObjectIdGetDatum(dboid);
            memcpy(w.bgw_extra, &peer.id, sizeof peer.id);
            keep_running(l, w);
        }
        node_admin::drop_what_parted_nodes_left(nodes);
        // The global lock: grants, releases, write blocks (ddl_lock.hpp).
        ddl_lock::manager_round(*nodes.local_id, nodes);
        if (nodes.require_local().state == node::State::kReady)
            tombstones::manager_round(*nodes.local_id);
        pg::wait_latch(ddl_lock::manager_naptime(kManagerNaptimeMs));
    }
}

}  // namespace pgmesh::workers
