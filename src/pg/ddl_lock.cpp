#include "ddl_lock.hpp"

#include <algorithm>
#include <climits>
#include <optional>
#include <sstream>
#include <string>

#include "group_key.hpp"
#include "guard.hpp"
#include "node_admin.hpp"
#include "replicated.hpp"
#include "settings.hpp"
#include "shmem.hpp"
#include "spi.hpp"
#include "xact_end.hpp"

namespace pgmesh::ddl_lock {

namespace {

// The write gate is an advisory lock tag no SQL function can name: the
// advisory functions use field4 1 and 2. pg_locks shows it as an advisory
// lock with objsubid 20557 ('PM') and objid the table's OID (0: every table).
constexpr uint16 kGateField = 0x504D;

constexpr long kPollMs = 10;

// This backend's lock, for the current transaction (0: none), and its node.
uint64_t my_lock_id = 0;
uint64_t my_node_id = 0;

// Caller holds the pgmesh LWLock exclusively.
Slot &slot() {
    shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, true);
    if (!d)
        throw pg::Error(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
                        "no pgmesh shared memory slot left for this database");
    return d->lock;
}

void set_gate_tag(LOCKTAG &tag, Oid relid) {
    SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, relid, 0, kGateField);
}

void wake_manager() {
    LWLockAcquire(shmem::state().lock, LW_SHARED);
    shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false);
    if (d && d->manager_proc) SetLatch(&d->manager_proc->procLatch);
    LWLockRelease(shmem::state().lock);
}

// Queues the machine's actions for the manager. Called under the LWLock;
// plain C. The backend sends its own first requests (kSendRequest from
// request() and upgrade()), so those are skipped when `own_requests`.
void queue(Slot &s, const glock::Actions &actions, bool own_requests) {
    for (const glock::Action &a : actions) {
        Out kind;
        switch (a.kind) {
            case glock::Action::kSendRequest:
                if (own_requests) continue;
                kind = Out::kRequestAgain;
                break;
            case glock::Action::kGrant:
                kind = Out::kGrant;
                break;
            case glock::Action::kSendRelease:
                kind = Out::kRelease;
                break;
            case glock::Action::kUnblock:
                kind = Out::kUnblock;
                break;
            default:
                continue;
        }
        if (s.out_count == kOutboxSize) {
            // Cannot happen with one lock at a time; losing a RELEASE would
            // leave peers locked, so say so loudly.
            elog(WARNING, "pgmesh: global lock outbox full, an action was dropped");
            continue;
        }
        s.out[s.out_count++] = OutItem{kind, a.lock};
    }
}

// Sends one sealed lock message. Non-transactional, so that it goes out now
// and not at some commit; flushed, so that walsenders see it at once.
void send(const mesh::LockMessage &m, const mesh::Mac &mac) {
    std::string content = mesh::seal(m, mac);
    pg::call([&] {
        XLogRecPtr lsn =
            LogLogicalMessage(mesh::kLockPrefix.data(), content.data(), content.size(), false);
        XLogFlush(lsn);
    });
}

mesh::LockMessage message_of(mesh::LockKind kind, uint64_t sender, const glock::Lock &lock) {
    mesh::LockMessage m;
    m.kind = kind;
    m.sender = sender;
    m.holder = lock.holder;
    m.lock_id = lock.lock_id;
    m.seq = lock.seq;
    m.strength = lock.strength;
    m.priority = lock.priority;
    m.holder_pid = lock.holder_pid;
    return m;
}

// The request of the local holder, with its tables, read from the slot.
mesh::LockMessage request_of(uint64_t self, const Slot &s) {
    mesh::LockMessage m = message_of(mesh::LockKind::kRequest, self, s.state.current);
    m.all_tables = s.request_all;
    for (int i = 0; i < s.request_count; ++i)
        m.tables.emplace_back(NameStr(s.request_schema[i]), NameStr(s.request_table[i]));
    return m;
}

// ---------------------------------------------------------------------------
// The granted write lock on disk (pgmesh.granted_write_lock)
//
// Shared memory forgets a granted write lock when the server restarts, but
// this node promised not to write to the tables until it has applied the
// holder's DDL, and it must still know which other nodes' GRANTs it applied
// (those will not come again). So the row is written before the GRANT goes
// out, its seen grants kept up to date, and it is deleted in the transaction
// that acts on the lock's end, before anything later from the holder is
// applied. At startup the manager puts it back into shared memory.

std::string array_text(const std::vector<uint64_t> &values, bool as_signed) {
    std::string out = "{";
    for (size_t i = 0; i < values.size(); ++i) {
        out += i ? "," : "";
        out +=
            as_signed ? std::to_string(static_cast<int64_t>(values[i])) : std::to_string(values[i]);
    }
    return out + "}";
}

std::vector<uint64_t> seen_grants_of(const glock::State &state) {
    return {state.seen_grants.ids, state.seen_grants.ids + state.seen_grants.count};
}

// Adds `seen` to the recorded grants of lock_id (a no-op without its row).
void record_seen_grants(uint64_t lock_id, const std::vector<uint64_t> &seen) {
    if (seen.empty()) return;
    pg::in_transaction([&] {
        spi::query(
            "UPDATE pgmesh.granted_write_lock SET seen_grants = ARRAY(SELECT DISTINCT g FROM "
            "unnest(seen_grants || $2::bigint[]) g) WHERE lock_id = $1",
            {spi::int8(static_cast<int64_t>(lock_id)), spi::text(array_text(seen, true))});
    });
}

