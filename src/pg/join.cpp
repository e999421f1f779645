// pgmesh.join_group: a new node joins through a member of the group (the
// join target), as named steps. Each step has a fault point
// (join_<step>, fault.hpp) before it, so that tests can stop or fail the
// join between any two steps.
//
//   announce_joining     the target learns of the node, as joining: no one
//                        streams from it before it is ready
//   create_remote_slots  a slot for the new node on every other member C,
//                        then a barrier committed on C after that slot
//   wait_for_target      the target has applied each C's stream past the
//                        barrier: whatever C committed before our slot on
//                        C is in the target's data from here on
//   create_target_slot   with the target's apply held at a transaction
//                        boundary: its slot for us, exporting a snapshot,
//                        and its origin positions, which then describe
//                        exactly that snapshot
//   read_snapshot        the target's node catalog and resolvers, as of
//                        that snapshot
//   copy_data            schema and data at the snapshot (dump_restore.hpp)
//   create_local_slots   slots here for every member, before anything is
//                        written here: no change made here is missed
//   write_catalog        origins set where the copy ends for each member;
//                        the catalog as the target had it
//   announce_ready       the target marks the node ready; that reaches
//                        every member, and starts their streams from us
//
// Why this order loses nothing (docs/operations.md): for a member C, our
// origin starts at the target's position for C read under the hold, which
// the barrier makes at least our slot's start on C. Changes of C before that
// position are in the snapshot; changes after it come from our slot.
//
// One join at a time per target (a session advisory lock there), and none
// while the target knows of another joining node. A join that fails undoes
// what it did: the slots it created on the other members and here, and its
// row in the target's catalog. The steps run in a subtransaction, so that
// their writes are rolled back (and the failed transaction state with them,
// guard.hpp) before the slots are dropped. When the undo cannot reach the
// target (it died), the next join of the same name clears what is left.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "catalog.hpp"
#include "dump_restore.hpp"
#include "fault.hpp"
#include "guard.hpp"
#include "mesh_message.hpp"
#include "node.hpp"
#include "node_admin.hpp"
#include "origins.hpp"
#include "remote.hpp"
#include "spi.hpp"
#include "tombstones.hpp"
#include "walstream.hpp"
#include "xact_end.hpp"

namespace pgmesh::node_admin {

namespace {

void check_database_empty() {
    spi::Rows rows = spi::query(
        "SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgmesh') "
        "AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'");
    if (rows.at(0).at(0) != "0")
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "the database of a joining node must be empty",
                        "It has " + rows[0][0].value_or("?") + " relations of its own.",
                        "Join from a freshly created database with only the pgmesh extension.");
}

uint64_t lsn_of(const std::optional<std::string> &text) {
    if (!text) return 0;
    return walstream::parse_lsn(*text).value_or(0);
}

node::State state_of(const remote::Result &r, int row, int col) {
    std::optional<std::string> text = remote::value(r.get(), row, col);
    std::optional<node::State> state = node::parse_state(text.value_or(""));
    if (!state)
        throw pg::Error(
            ERRCODE_DATA_CORRUPTED,
            "the join target's pgmesh.node has unknown state \"" + text.value_or("") + "\"");
    return *state;
}

void reset_copy_origin(bool) {
    origins::end_session();
}

// Marks the rest of this transaction's writes with the copy origin until it
// ends: the copied rows are the group's, not news from this node, and our
// output plugin keeps rows written under an origin here.
void write_as_copy() {
    origins::start_session(origins::find_or_create(std::string(node::kCopyOrigin)));
    xact_end::at_end(reset_copy_origin);
}

// A subtransaction of the caller's transaction, for steps whose writes must
// be rolled back before their side effects outside it (slots) are undone.
// PostgreSQL's internal subtransactions, as PL/pgSQL's exception blocks use.
class Subtransaction {
public:
    Subtransaction() {
        pg::call([&] {
            context_ = CurrentMemoryContext;
            owner_ = CurrentResourceOwner;
            BeginInternalSubTransaction(nullptr);
            MemoryContextSwitchTo(context_);
        });
    }
    ~Subtransaction() {
        if (open_) rollback();
    }
    Subtransaction(const Subtransaction &) = delete;
    Subtransaction &operator=(const Subtransaction &) = delete;

