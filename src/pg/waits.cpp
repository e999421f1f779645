// The waits of pgmesh.wait_for_ready and pgmesh.wait_for_sync: they poll
// this node's catalog, shared memory and slots until the condition holds or
// the timeout passes.
#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "guard.hpp"
#include "node.hpp"
#include "node_admin.hpp"
#include "shmem.hpp"
#include "xact_end.hpp"

namespace pgmesh::node_admin {

namespace {

// Polls `done` every 100 ms (interruptibly) until it holds, or the timeout
// passes (false).
bool wait_until(int timeout_seconds, const std::function<bool()> &done) {
    TimestampTz deadline = pg::call([&] {
        return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_seconds * 1000L);
    });
    for (;;) {
        if (done()) return true;
        if (pg::call([&] { return GetCurrentTimestamp() >= deadline; })) return false;
        pg::wait_latch(100);
    }
}

}  // namespace

LocalSlot local_slot(const std::string &name) {
    return pg::call([&] {
        LocalSlot found{false, false, InvalidXLogRecPtr};
        LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
        if (ReplicationSlot *slot = SearchNamedReplicationSlot(name.c_str(), false)) {
            SpinLockAcquire(&slot->mutex);
            found = LocalSlot{true, slot->active_pid != 0, slot->data.confirmed_flush};
            SpinLockRelease(&slot->mutex);
        }
        LWLockRelease(ReplicationSlotControlLock);
        return found;
    });
}

bool wait_for_ready(int timeout_seconds) {
    return wait_until(timeout_seconds, [] {
        catalog::Nodes nodes = catalog::read_nodes();
        const catalog::Node *local = &nodes.require_local();
        if (local->state != node::State::kReady) return false;
        for (const catalog::Node &peer : nodes.all) {
            if (peer.is_local || peer.state != node::State::kReady) continue;
            // Our apply worker streams from the peer, and the peer's streams
            // from our slot.
            if (!local_slot(node::slot_name(local->id, peer.id)).active) return false;
            bool connected = pg::call([&] {
                LWLockAcquire(shmem::state().lock, LW_SHARED);
                shmem::WorkerSlot *w = shmem::worker_slot(MyDatabaseId, peer.id, false);
                bool c = w && w->connected && w->pid != 0;
                LWLockRelease(shmem::state().lock);
                return c;
            });
            if (!connected) return false;
        }
        return true;
    });
}

bool wait_for_sync(int timeout_seconds) {
    uint64_t target = pg::call([] {
        // The end of everything inserted so far. Right after a page header
        // the insert position points past a header not yet written, which
        // cannot be flushed: the last record ended at the page start.
        XLogRecPtr insert = GetXLogInsertRecPtr();
        if (XLogSegmentOffset(insert, wal_segment_size) == SizeOfXLogLongPHD)
            insert -= SizeOfXLogLongPHD;
        else if (insert % XLOG_BLCKSZ == SizeOfXLogShortPHD)
            insert -= SizeOfXLogShortPHD;
        XLogFlush(insert);
        return insert;
    });
    catalog::Nodes nodes = catalog::read_nodes();
    const catalog::Node *local = &nodes.require_local();
    std::vector<std::string> slots;
    for (const catalog::Node &peer : nodes.all)
        if (!peer.is_local && peer.state != node::State::kParted)
            slots.push_back(node::slot_name(local->id, peer.id));
    return wait_until(timeout_seconds, [&] {
        return std::all_of(slots.begin(), slots.end(), [&](const std::string &name) {
            LocalSlot slot = local_slot(name);
            return slot.exists && slot.confirmed_flush >= target;
        });
    });
}

namespace {

bool holding_apply = false;  // this session, until its transaction ends

void release_apply_hold(bool) {
    if (!holding_apply) return;
    holding_apply = false;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false))
        d->apply_holds = std::max(0, d->apply_holds - 1);
    LWLockRelease(shmem::state().lock);
    shmem::wake_database(MyDatabaseId);
}

}  // namespace

void hold_apply(int timeout_seconds) {
    check_server_setup();
    catalog::read_nodes().require_local();
    if (!pg::call([] { return IsTransactionBlock(); }))
        throw pg::Error(ERRCODE_ACTIVE_SQL_TRANSACTION,
                        "pgmesh.hold_apply() holds apply until its transaction ends", {},
                        "Call it inside BEGIN ... COMMIT.");
    if (!holding_apply) {
        pg::call([] {
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, true)) d->apply_holds++;
            LWLockRelease(shmem::state().lock);
        });
        holding_apply = true;
        xact_end::at_end(release_apply_hold);
    }
    // Every running worker must say it stays at a boundary; one that
    // starts later checks the hold before it applies anything.
    bool all_holding = wait_until(timeout_seconds, [] {
        return pg::call([] {
            bool all = true;
            LWLockAcquire(shmem::state().lock, LW_SHARED);
            for (int i = 0; i < shmem::state().nworkers; i++) {
                const shmem::WorkerSlot &w = shmem::workers()[i];
                if (w.in_use && w.dboid == MyDatabaseId && w.pid != 0 && !w.holding) all = false;
            }
            LWLockRelease(shmem::state().lock);
            return all;
        });
    });
    if (!all_holding)
        throw pg::Error(ERRCODE_LOCK_NOT_AVAILABLE,
                        "apply workers did not reach a transaction boundary within " +
                            std::to_string(timeout_seconds) + " s",
                        {}, "See pgmesh.status for a worker stuck in a remote transaction.");
}

}  // namespace pgmesh::node_admin