void persist_grant(const glock::Lock &lock, bool all, const std::vector<Oid> &relids,
                   const std::vector<uint64_t> &seen) {
    std::vector<uint64_t> oids(relids.begin(), relids.end());
    pg::in_transaction([&] {
        spi::query(
            "INSERT INTO pgmesh.granted_write_lock (lock_id, holder_node_id, seq, priority, "
            "holder_pid, all_tables, relids, seen_grants) "
            "VALUES ($1, $2, $3::integer, $4, $5::integer, $6::boolean, $7::oid[], $8::bigint[]) "
            "ON CONFLICT (lock_id) DO UPDATE SET seq = excluded.seq, "
            "all_tables = excluded.all_tables, relids = excluded.relids",
            {spi::int8(static_cast<int64_t>(lock.lock_id)),
             spi::int8(static_cast<int64_t>(lock.holder)), spi::text(std::to_string(lock.seq)),
             spi::int8(lock.priority), spi::text(std::to_string(lock.holder_pid)),
             spi::text(all ? "true" : "false"), spi::text(array_text(oids, false)),
             spi::text(array_text(seen, true))});
    });
}

void forget_grant(uint64_t lock_id) {
    pg::in_transaction([&] {
        spi::query("DELETE FROM pgmesh.granted_write_lock WHERE lock_id = $1",
                   {spi::int8(static_cast<int64_t>(lock_id))});
    });
}

// Whether the current lock blocks every table: it asked for all, or for
// more than the slot holds, or it was granted from the queue, whose entries
// carry no tables.
bool blocks_all(const Slot &s) {
    return s.block_lock_id != s.state.current.lock_id || s.block_all;
}

// The write lock granted here, if any (phase kGranted, write strength).
std::optional<uint64_t> granted_write_lock(const Slot &s) {
    if (s.state.phase == glock::Phase::kGranted &&
        s.state.current.strength == mesh::Strength::kWrite)
        return s.state.current.lock_id;
    return std::nullopt;
}

// "1 2 3" (array_to_string(a, ' ')) as numbers.
std::vector<uint64_t> split_numbers(const std::string &text) {
    std::vector<uint64_t> values;
    std::istringstream in(text);
    for (long long value; in >> value;) values.push_back(static_cast<uint64_t>(value));
    return values;
}

std::vector<uint64_t> ready_peers(const catalog::Nodes &nodes) {
    std::vector<uint64_t> peers;
    for (const catalog::Node &n : nodes.all)
        if (!n.is_local && n.state == node::State::kReady) peers.push_back(n.id);
    return peers;
}

std::string node_name(const catalog::Nodes &nodes, uint64_t id) {
    const catalog::Node *n = nodes.find(id);
    return n ? n->name : node::hex_id(id);
}

// Adds `tables` to the local holder's request. False when nothing was new.
bool add_request_tables(Slot &s, const Tables &tables) {
    if (s.request_all) return false;
    if (tables.all) {
        s.request_all = true;
        return true;
    }
    bool added = false;
    for (const auto &[schema, table] : tables.names) {
        bool present = false;
        for (int i = 0; i < s.request_count && !present; ++i)
            present =
                schema == NameStr(s.request_schema[i]) && table == NameStr(s.request_table[i]);
        if (present) continue;
        added = true;
        if (s.request_count == kMaxTables) {
            s.request_all = true;
            return true;
        }
        namestrcpy(&s.request_schema[s.request_count], schema.c_str());
        namestrcpy(&s.request_table[s.request_count], table.c_str());
        s.request_count++;
    }
    return added;
}

void at_transaction_end(bool committed) {
    if (my_lock_id == 0) return;
    uint64_t lock_id = my_lock_id;
    my_lock_id = 0;
    // Runs in PostgreSQL's transaction callback: nothing here may throw.
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false);
    if (d) {
        Slot &s = d->lock;
        glock::Actions actions;
        glock::Machine(s.state, my_node_id)
            .local_end(lock_id, committed, GetCurrentTimestamp(), actions);
        if (s.state.phase == glock::Phase::kReleasing) s.release_after_lsn = XactLastCommitEnd;
        if (s.state.phase != glock::Phase::kRequesting && s.state.phase != glock::Phase::kHeld)
            s.holder_proc = nullptr;
        queue(s, actions, true);
        if (d->manager_proc) SetLatch(&d->manager_proc->procLatch);
    }
    LWLockRelease(shmem::state().lock);
}

// What a waiting backend sees of the lock.
struct View {
    bool mine;      // current is still this backend's lock
    bool acquired;  // ... and it holds it now
    uint64_t holder;
    int32_t holder_pid;
    std::vector<uint64_t> missing;  // peers that have not granted
};

// LWLockAcquire and LWLockRelease do not raise errors in practice; an
// exception thrown while the lock is held (bad_alloc) becomes an ERROR
// whose abort releases every LWLock.
View look(uint64_t self, const std::vector<uint64_t> &peers, uint64_t lock_id) {
    View v{};
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    {
        Slot &s = slot();
        v.mine = s.state.phase != glock::Phase::kFree && s.state.current.holder == self &&
                 s.state.current.lock_id == lock_id;
        v.holder = s.state.current.holder;
        v.holder_pid = s.state.current.holder_pid;
        if (v.mine)
            v.acquired = s.state.phase == glock::Phase::kHeld ||
                         glock::Machine(s.state, self).acquire(peers);
        for (uint64_t p : peers)
            if (!s.state.granted.contains(p)) v.missing.push_back(p);
    }
    LWLockRelease(shmem::state().lock);
    return v;
}

