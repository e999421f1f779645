#include "shmem.hpp"

namespace pgmesh::shmem {

namespace {

// Attached once per process: the address is the same in every backend.
State *attached = nullptr;
shmem_request_hook_type previous_request_hook = nullptr;
shmem_startup_hook_type previous_startup_hook = nullptr;

int worker_capacity() {
    return max_worker_processes;
}
int database_capacity() {
    return max_worker_processes;
}

Size state_size() {
    Size size = MAXALIGN(sizeof(State));
    size = add_size(size, mul_size(worker_capacity(), sizeof(WorkerSlot)));
    size = add_size(size, mul_size(database_capacity(), sizeof(DatabaseSlot)));
    return size;
}

void request_hook() {
    if (previous_request_hook) previous_request_hook();
    RequestAddinShmemSpace(state_size());
    RequestNamedLWLockTranche("pgmesh", 1);
    RequestNamedLWLockTranche("pgmesh_snowflake", 1);
}

void attach() {
    bool found = false;
    LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
    auto *s = static_cast<State *>(ShmemInitStruct("pgmesh", state_size(), &found));
    if (!found) {
        memset(s, 0, state_size());
        s->lock = &(GetNamedLWLockTranche("pgmesh"))->lock;
        s->snowflake_lock = &(GetNamedLWLockTranche("pgmesh_snowflake"))->lock;
        s->nworkers = worker_capacity();
        s->ndatabases = database_capacity();
    }
    LWLockRelease(AddinShmemInitLock);
    attached = s;
}

void startup_hook() {
    if (previous_startup_hook) previous_startup_hook();
    attach();
}

}  // namespace

void request() {
    previous_request_hook = shmem_request_hook;
    shmem_request_hook = request_hook;
    previous_startup_hook = shmem_startup_hook;
    shmem_startup_hook = startup_hook;
}

State &state() {
    if (!attached) attach();
    return *attached;
}

WorkerSlot *workers() {
    return reinterpret_cast<WorkerSlot *>(reinterpret_cast<char *>(&state()) +
                                          MAXALIGN(sizeof(State)));
}

DatabaseSlot *databases() {
    return reinterpret_cast<DatabaseSlot *>(workers() + state().nworkers);
}

WorkerSlot *worker_slot(Oid dboid, uint64_t peer_node_id, bool create) {
    WorkerSlot *free_slot = nullptr;
    for (int i = 0; i < state().nworkers; i++) {
        WorkerSlot *w = &workers()[i];
        if (w->in_use && w->dboid == dboid && w->peer_node_id == peer_node_id) return w;
        if (!w->in_use && !free_slot) free_slot = w;
    }
    if (!create || !free_slot) return nullptr;
    memset(free_slot, 0, sizeof(WorkerSlot));
    free_slot->in_use = true;
    free_slot->dboid = dboid;
    free_slot->peer_node_id = peer_node_id;
    return free_slot;
}

DatabaseSlot *database_slot(Oid dboid, bool create) {
    DatabaseSlot *free_slot = nullptr;
    for (int i = 0; i < state().ndatabases; i++) {
        DatabaseSlot *d = &databases()[i];
        if (d->in_use && d->dboid == dboid) return d;
        if (!d->in_use && !free_slot) free_slot = d;
    }
    if (!create || !free_slot) return nullptr;
    memset(free_slot, 0, sizeof(DatabaseSlot));
    free_slot->in_use = true;
    free_slot->dboid = dboid;
    return free_slot;
}

SnowflakeSlot *snowflake_slot(Oid dboid, Oid seqoid) {
    State &s = state();
    // A backend mostly asks for the same sequence again.
    static int hint = 0;
    SnowflakeSlot *slot = &s.snowflake[hint];
    if (slot->dboid != dboid || slot->seqoid != seqoid) {
        slot = nullptr;
        SnowflakeSlot *victim = &s.snowflake[0];
        for (int i = 0; i < kSnowflakeSlots && !slot; i++) {
            SnowflakeSlot *candidate = &s.snowflake[i];
            if (candidate->dboid == dboid && candidate->seqoid == seqoid) {
                slot = candidate;
                hint = i;
            } else if (victim->dboid != InvalidOid && (candidate->dboid == InvalidOid ||
                                                       candidate->last_used < victim->last_used)) {
                victim = candidate;
            }
        }
        if (!slot) {
            hint = static_cast<int>(victim - s.snowflake);
            slot = victim;
            slot->dboid = dboid;
            slot->seqoid = seqoid;
            slot->last_issued = INT64_MIN;
            slot->reserved = INT64_MIN;
        }
    }
    slot->last_used = ++s.snowflake_clock;
    return slot;
}

bool is_node(Oid dboid) {
    LWLockAcquire(state().lock, LW_SHARED);
    DatabaseSlot *d = database_slot(dboid, false);
    bool result = d && d->is_node;
    LWLockRelease(state().lock);
    return result;
}

void wake_database(Oid dboid) {
    LWLockAcquire(state().lock, LW_SHARED);
    for (int i = 0; i < state().nworkers; i++) {
        WorkerSlot *w = &workers()[i];
        if (w->in_use && w->dboid == dboid && w->proc) SetLatch(&w->proc->procLatch);
    }
    if (DatabaseSlot *d = database_slot(dboid, false); d && d->manager_proc)
        SetLatch(&d->manager_proc->procLatch);
    LWLockRelease(state().lock);
}

}  // namespace pgmesh::shmem
