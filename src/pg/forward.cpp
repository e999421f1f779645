// pgmesh.forward_missing and pgmesh.forward_progress: run by part_node
// (part.cpp) on a survivor that got fewer of a dead node's transactions than
// another survivor, the source. forward_missing starts a forwarding worker
// (apply_worker.cpp), which applies the missing transactions from the
// source's relay slot (relay.hpp) as the dead node's; part_node polls
// forward_progress until it is done. One forwarding worker at a time per
// database. Each is applied once: the worker starts after our
// origin's position for the dead node and moves it with every commit, so a
// forwarding cut off midway (the source died) goes on where it stopped when
// run again.
#include <string>

#include "catalog.hpp"
#include "guard.hpp"
#include "node.hpp"
#include "node_admin.hpp"
#include "shmem.hpp"
#include "walstream.hpp"
#include "workers.hpp"

namespace pgmesh::node_admin {

namespace {

// Our origin's position for `node`: its commit LSN applied up to.
uint64_t applied_from(uint64_t node) {
    return pg::call([&] {
        RepOriginId origin = replorigin_by_name(node::origin_name(node).c_str(), true);
        return origin == InvalidRepOriginId ? XLogRecPtr{0}
                                            : replorigin_get_progress(origin, false);
    });
}

const catalog::Node &peer_named(const catalog::Nodes &nodes, uint64_t id, const char *role) {
    const catalog::Node *n = nodes.find(id);
    if (!n || n->is_local)
        throw pg::Error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            std::string(role) + " " + std::to_string(id) + " is not a peer of this node");
    return *n;
}

void set_forward_running(bool running) {
    pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false))
            d->forward_running = running;
        LWLockRelease(shmem::state().lock);
    });
}

}  // namespace

void forward_missing(uint64_t dead_id, uint64_t source_id, uint64_t up_to) {
    check_server_setup();
    catalog::Nodes nodes = catalog::read_nodes();
    if (nodes.require_local().state != node::State::kReady)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "this node is not a ready member of the group");
    const catalog::Node &dead = peer_named(nodes, dead_id, "dead node");
    const catalog::Node &source = peer_named(nodes, source_id, "source node");
    if (dead.state == node::State::kParted)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + dead.name + "\" has already parted");
    if (source.state != node::State::kReady || source.id == dead.id)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + source.name + "\" cannot forward node \"" + dead.name +
                            "\"'s transactions");
    if (applied_from(dead_id) >= up_to) return;
    bool already = pg::call([] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, true);
        bool running = !d || d->forward_running;
        if (d && !running) {
            d->forward_running = true;
            d->forward_error[0] = '\0';
        }
        LWLockRelease(shmem::state().lock);
        return running;
    });
    if (already)
        throw pg::Error(ERRCODE_LOCK_NOT_AVAILABLE,
                        "a forwarding worker already runs in this database", {},
                        "Wait until pgmesh.forward_progress() says it stopped.");
    BackgroundWorkerHandle *handle =
        workers::start_forward_worker(dead_id, dead.name, workers::ForwardJob{source_id, up_to});
    pid_t pid = 0;
    BgwHandleStatus status =
        handle ? pg::call([&] { return WaitForBackgroundWorkerStartup(handle, &pid); })
               : BGWH_STOPPED;
    // Not started: nothing will clear the flag. (One that started clears
    // it when it exits, also when it exits before we look.)
    if (status != BGWH_STARTED) set_forward_running(false);
    if (!handle)
        throw pg::Error(
            ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            "no background worker slot free to forward node \"" + dead.name + "\"'s transactions",
            {}, "Raise max_worker_processes.");
}

ForwardProgress forward_progress(uint64_t dead_id) {
    ForwardProgress p;
    p.applied = applied_from(dead_id);
    char error[shmem::kErrorLength] = "";
    pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_SHARED);
        if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false)) {
            p.running = d->forward_running;
            strlcpy(error, d->forward_error, sizeof error);
        }
        LWLockRelease(shmem::state().lock);
    });
    p.error = error;
    return p;
}

}  // namespace pgmesh::node_admin