[[noreturn]] void fail_timeout(const catalog::Nodes &nodes, const View &v, bool asked) {
    std::string who;
    if (asked) {
        for (uint64_t p : v.missing)
            who += (who.empty() ? "" : ", ") + ("\"" + node_name(nodes, p) + "\"");
        throw pg::Error(
            ERRCODE_LOCK_NOT_AVAILABLE,
            "could not acquire the global DDL lock within pgmesh.ddl_lock_timeout (" +
                std::to_string(settings::ddl_lock_timeout) + " ms)",
            "No answer from node" + std::string(v.missing.size() > 1 ? "s " : " ") + who + ".",
            "Check that the node is up and connected (pgmesh.status), part it with "
            "pgmesh.part_node() if it is gone for good, or retry.");
    }
    if (v.holder == 0)
        throw pg::Error(ERRCODE_LOCK_NOT_AVAILABLE,
                        "could not acquire the global DDL lock within pgmesh.ddl_lock_timeout (" +
                            std::to_string(settings::ddl_lock_timeout) + " ms)",
                        "This server restarted, and not every peer has applied what this node "
                        "committed before that yet.",
                        "Check that every node is up and connected (pgmesh.status), or retry.");
    throw pg::Error(ERRCODE_LOCK_NOT_AVAILABLE,
                    "could not acquire the global DDL lock within pgmesh.ddl_lock_timeout (" +
                        std::to_string(settings::ddl_lock_timeout) + " ms)",
                    "Node \"" + node_name(nodes, v.holder) + "\" (backend " +
                        std::to_string(v.holder_pid) + ") holds it.",
                    "Retry the transaction once the other DDL has finished (pgmesh.global_lock).");
}

// Apply worker of the holder: the write gates this process holds, for which
// lock round.
struct HeldGates {
    uint64_t lock_id = 0;
    uint32_t seq = 0;
    std::vector<Oid> relids;
};
HeldGates gates;

void release_gates() {
    for (Oid relid : gates.relids) {
        LOCKTAG tag;
        set_gate_tag(tag, relid);
        pg::call([&] { LockRelease(&tag, ExclusiveLock, true); });
    }
    gates = HeldGates{};
}

// Whether the holder's DDL is being replayed here and needs the table whose
// write gate is `relid` (InvalidOid: the gate of every table). Plain C.
bool replay_under_way(Oid relid) {
    bool under_way = false;
    LWLockAcquire(shmem::state().lock, LW_SHARED);
    if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false)) {
        const Slot &s = d->lock;
        under_way = s.replaying_ddl && (relid == InvalidOid || s.block_all ||
                                        std::find(s.block_relids, s.block_relids + s.block_count,
                                                  relid) != s.block_relids + s.block_count);
    }
    LWLockRelease(shmem::state().lock);
    return under_way;
}

// A writer at a closed gate while the DDL replays: it holds a lock on the
// table that the replay must take, so waiting would deadlock. Plain C.
[[noreturn]] void raise_in_the_way(const NameData &table) {
    ereport(ERROR,
            (errcode(ERRCODE_T_R_DEADLOCK_DETECTED),
             NameStr(table)[0] ? errmsg("canceling the write to table \"%s\": a replicated "
                                        "schema change needs the table",
                                        NameStr(table))
                               : errmsg("canceling the write: a replicated schema change needs "
                                        "the tables it writes to"),
             errdetail("Another node holds the global write lock, and this transaction holds a "
                       "lock that the schema change, applied here now, must take."),
             errhint("Retry the transaction.")));
    pg_unreachable();
}

// Whether a remote write lock granted here closes `gate` (InvalidOid: the
// gate of every table), whoever holds the gate's lock now. Plain C.
bool gate_closed(Oid gate) {
    bool closed = false;
    LWLockAcquire(shmem::state().lock, LW_SHARED);
    if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false)) {
        const Slot &s = d->lock;
        if (granted_write_lock(s)) {
            const bool all = blocks_all(s);
            closed = all ? gate == InvalidOid
                         : OidIsValid(gate) &&
                               std::find(s.block_relids, s.block_relids + s.block_count, gate) !=
                                   s.block_relids + s.block_count;
        }
    }
    LWLockRelease(shmem::state().lock);
    return closed;
}

// Sleeps one poll interval of a writer held back without a lock wait,
// honouring lock_timeout from `since` like a lock wait would. Plain C.
void wait_like_a_lock(TimestampTz since) {
    if (LockTimeout > 0 && TimestampDifferenceExceeds(since, GetCurrentTimestamp(), LockTimeout))
        ereport(ERROR, (errcode(ERRCODE_LOCK_NOT_AVAILABLE),
                        errmsg("canceling statement due to lock timeout"),
                        errdetail("Another node holds the global write lock.")));
    (void)WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, kPollMs,
                    PG_WAIT_EXTENSION);
    ResetLatch(MyLatch);
    CHECK_FOR_INTERRUPTS();
}

