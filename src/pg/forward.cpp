// pgmesh.forward_missing: run by part_node (part.cpp) on a survivor that got
// fewer of a dead node's transactions than another survivor, the source.
// Starts a forwarding worker (apply_worker.cpp), which applies the missing
// transactions from the source's relay slot (relay.hpp) as the dead node's,
// and waits for it. Each is applied once: the worker starts after our
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

constexpr long kPollMs = 100;

// Our origin's position for `node`: its commit LSN applied up to.
uint64_t applied_from(uint64_t node) {
    return pg::call([&] {
        RepOriginId origin = replorigin_by_name(node::origin_name(node).c_str(), true);
        return origin == InvalidRepOriginId ? XLogRecPtr{0}
                                            : replorigin_get_progress(origin, false);
    });
}

std::string forward_error() {
    char error[shmem::kErrorLength] = "";
    pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_SHARED);
        if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false))
            strlcpy(error, d->forward_error, sizeof error);
        LWLockRelease(shmem::state().lock);
    });
    return error;
}

void clear_forward_error() {
    pg::call([] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, true))
            d->forward_error[0] = '\0';
        LWLockRelease(shmem::state().lock);
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

}  // namespace

uint64_t forward_missing(uint64_t dead_id, uint64_t source_id, uint64_t up_to,
                         int stall_timeout_seconds) {
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
    uint64_t applied = applied_from(dead_id);
    if (applied >= up_to) return applied;

    clear_forward_error();
    BackgroundWorkerHandle *handle =
        workers::start_forward_worker(dead_id, dead.name, workers::ForwardJob{source_id, up_to});
    if (!handle)
        throw pg::Error(
            ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
            "no background worker slot free to forward node \"" + dead.name + "\"'s transactions",
            {}, "Raise max_worker_processes.");
    // Wait while it makes progress; a worker that applies nothing for the
    // whole stall timeout is stopped.
    uint64_t seen = applied;
    long still_ms = 0;
    for (;;) {
        pid_t pid = 0;
        BgwHandleStatus status = pg::call([&] { return GetBackgroundWorkerPid(handle, &pid); });
        if (status == BGWH_STOPPED || status == BGWH_POSTMASTER_DIED) break;
        pg::wait_latch(kPollMs);
        uint64_t now_applied = applied_from(dead_id);
        still_ms = now_applied == seen ? still_ms + kPollMs : 0;
        seen = now_applied;
        if (still_ms >= stall_timeout_seconds * 1000L) {
            pg::call([&] { TerminateBackgroundWorker(handle); });
            throw pg::Error(ERRCODE_QUERY_CANCELED,
                            "forwarding node \"" + dead.name + "\"'s transactions from node \"" +
                                source.name + "\" made no progress for " +
                                std::to_string(stall_timeout_seconds) + " s",
                            "Applied up to " + walstream::format_lsn(seen) + " of " +
                                walstream::format_lsn(up_to) + ".");
        }
    }
    applied = applied_from(dead_id);
    if (applied >= up_to) return applied;
    std::string why = forward_error();
    throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "node \"" + source.name + "\" could not forward all of node \"" + dead.name +
                        "\"'s missing transactions here",
                    "Applied up to " + walstream::format_lsn(applied) + " of " +
                        walstream::format_lsn(up_to) + ". " +
                        (why.empty() ? "The forwarding worker stopped; see the server log."
                                     : "The forwarding worker stopped: " + why));
}

}  // namespace pgmesh::node_admin