    void commit() { end(true); }
    // After a caught error too: that is what aborts the subtransaction's
    // work before PostgreSQL is called again.
    void rollback() noexcept {
        try {
            end(false);
        } catch (...) {
            // Only a broken transaction state fails here; the outer
            // transaction's abort cleans up after it.
        }
    }

private:
    void end(bool commit) {
        if (!open_) return;
        open_ = false;
        pg::call([&] {
            if (commit)
                ReleaseCurrentSubTransaction();
            else
                RollbackAndReleaseCurrentSubTransaction();
            MemoryContextSwitchTo(context_);
            CurrentResourceOwner = owner_;
        });
    }

    MemoryContext context_ = nullptr;
    ResourceOwner owner_ = nullptr;
    bool open_ = true;
};

struct RemoteSlot {
    std::string dsn;  // of the node it is on
    std::string name;
};

struct Member {
    uint64_t node_id = 0;
    std::string dsn;
    uint64_t consistent_point = 0;   // where our slot on it starts
    uint64_t applied_at_target = 0;  // the target's position for it, under the hold
};

// How long a join waits for the target to apply a member's barrier.
constexpr int kTargetCatchUpMs = 60000;

// A batch of copied versions, as the JSON array the target made of them
// ($1; fields nsp, rel, key, deleted, t in µs since the Unix epoch, node):
// one statement per batch, not per row. Tables are found by name here.
#define PGMESH_COPIED_VERSIONS(deleted)                                                            \
    "(relid, key, commit_time, node_id) SELECT c.oid, v.key, 'epoch'::pg_catalog.timestamptz + "   \
    "v.t * interval '1 microsecond', v.node FROM "                                                 \
    "pg_catalog.json_to_recordset($1::pg_catalog.json) "                                           \
    "AS v(nsp pg_catalog.text, rel pg_catalog.text, key pg_catalog.text[], deleted "               \
    "pg_catalog.bool, t pg_catalog.int8, node pg_catalog.int8) JOIN pg_catalog.pg_namespace n ON " \
    "n.nspname = v.nsp JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = "      \
    "v.rel WHERE v.deleted = " deleted " ON CONFLICT DO NOTHING"
constexpr const char *kCopiedRowVersions =
    "INSERT INTO pgmesh.row_version " PGMESH_COPIED_VERSIONS("false");
constexpr const char *kCopiedTombstones =
    "INSERT INTO pgmesh.tombstone " PGMESH_COPIED_VERSIONS("true");
#undef PGMESH_COPIED_VERSIONS

class Join {
public:
    Join(std::string node_name, std::string node_dsn, std::string join_using_dsn)
        : node_name_(std::move(node_name)),
          node_dsn_(std::move(node_dsn)),
          join_using_dsn_(std::move(join_using_dsn)) {}

    uint64_t run() {
        inspect_target();
        // Never one the group used before, parted nodes' included.
        do id_ = new_node_id();
        while (std::find(taken_ids_.begin(), taken_ids_.end(), id_) != taken_ids_.end());
        // All steps in a subtransaction: after a failure it is rolled back
        // first (guard.hpp), then the slots and the target's row go.
        Subtransaction steps;
        try {
            step("join_announce_joining", &Join::announce_joining);
            step("join_create_remote_slots", &Join::create_remote_slots);
            step("join_wait_for_target", &Join::wait_for_target);
            step("join_create_target_slot", &Join::create_target_slot);
            step("join_read_snapshot", &Join::read_snapshot);
            step("join_copy_data", &Join::copy_data);
            step("join_create_local_slots", &Join::create_local_slots);
            step("join_write_catalog", &Join::write_catalog);
            step("join_announce_ready", &Join::announce_ready);
        } catch (...) {
            steps.rollback();
            drop_local_slots();
            undo_remote();
            throw;
        }
        steps.commit();
        return id_;
    }

private:
    // Each step's time goes to the log: where a slow join spends it.
    void step(const char *fault_point, void (Join::*action)()) {
        pg::call([&] { fault::point(fault_point); });
        TimestampTz start = pg::call([] { return GetCurrentTimestamp(); });
        (this->*action)();
        pg::call([&] {
            long ms = TimestampDifferenceMilliseconds(start, GetCurrentTimestamp());
            ereport(LOG, (errmsg("pgmesh join of node \"%s\": %s took %ld ms", node_name_.c_str(),
                                 fault_point + strlen("join_"), ms)));
        });
    }