// Waits for the gate's lock; before_replay() cancels the wait if the DDL
// comes meanwhile. Plain C.
void wait_at_gate(LOCKTAG &tag, Oid gate, const NameData &table) {
    MemoryContext context = CurrentMemoryContext;
    PG_TRY();
    { (void)LockAcquire(&tag, RowExclusiveLock, false, false); }
    PG_CATCH();
    {
        MemoryContextSwitchTo(context);
        ErrorData *error = CopyErrorData();
        if (error->sqlerrcode != ERRCODE_QUERY_CANCELED || !replay_under_way(gate)) {
            FreeErrorData(error);
            PG_RE_THROW();
        }
        FlushErrorState();
        raise_in_the_way(table);
    }
    PG_END_TRY();
}

// Takes the write gate of `gate` in the writers' shared mode. Plain C.
//
// The holder's apply worker normally holds a closed gate, and writers wait
// for it in a lock wait. But that worker comes and goes (a lost connection,
// a restart) while the lock stays granted; so a writer that got through
// looks again whether the gate is closed and, if so, lets go and waits here
// until the lock ends or the worker holds the gate again.
void pass_gate(Oid gate) {
    LOCKTAG tag;
    set_gate_tag(tag, gate);
    NameData table{};
    bool named = false;
    auto name_table = [&] {
        // Read before any wait: no catalog access once a wait failed.
        if (named) return;
        named = true;
        if (const char *name = OidIsValid(gate) ? get_rel_name(gate) : nullptr)
            namestrcpy(&table, name);
    };
    TimestampTz since = 0;
    for (;;) {
        LockAcquireResult got = LockAcquire(&tag, RowExclusiveLock, false, true);
        // This transaction passed before (a writer in flight when the lock
        // was granted): the grant waits for it, so it must go on.
        if (got == LOCKACQUIRE_ALREADY_HELD || got == LOCKACQUIRE_ALREADY_CLEAR) return;
        if (got == LOCKACQUIRE_NOT_AVAIL) {
            name_table();
            if (replay_under_way(gate)) raise_in_the_way(table);
            wait_at_gate(tag, gate, table);
        }
        if (!gate_closed(gate)) return;
        LockRelease(&tag, RowExclusiveLock, false);
        name_table();
        if (replay_under_way(gate)) raise_in_the_way(table);
        if (since == 0) since = GetCurrentTimestamp();
        wait_like_a_lock(since);
    }
}

// At the end of the transaction that replayed the holder's DDL: a gate is
// only closed now, no longer in the DDL's way. Plain C.
void end_replay(bool) {
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false))
        d->lock.replaying_ddl = false;
    LWLockRelease(shmem::state().lock);
}

// Cancels the backends of this database that wait at the write gate of one
// of `gates_held`.
void cancel_gate_waiters(const std::vector<Oid> &gates_held) {
    LockData *locks = pg::call([] { return GetLockStatusData(); });
    std::vector<int> pids;
    for (int i = 0; i < locks->nelements; i++) {
        const LockInstanceData &l = locks->locks[i];
        if (l.waitLockMode == NoLock || l.pid == MyProcPid ||
            l.locktag.locktag_type != LOCKTAG_ADVISORY ||
            l.locktag.locktag_field1 != MyDatabaseId || l.locktag.locktag_field4 != kGateField)
            continue;
        Oid relid = l.locktag.locktag_field2;
        if (std::find(gates_held.begin(), gates_held.end(), relid) != gates_held.end())
            pids.push_back(l.pid);
    }
    pg::call([&] {
        for (int pid : pids)
            if (BackendPidGetProc(pid)) kill(pid, SIGINT);
    });
}

// Manager: sends the GRANT of `lock` once the write blocks are in place (the
// holder's apply worker takes them, apply_worker_tick()). False when they
// are not yet: the caller tries again next round.
bool grant(uint64_t self, const glock::Lock &lock, const mesh::Mac &mac) {
    bool current = false;
    bool blocked = false;
    glock::Lock now{};
    bool all = false;
    std::vector<Oid> relids;
    std::vector<uint64_t> seen;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    {
        Slot &s = slot();
        current =
            s.state.phase == glock::Phase::kGranted && s.state.current.lock_id == lock.lock_id;
        now = s.state.current;
        blocked = now.strength != mesh::Strength::kWrite ||
                  (s.gates_lock_id == now.lock_id && s.gates_seq == now.seq);
        all = blocks_all(s);
        if (!all) relids.assign(s.block_relids, s.block_relids + s.block_count);
        seen = seen_grants_of(s.state);
    }
    LWLockRelease(shmem::state().lock);
    if (!current) return true;  // released meanwhile: nothing to grant
    if (!blocked) {
        pg::call([] { shmem::wake_database(MyDatabaseId); });
        return false;
    }
    if (now.strength == mesh::Strength::kWrite) {
        // On disk before the GRANT can be seen (the GRANT's flush covers
        // this commit): a restart must not forget what it promised.
        persist_grant(now, all, relids, seen);
        // Grants an apply worker noted meanwhile, before the row existed.
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        seen = seen_grants_of(slot().state);
        LWLockRelease(shmem::state().lock);
        record_seen_grants(now.lock_id, seen);
    }
    send(message_of(mesh::LockKind::kGrant, self, now), mac);
    return true;
}

// Apply worker, after ACQUIRED of a write lock: nothing more from the holder
// is applied until every other peer's GRANT has been, so that every row
// written before the lock is here before the DDL.
void wait_for_grants(uint64_t self, uint64_t holder, const mesh::LockMessage &m) {
    std::vector<uint64_t> peers;
    pg::in_transaction([&] { peers = ready_peers(catalog::read_nodes()); });
    auto set_waiting = [&](bool waiting) {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        if (shmem::WorkerSlot *w = shmem::worker_slot(MyDatabaseId, holder, false))
            w->waiting_for_lock = waiting;
        LWLockRelease(shmem::state().lock);
    };
    bool waited = false;
    for (;;) {
        bool done = false;
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        {
            Slot &s = slot();
            glock::Machine machine(s.state, self);
            done = s.state.phase != glock::Phase::kGranted ||
                   s.state.current.lock_id != m.lock_id || machine.all_grants_seen(peers);
        }
        LWLockRelease(shmem::state().lock);
        if (done) break;
        if (!waited) set_waiting(true);
        waited = true;
        pg::wait_latch(kPollMs);
    }
    if (waited) set_waiting(false);
}

}  // namespace

uint64_t acquire(mesh::Strength strength, const Tables &tables, const catalog::Nodes &nodes) {
    const uint64_t self = nodes.require_local().id;
    const std::vector<uint64_t> peers = ready_peers(nodes);
    mesh::Mac mac = group_key::mac();
    TimestampTz start = pg::call([] { return GetCurrentTimestamp(); });
    TimestampTz deadline = start + static_cast<int64_t>(settings::ddl_lock_timeout) * 1000;
    const int64_t priority = start;

    for (;;) {
        // Ask: a new lock, or more of the one this transaction holds.
        bool send_request = false;
        mesh::LockMessage request;
        if (my_lock_id == 0) {
            uint64_t lock_id = 0;
            pg::call([&] {
                if (!pg_strong_random(&lock_id, sizeof lock_id))
                    elog(ERROR, "pgmesh: could not generate a lock id");
            });
            glock::Lock lock{self, lock_id, 0, strength, priority, MyProcPid};
            TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
            bool asked = false;
            View busy{};
            glock::Actions actions;
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            {
                Slot &s = slot();
                // Not before the manager said this node restarted: a
                // request ahead of that RESET would be voided by it.
                asked = s.reset_sent && glock::Machine(s.state, self).request(lock, now, actions);
                if (asked) {
                    s.holder_proc = MyProc;
                    s.request_all = false;
                    s.request_count = 0;
                    add_request_tables(s, tables);
                    request = request_of(self, s);
                } else {
                    busy.holder = s.state.current.holder;
                    busy.holder_pid = s.state.current.holder_pid;
                }
            }
            LWLockRelease(shmem::state().lock);
            if (!asked) {
                if (pg::call([] { return GetCurrentTimestamp(); }) >= deadline)
                    fail_timeout(nodes, busy, false);
                pg::wait_latch(kPollMs);
                continue;
            }
            my_lock_id = lock_id;
            my_node_id = self;
            xact_end::at_end(at_transaction_end);
            send_request = true;
        } else {
            glock::Actions actions;
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            {
                Slot &s = slot();
                bool stronger = strength > s.state.current.strength;
                bool more_tables =
                    strength == mesh::Strength::kWrite && add_request_tables(s, tables);
                if (s.state.phase == glock::Phase::kHeld && (stronger || more_tables)) {
                    glock::Machine(s.state, self).upgrade(strength, actions);
                    request = request_of(self, s);
                    send_request = true;
                }
            }
            LWLockRelease(shmem::state().lock);
        }
        if (send_request) send(request, mac);

        // Wait for every ready peer's grant.
        for (;;) {
            View v = look(self, peers, my_lock_id);
            if (!v.mine) {
                // Our request gave way to an older one (or a peer restarted
                // and voided it): ask again once the lock is free, keeping
                // our age.
                my_lock_id = 0;
                break;
            }
            if (v.acquired) {
                glock::Lock held{};
                LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
                held = slot().state.current;
                LWLockRelease(shmem::state().lock);
                if (held.strength == mesh::Strength::kWrite && send_request)
                    send(message_of(mesh::LockKind::kAcquired, self, held), mac);
                return my_lock_id;
            }
            if (pg::call([] { return GetCurrentTimestamp(); }) >= deadline) {
                // Give the request up (the abort would too, but the error
                // must name who did not answer).
                at_transaction_end(false);
                fail_timeout(nodes, v, true);
            }
            pg::wait_latch(kPollMs);
        }
    }
}

bool held() {
    return my_lock_id != 0;
}

void block_writes_to(Oid relid) {
    if (replorigin_session_origin != InvalidRepOriginId) return;
    if (get_rel_persistence(relid) != RELPERSISTENCE_PERMANENT) return;
    // pgmesh writes its own catalogs while it grants a lock or puts one back
    // at startup (and they do not replicate): no gate for them, and no wait
    // for that restore, which the manager's own writes would wait for.
    if (replicated::is_local_catalog(relid)) return;
    if (!shmem::is_node(MyDatabaseId) && !wait_until_restored()) return;
    pass_gate(InvalidOid);
    pass_gate(relid);
    if (get_rel_relispartition(relid)) {
        ListCell *lc;
        foreach (lc, get_partition_ancestors(relid)) pass_gate(lfirst_oid(lc));
    }
}