    // The target must be a member; the other members are streamed from
    // directly.
    void inspect_target() {
        target_ = remote::connect(join_using_dsn_, false, "pgmesh join", 30);
        remote::Result ext = remote::exec(
            target_.get(), "SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'pgmesh'");
        if (remote::value(ext.get(), 0, 0) != "1")
            throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                            "the join target has no pgmesh extension", {},
                            "Join through a node of the group: its DSN goes in join_using_dsn.");
        // Held by this connection until the join ends, however it ends.
        remote::Result locked = remote::exec(
            target_.get(),
            "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('pgmesh join'))");
        if (remote::value(locked.get(), 0, 0) != "t")
            throw pg::Error(ERRCODE_OBJECT_IN_USE,
                            "another node is joining through the join target", {},
                            "Joins run one at a time; run this one again when that one is done.");
        remote::Result nodes =
            remote::exec(target_.get(),
                         "SELECT n.node_id, n.node_name, n.dsn, n.state, l.node_id IS NOT NULL "
                         "FROM pgmesh.node n LEFT JOIN pgmesh.local_node l USING (node_id)");
        std::optional<uint64_t> stale_attempt;
        for (int i = 0; i < PQntuples(nodes.get()); i++) {
            uint64_t id = std::stoull(*remote::value(nodes.get(), i, 0));
            std::string name = remote::value(nodes.get(), i, 1).value_or("");
            node::State state = state_of(nodes, i, 3);
            taken_ids_.push_back(id);
            if (state == node::State::kJoining) {
                // Ours, from an attempt whose undo could not reach the
                // target: no join holds the lock we hold, so it is dead.
                if (name == node_name_) {
                    stale_attempt = id;
                    continue;
                }
                throw pg::Error(ERRCODE_OBJECT_IN_USE, "node \"" + name + "\" is joining the group",
                                {},
                                "Joins run one at a time: wait for it, or if that join is dead, "
                                "remove it with pgmesh.part_node('" +
                                    name + "').");
            }
            if (name == node_name_)
                throw pg::Error(ERRCODE_DUPLICATE_OBJECT,
                                "node name \"" + node_name_ + "\" is already in use in this group",
                                {}, "Choose another node_name.");
            if (state == node::State::kParted) continue;
            if (remote::value(nodes.get(), i, 4) == "t")
                target_id_ = id;
            else
                members_.push_back(Member{id, *remote::value(nodes.get(), i, 2)});
        }
        if (!target_id_)
            throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                            "the join target is not a member of a pgmesh group", {},
                            "Run pgmesh.create_group() there first, or join through a member.");
        if (stale_attempt) clear_attempt(*stale_attempt);
        // The group's key seals pgmesh's messages (DDL, global lock).
        remote::Result key = remote::exec(
            target_.get(), "SELECT pg_catalog.encode(group_key, 'hex') FROM pgmesh.local_node");
        group_key_hex_ = remote::value(key.get(), 0, 0).value_or("");
    }

    void announce_joining() {
        remote::exec_params(target_.get(),
                            "INSERT INTO pgmesh.node (node_id, node_name, dsn, state, "
                            "node_number) SELECT $1, $2, $3, $4, "
                            "coalesce(max(node_number), 0) + 1 FROM pgmesh.node",
                            {std::to_string(id_), node_name_, node_dsn_,
                             std::string(node::name(node::State::kJoining))},
                            PGRES_COMMAND_OK);
        announced_ = true;
    }

    // What a failed attempt of this node left where its undo could not
    // reach: its slots on the members and its row on the target.
    void clear_attempt(uint64_t old_id) {
        for (const Member &m : members_)
            drop_remote_slot(RemoteSlot{m.dsn, node::slot_name(m.node_id, old_id)});
        drop_slot_on(target_.get(), node::slot_name(*target_id_, old_id));
        remote::exec_params(target_.get(), "DELETE FROM pgmesh.node WHERE node_id = $1",
                            {std::to_string(old_id)}, PGRES_COMMAND_OK);
    }

    void create_remote_slots() {
        for (Member &m : members_) {
            remote::Connection repl = remote::connect(m.dsn, true, "pgmesh join", 30);
            std::string slot = node::slot_name(m.node_id, id_);
            m.consistent_point =
                remote::create_logical_slot(repl.get(), slot, remote::SlotSnapshot::kNothing)
                    .consistent_point;
            remote_slots_.push_back(RemoteSlot{m.dsn, slot});
            // A change of m's own, committed after the slot's start: the
            // target's position for m passes the start once it applied it.
            remote::Connection sql = remote::connect(m.dsn, false, "pgmesh join", 30);
            remote::exec_params(sql.get(),
                                "SELECT pg_catalog.pg_logical_emit_message(true, $1, '')",
                                {std::string(mesh::kBarrierPrefix)});
        }
    }

    // The target's position for m, read now.
    uint64_t target_position(uint64_t member) {
        remote::Result r =
            remote::exec_params(target_.get(),
                                "SELECT remote_lsn FROM pg_catalog.pg_replication_origin_status "
                                "WHERE external_id = $1",
                                {node::origin_name(member)});
        return PQntuples(r.get()) ? lsn_of(remote::value(r.get(), 0, 0)) : 0;
    }

    void wait_for_target() {
        for (const Member &m : members_) {
            int waited_ms = 0;
            while (target_position(m.node_id) < m.consistent_point) {
                if (waited_ms >= kTargetCatchUpMs)
                    throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                                    "the join target has not applied the changes of node " +
                                        node::hex_id(m.node_id) + " up to " +
                                        walstream::format_lsn(m.consistent_point) + " within " +
                                        std::to_string(kTargetCatchUpMs / 1000) + " s",
                                    {},
                                    "See pgmesh.status on the join target; run the join again once "
                                    "it streams from that node.");
                pg::wait_latch(50);
                waited_ms += 50;
            }
        }
    }

    void create_target_slot() {
        PGconn *t = target_.get();
        remote::exec(t, "BEGIN", PGRES_COMMAND_OK);
        remote::exec(t, "SELECT pgmesh.hold_apply(30)");
        // The exported snapshot lives as long as this connection stays
        // idle, until the copy is done.
        target_repl_ = remote::connect(join_using_dsn_, true, "pgmesh join", 30);
        std::string slot = node::slot_name(*target_id_, id_);
        remote::CreatedSlot created =
            remote::create_logical_slot(target_repl_.get(), slot, remote::SlotSnapshot::kExport);
        remote_slots_.push_back(RemoteSlot{join_using_dsn_, slot});
        target_point_ = created.consistent_point;
        snapshot_ = created.snapshot;
        for (Member &m : members_) m.applied_at_target = target_position(m.node_id);
        remote::exec(t, "COMMIT", PGRES_COMMAND_OK);
    }

    void read_snapshot() {
        remote::exec(target_.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ", PGRES_COMMAND_OK);
        remote::exec(target_.get(),
                     "SET TRANSACTION SNAPSHOT " + remote::quote_literal(target_.get(), snapshot_),
                     PGRES_COMMAND_OK);
        snapshot_nodes_ = remote::exec(
            target_.get(), "SELECT node_id, node_name, dsn, state, node_number FROM pgmesh.node");
        snapshot_resolvers_ =
            remote::exec(target_.get(),
                         "SELECT table_schema, table_name, conflict_type, resolver FROM "
                         "pgmesh.conflict_resolver");
        remote::exec(target_.get(), "COMMIT", PGRES_COMMAND_OK);
    }

    void copy_data() { dump_restore::copy(join_using_dsn_, node_dsn_, snapshot_); }

    // The copy keeps each row's version, and the target's tombstones with
    // theirs (versions.hpp): a copied row wins or loses against a change
    // streamed in later exactly as it would have on the target. Read in the
    // copy's snapshot, a batch at a time; written after the local slots are
    // made (a transaction that wrote cannot make them).
    void copy_versions() {
        PGconn *t = target_.get();
        remote::exec(t, "BEGIN ISOLATION LEVEL REPEATABLE READ", PGRES_COMMAND_OK);
        remote::exec(t, "SET TRANSACTION SNAPSHOT " + remote::quote_literal(t, snapshot_),
                     PGRES_COMMAND_OK);
        remote::exec(t,
                     "DECLARE pgmesh_versions NO SCROLL CURSOR FOR SELECT pg_catalog.json_agg(v) "
                     "FROM (SELECT table_schema AS nsp, table_name AS rel, key, deleted, "
                     "(extract(epoch FROM commit_time) * 1000000)::pg_catalog.int8 AS t, node_id "
                     "AS node, pg_catalog.row_number() OVER () / 10000 AS batch FROM "
                     "pgmesh.versions_for_copy()) v GROUP BY batch",
                     PGRES_COMMAND_OK);
        for (;;) {
            remote::Result batch = remote::exec(t, "FETCH 1 FROM pgmesh_versions");
            if (PQntuples(batch.get()) == 0) break;
            spi::Param json = spi::text_or_null(remote::value(batch.get(), 0, 0));
            spi::query(kCopiedRowVersions, {json});
            spi::query(kCopiedTombstones, {json});
        }
        remote::exec(t, "COMMIT", PGRES_COMMAND_OK);
    }

    void create_local_slots() {
        for (int i = 0; i < PQntuples(snapshot_nodes_.get()); i++) {
            uint64_t peer = std::stoull(*remote::value(snapshot_nodes_.get(), i, 0));
            if (peer == id_ || state_of(snapshot_nodes_, i, 3) == node::State::kParted) continue;
            std::string slot = node::slot_name(id_, peer);
            spi::query("SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgmesh')",
                       {spi::text(slot)});
            local_slots_.push_back(slot);
        }
    }

    void write_catalog() {
        copy_versions();
        target_repl_.reset();  // the snapshot is no longer needed
        origins::advance(origins::find_or_create(node::origin_name(*target_id_)), target_point_);
        // Changes from m that the target had applied by the snapshot are in
        // the copy; stream the rest straight from m. The barrier made this
        // position at least our slot's start on m.
        for (const Member &m : members_)
            origins::advance(origins::find_or_create(node::origin_name(m.node_id)),
                             m.applied_at_target);
        write_as_copy();
        // Tables of a target that lacked them get the tombstone triggers.
        pg::call([] { tombstones::add_triggers_everywhere(); });
        auto column = [](const remote::Result &r, int row, int col) {
            return spi::text_or_null(remote::value(r.get(), row, col));
        };
        for (int i = 0; i < PQntuples(snapshot_nodes_.get()); i++)
            spi::query(
                "INSERT INTO pgmesh.node (node_id, node_name, dsn, state, node_number) "
                "VALUES ($1::pg_catalog.int8, $2, $3, $4, $5::pg_catalog.int4)",
                {column(snapshot_nodes_, i, 0), column(snapshot_nodes_, i, 1),
                 column(snapshot_nodes_, i, 2), column(snapshot_nodes_, i, 3),
                 column(snapshot_nodes_, i, 4)});
        for (int i = 0; i < PQntuples(snapshot_resolvers_.get()); i++)
            spi::query(
                "INSERT INTO pgmesh.conflict_resolver (table_schema, table_name, "
                "conflict_type, resolver) VALUES ($1, $2, $3, $4)",
                {column(snapshot_resolvers_, i, 0), column(snapshot_resolvers_, i, 1),
                 column(snapshot_resolvers_, i, 2), column(snapshot_resolvers_, i, 3)});
        spi::query(
            "INSERT INTO pgmesh.local_node (node_id, copied_until, group_key) "
            "VALUES ($1, pg_catalog.clock_timestamp(), pg_catalog.decode($2, 'hex'))",
            {spi::int8(static_cast<int64_t>(id_)), spi::text(group_key_hex_)});
    }

    void announce_ready() {
        remote::exec_params(target_.get(), "UPDATE pgmesh.node SET state = $2 WHERE node_id = $1",
                            {std::to_string(id_), std::string(node::name(node::State::kReady))},
                            PGRES_COMMAND_OK);
    }

    // Slots are not transactional: the ones created here stay unless dropped.
    // Runs after the steps' subtransaction was rolled back.
    void drop_local_slots() noexcept {
        for (const std::string &slot : local_slots_) {
            try {
                spi::query("SELECT pg_catalog.pg_drop_replication_slot($1)", {spi::text(slot)});
            } catch (const std::exception &) {
                // Best effort: the join already failed with the error that
                // matters, and the transaction's abort follows.
            }
        }
    }

    static void drop_slot_on(PGconn *conn, const std::string &slot) {
        remote::exec_params(conn,
                            "SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
                            "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                            {slot});
    }

    static void drop_remote_slot(const RemoteSlot &slot) noexcept {
        try {
            remote::Connection conn = remote::connect(slot.dsn, false, "pgmesh join cleanup", 10);
            drop_slot_on(conn.get(), slot.name);
        } catch (const std::exception &) {
            // Best effort: the join already failed with the error that
            // matters; the next attempt clears what is left.
        }
    }

    void undo_remote() noexcept {
        target_repl_.reset();  // a slot in use cannot be dropped
        for (const RemoteSlot &slot : remote_slots_) drop_remote_slot(slot);
        if (!announced_) return;
        try {
            if (PQtransactionStatus(target_.get()) != PQTRANS_IDLE)
                remote::exec(target_.get(), "ROLLBACK", PGRES_COMMAND_OK);
            remote::exec_params(target_.get(), "DELETE FROM pgmesh.node WHERE node_id = $1",
                                {std::to_string(id_)}, PGRES_COMMAND_OK);
        } catch (const std::exception &) {
            // Best effort, as above.
        }
    }

    const std::string node_name_;
    const std::string node_dsn_;
    const std::string join_using_dsn_;
    uint64_t id_ = 0;
    remote::Connection target_;       // SQL connection to the join target
    remote::Connection target_repl_;  // holds the exported snapshot
    std::optional<uint64_t> target_id_;
    std::string group_key_hex_;    // the group's key, from the target
    std::vector<Member> members_;  // ready members other than the target
    bool announced_ = false;
    std::vector<RemoteSlot> remote_slots_;
    std::vector<std::string> local_slots_;
    uint64_t target_point_ = 0;
    std::string snapshot_;
    remote::Result snapshot_nodes_;
    remote::Result snapshot_resolvers_;
    std::vector<uint64_t> taken_ids_;  // every node id the group has used
};

}  // namespace

uint64_t join_group(const std::string &node_name, const std::string &node_dsn,
                    const std::string &join_using_dsn) {
    check_server_setup();
    check_node_name(node_name);
    remote::check_dsn(node_dsn, "node_dsn");
    remote::check_dsn(join_using_dsn, "join_using_dsn");
    check_not_a_node();
    check_database_empty();
    check_dsn_reaches_self(node_dsn);
    uint64_t id = Join(node_name, node_dsn, join_using_dsn).run();
    start_manager_at_commit();
    return id;
}

}  // namespace pgmesh::node_admin