void before_replay(uint64_t peer) {
    bool granted_to_peer = false;
    LWLockAcquire(shmem::state().lock, LW_SHARED);
    if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false))
        granted_to_peer = granted_write_lock(d->lock) && d->lock.state.current.holder == peer;
    LWLockRelease(shmem::state().lock);
    if (!granted_to_peer) return;
    // A worker that started since the grant (after a lost connection or a
    // restart) may not hold the gates yet: writers then wait without a
    // lock wait, and must learn of the replay too.
    apply_worker_tick(peer);
    if (gates.lock_id == 0 || gates.relids.empty()) return;
    // From now until this transaction ends, writers that reach a closed gate
    // fail at once (pass_gate()); the ones already waiting are canceled.
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    slot().replaying_ddl = true;
    LWLockRelease(shmem::state().lock);
    xact_end::at_end(end_replay);
    // A writer that found its gate closed just before the mark above, and
    // starts to wait just after the cancel below, closes a cycle with this
    // worker: its own deadlock check must find it first, so that it, not
    // this worker, is the victim.
    const std::string longer = std::to_string(std::min<int64_t>(10LL * DeadlockTimeout, INT_MAX));
    pg::call([&] {
        set_config_option("deadlock_timeout", longer.c_str(), PGC_SUSET, PGC_S_SESSION,
                          GUC_ACTION_LOCAL, true, 0, false);
    });
    cancel_gate_waiters(gates.relids);
    for (Oid blocked : gates.relids) {
        if (!OidIsValid(blocked)) continue;
        // Queued here, the worker holds up new writers at the table lock,
        // before they reach a gate; SHARE is the weakest mode that does, and
        // lets readers be until the DDL takes what it needs. The DDL
        // recurses into partitions and children, which writers hold too
        // (they pass every ancestor's gate).
        List *tables = pg::call([&] { return find_all_inheritors(blocked, NoLock, nullptr); });
        ListCell *lc;
        foreach (lc, tables) {
            Oid relid = lfirst_oid(lc);
            pg::call([&] { LockRelationOid(relid, ShareLock); });
        }
    }
}

void on_message(uint64_t self, uint64_t peer, const mesh::Mac &mac, const proto::Message &raw) {
    mesh::LockMessage m;
    try {
        m = mesh::open_lock(raw.content, mac);
    } catch (const mesh::BadMessage &e) {
        // Not pgmesh's (any role may emit messages with our prefix): ignore.
        std::string what = e.what();
        pg::call([&] {
            ereport(WARNING,
                    (errmsg("pgmesh ignored a lock message from a peer: %s", what.c_str())));
        });
        return;
    }
    if (m.sender != peer) {
        pg::call([&] {
            ereport(WARNING,
                    (errmsg("pgmesh ignored a lock message that node %s relayed for another node",
                            node::hex_id(peer).c_str())));
        });
        return;
    }
    // The tables a write lock blocks here, by OID.
    std::vector<Oid> relids;
    if (m.kind == mesh::LockKind::kRequest && m.strength == mesh::Strength::kWrite &&
        !m.all_tables) {
        pg::in_transaction([&] {
            for (const auto &[schema, table] : m.tables) {
                Oid relid = pg::call([&] {
                    return RangeVarGetRelid(
                        makeRangeVar(pstrdup(schema.c_str()), pstrdup(table.c_str()), -1), NoLock,
                        true);
                });
                if (OidIsValid(relid)) relids.push_back(relid);
            }
        });
    }
    TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
    glock::Actions actions;
    std::optional<uint64_t> granted_before;
    std::optional<uint64_t> granted_after;
    std::vector<uint64_t> seen_after;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    {
        Slot &s = slot();
        granted_before = granted_write_lock(s);
        glock::Machine(s.state, self).on_message(m, now, actions);
        granted_after = granted_write_lock(s);
        seen_after = seen_grants_of(s.state);
        if (m.kind == mesh::LockKind::kRequest && m.strength == mesh::Strength::kWrite &&
            s.state.phase == glock::Phase::kGranted && s.state.current.lock_id == m.lock_id) {
            if (s.block_lock_id != m.lock_id) {
                s.block_lock_id = m.lock_id;
                s.block_all = false;
                s.block_count = 0;
            }
            if (m.all_tables || relids.size() + s.block_count > kMaxTables) s.block_all = true;
            for (Oid r : relids)
                if (!s.block_all && std::find(s.block_relids, s.block_relids + s.block_count, r) ==
                                        s.block_relids + s.block_count)
                    s.block_relids[s.block_count++] = r;
        }
        if (m.kind == mesh::LockKind::kGrant && m.holder == self && s.holder_proc)
            SetLatch(&s.holder_proc->procLatch);
        queue(s, actions, false);
    }
    LWLockRelease(shmem::state().lock);
    // On disk before anything later from this peer is applied: a restart
    // then finds the lock as this stream left it.
    if (granted_before && granted_before != granted_after) forget_grant(*granted_before);
    if (m.kind == mesh::LockKind::kGrant && granted_after && *granted_after == m.lock_id)
        record_seen_grants(*granted_after, seen_after);
    if (!actions.empty()) pg::call([] { wake_manager(); });
    for (const glock::Action &a : actions)
        if (a.kind == glock::Action::kSendRelease)
            pg::call([&] {
                ereport(LOG, (errmsg("pgmesh: this node's request for the global lock gave way "
                                     "to the older request of node %s; it asks again later",
                                     node::hex_id(m.holder).c_str())));
            });
    apply_worker_tick(peer);
    if (m.kind == mesh::LockKind::kAcquired) wait_for_grants(self, peer, m);
}

bool worker_waiting(uint64_t peer) {
    shmem::WorkerSlot *w = shmem::worker_slot(MyDatabaseId, peer, false);
    return w && w->waiting_for_lock;
}

// Whether every peer's slot here has confirmed `lsn` (applied everything
// this node wrote before it).
bool every_peer_applied(uint64_t self, const std::vector<uint64_t> &peers, uint64_t lsn) {
    return std::all_of(peers.begin(), peers.end(), [&](uint64_t peer) {
        return node_admin::local_slot(node::slot_name(self, peer)).confirmed_flush >= lsn;
    });
}

void manager_round(uint64_t self, const catalog::Nodes &nodes) {
    pg::call([] { StartTransactionCommand(); });
    mesh::Mac mac = group_key::mac();
    pg::call([] { CommitTransactionCommand(); });
    const std::vector<uint64_t> peers = ready_peers(nodes);

    // Once per server start, before any request of ours: whatever this node
    // held or asked for before is void, and peers that granted it let go.
    // But not before every peer has applied what this node committed before
    // it restarted: a write lock's DDL may be among it, and a peer that lets
    // go of the lock lets its writers write under the new shape, which a
    // node still without the DDL could not apply.
    bool reset_sent = false;
    uint64_t reset_after = 0;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    reset_sent = slot().reset_sent;
    if (slot().reset_after_lsn == 0) slot().reset_after_lsn = GetXLogInsertRecPtr();
    reset_after = slot().reset_after_lsn;
    LWLockRelease(shmem::state().lock);
    if (!reset_sent && every_peer_applied(self, peers, reset_after)) {
        send(message_of(mesh::LockKind::kReset, self,
                        glock::Lock{self, 0, 0, mesh::Strength::kDdl, 0, 0}),
             mac);
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        slot().reset_sent = true;
        LWLockRelease(shmem::state().lock);
    }
    std::optional<uint64_t> granted_before;
    std::optional<uint64_t> granted_after;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    {
        Slot &s = slot();
        glock::Actions actions;
        glock::Machine machine(s.state, self);
        granted_before = granted_write_lock(s);
        for (const catalog::Node &n : nodes.all)
            if (n.state == node::State::kParted) machine.on_parted(n.id, 0, actions);
        granted_after = granted_write_lock(s);
        queue(s, actions, false);
    }
    LWLockRelease(shmem::state().lock);
    if (granted_before && granted_before != granted_after) forget_grant(*granted_before);

    // A committed write lock: RELEASE once every peer applied the DDL.
    uint64_t release_after = 0;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    if (slot().state.phase == glock::Phase::kReleasing) release_after = slot().release_after_lsn;
    LWLockRelease(shmem::state().lock);
    if (release_after != 0 && every_peer_applied(self, peers, release_after)) {
        TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        glock::Actions actions;
        glock::Machine(slot().state, self).release_after_commit(now, actions);
        queue(slot(), actions, false);
        LWLockRelease(shmem::state().lock);
    }

    std::vector<OutItem> items;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    {
        Slot &s = slot();
        items.assign(s.out, s.out + s.out_count);
        s.out_count = 0;
    }
    LWLockRelease(shmem::state().lock);
    for (size_t i = 0; i < items.size(); ++i) {
        const OutItem &item = items[i];
        switch (item.kind) {
            case Out::kRelease:
                send(message_of(mesh::LockKind::kRelease, self, item.lock), mac);
                break;
            case Out::kRequestAgain: {
                bool current = false;
                mesh::LockMessage request;
                LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
                current = slot().state.current.holder == self &&
                          slot().state.current.lock_id == item.lock.lock_id;
                if (current) request = request_of(self, slot());
                LWLockRelease(shmem::state().lock);
                if (current) send(request, mac);
                break;
            }
            case Out::kUnblock:
                // The holder's apply worker lets go of its gates.
                pg::call([] { shmem::wake_database(MyDatabaseId); });
                break;
            case Out::kGrant:
                if (!grant(self, item.lock, mac)) {
                    // Writers in flight did not finish yet: try again next
                    // round, keeping the order of what follows.
                    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
                    Slot &s = slot();
                    int keep = static_cast<int>(items.size() - i);
                    int room = std::min(keep, kOutboxSize - s.out_count);
                    std::copy_backward(s.out, s.out + s.out_count, s.out + s.out_count + room);
                    std::copy(items.begin() + static_cast<long>(i),
                              items.begin() + static_cast<long>(i) + room, s.out);
                    s.out_count += room;
                    LWLockRelease(shmem::state().lock);
                    return;
                }
                break;
        }
    }
}

void apply_worker_tick(uint64_t peer) {
    bool want = false;
    glock::Lock lock{};
    bool all = false;
    std::vector<Oid> relids;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    {
        Slot &s = slot();
        want = s.state.phase == glock::Phase::kGranted && s.state.current.holder == peer &&
               s.state.current.strength == mesh::Strength::kWrite;
        lock = s.state.current;
        all = blocks_all(s);
        if (want && !all) relids.assign(s.block_relids, s.block_relids + s.block_count);
    }
    LWLockRelease(shmem::state().lock);
    if (!want) {
        if (!gates.relids.empty() || gates.lock_id) release_gates();
        return;
    }
    if (gates.lock_id == lock.lock_id && gates.seq == lock.seq) return;
    if (gates.lock_id != lock.lock_id) release_gates();
    if (all) relids = {InvalidOid};
    std::sort(relids.begin(), relids.end());
    bool own = !pg::call([] { return IsTransactionState(); });
    try {
        if (own) pg::call([] { StartTransactionCommand(); });
        // Writers in flight finish first; wait a second at a time, between
        // which apply goes on. A local writer that waits for a gate while
        // holding a table lock the holder's DDL needs closes a cycle with
        // this worker: the deadlock detector cancels the writer, which has
        // waited longer.
        pg::call([] {
            set_config_option("lock_timeout", "1000", PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL,
                              true, 0, false);
        });
        for (Oid relid : relids) {
            if (std::find(gates.relids.begin(), gates.relids.end(), relid) != gates.relids.end())
                continue;
            LOCKTAG tag;
            set_gate_tag(tag, relid);
            pg::call([&] { (void)LockAcquire(&tag, ExclusiveLock, true, false); });
            gates.relids.push_back(relid);
        }
        if (own) pg::call([] { CommitTransactionCommand(); });
    } catch (const pg::Error &) {
        if (!own) throw;
        pg::call([] { AbortCurrentTransaction(); });
        return;  // next tick
    }
    gates.lock_id = lock.lock_id;
    gates.seq = lock.seq;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    {
        Slot &s = slot();
        s.gates_lock_id = lock.lock_id;
        s.gates_seq = lock.seq;
    }
    LWLockRelease(shmem::state().lock);
    pg::call([] { wake_manager(); });
}

void restore_after_start() {
    bool restored = false;
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    restored = slot().restored;
    LWLockRelease(shmem::state().lock);
    if (restored) return;
    spi::Rows rows;
    pg::in_transaction([&] {
        rows = spi::query(
            "SELECT lock_id, holder_node_id, seq, priority, holder_pid, all_tables, "
            "array_to_string(relids, ' '), array_to_string(seen_grants, ' ') "
            "FROM pgmesh.granted_write_lock ORDER BY granted_at DESC");
        // Only the newest can be current (one lock at a time): an older
        // row is of a lock whose end was acted on before the crash.
        if (rows.size() > 1)
            spi::query("DELETE FROM pgmesh.granted_write_lock WHERE lock_id <> $1",
                       {spi::int8(std::stoll(*rows[0][0]))});
    });
    const TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    Slot &s = slot();
    if (!s.restored && !rows.empty()) {
        const spi::Row &r = rows[0];
        const glock::Lock lock{static_cast<uint64_t>(std::stoll(*r[1])),
                               static_cast<uint64_t>(std::stoll(*r[0])),
                               static_cast<uint32_t>(std::stoul(*r[2])),
                               mesh::Strength::kWrite,
                               std::stoll(*r[3]),
                               static_cast<int32_t>(std::stol(*r[4]))};
        s.state.phase = glock::Phase::kGranted;
        s.state.current = lock;
        s.state.since = now;
        s.state.acquired = false;
        s.state.seen_grants.clear();
        for (uint64_t id : split_numbers(r[7].value_or(""))) s.state.seen_grants.add(id);
        const std::vector<uint64_t> relids = split_numbers(r[6].value_or(""));
        s.block_lock_id = lock.lock_id;
        s.block_all = *r[5] == "t" || relids.size() > static_cast<size_t>(kMaxTables);
        s.block_count = 0;
        if (!s.block_all)
            for (uint64_t relid : relids) s.block_relids[s.block_count++] = static_cast<Oid>(relid);
    }
    s.restored = true;
    LWLockRelease(shmem::state().lock);
}

bool wait_until_restored() {
    bool restored = false;
    LWLockAcquire(shmem::state().lock, LW_SHARED);
    if (shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false))
        restored = d->lock.restored;
    LWLockRelease(shmem::state().lock);
    if (restored) return false;
    // Not a node, or its manager has not started since the server did.
    Oid schema = get_namespace_oid("pgmesh", true);
    Oid relid = OidIsValid(schema) ? get_relname_relid("granted_write_lock", schema) : InvalidOid;
    if (!OidIsValid(relid)) return false;
    Relation rel = table_open(relid, AccessShareLock);
    TableScanDesc scan = table_beginscan(
        rel, ActiveSnapshotSet() ? GetActiveSnapshot() : GetTransactionSnapshot(), 0, nullptr);
    const bool granted = heap_getnext(scan, ForwardScanDirection) != nullptr;
    table_endscan(scan);
    table_close(rel, AccessShareLock);
    if (!granted) return false;
    const TimestampTz since = GetCurrentTimestamp();
    for (;;) {
        LWLockAcquire(shmem::state().lock, LW_SHARED);
        shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false);
        restored = d && d->lock.restored && d->is_node;
        LWLockRelease(shmem::state().lock);
        if (restored) return true;
        wait_like_a_lock(since);
    }
}

long manager_naptime(long idle_ms) {
    LWLockAcquire(shmem::state().lock, LW_SHARED);
    shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, false);
    bool busy = d && (d->lock.out_count > 0 || d->lock.state.phase == glock::Phase::kReleasing);
    LWLockRelease(shmem::state().lock);
    return busy ? kPollMs : idle_ms;
}

}  // namespace pgmesh::ddl_lock
