#include "node_admin.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <vector>

#include "catalog.hpp"
#include "conninfo.hpp"
#include "fault.hpp"
#include "guard.hpp"
#include "remote.hpp"
#include "shmem.hpp"
#include "spi.hpp"
#include "subprocess.hpp"
#include "walstream.hpp"
#include "workers.hpp"
#include "xact_end.hpp"

namespace pgmesh::node_admin {

bool loaded_at_startup = false;

namespace {

uint64_t new_node_id() {
    uint64_t id = 0;
    while (id == 0) {
        if (!pg::call([&] { return pg_strong_random(&id, sizeof id); }))
            throw pg::Error(ERRCODE_INTERNAL_ERROR, "could not generate a random node id");
        id &= static_cast<uint64_t>(INT64_MAX);  // stored as a positive bigint
    }
    return id;
}

void check_node_name(const std::string &name) {
    bool ok =
        !name.empty() && name.size() <= 48 && std::all_of(name.begin(), name.end(), [](char c) {
            return isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
        });
    if (!ok)
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE, "invalid node name \"" + name + "\"", {},
                        "Use 1 to 48 letters, digits, '_', '.' or '-'.");
}

void check_not_a_node() {
    catalog::Nodes nodes = catalog::read_nodes();
    if (const catalog::Node *local = nodes.local())
        throw pg::Error(ERRCODE_DUPLICATE_OBJECT,
                        "this database is already pgmesh node \"" + local->name + "\"", {},
                        "A database joins one group once; use another database for another "
                        "node.");
}

// The DSN a node gives for itself must lead back to this very database:
// peers will use it to stream from us.
void check_dsn_reaches_self(const std::string &dsn) {
    remote::check_dsn(dsn, "node_dsn");
    remote::Connection conn = remote::connect(dsn, false, "pgmesh check", 10);
    remote::Result res = remote::exec(
        conn.get(), "SELECT system_identifier::text, current_database() FROM pg_control_system()");
    std::string sysid = pg::call(
        [] { return static_cast<const char *>(psprintf(UINT64_FORMAT, GetSystemIdentifier())); });
    std::string dbname =
        pg::call([] { return static_cast<const char *>(get_database_name(MyDatabaseId)); });
    if (remote::value(res.get(), 0, 0) != sysid || remote::value(res.get(), 0, 1) != dbname)
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE,
                        "node_dsn \"" + remote::mask_dsn(dsn) + "\" does not lead to this database",
                        {}, "Give the DSN that other nodes use to reach this database.");
}

uint64_t lsn_of(const std::optional<std::string> &text) {
    if (!text) return 0;
    return walstream::parse_lsn(*text).value_or(0);
}

std::string bindir() {
    return pg::call([] {
        char *dir = pstrdup(my_exec_path);
        get_parent_directory(dir);
        return static_cast<const char *>(dir);
    });
}

// A file that is removed when it goes out of scope.
class TempFile {
public:
    explicit TempFile(std::string path) : path_(std::move(path)) {}
    ~TempFile() {
        if (!path_.empty()) unlink(path_.c_str());
    }
    TempFile(TempFile &&other) noexcept : path_(std::exchange(other.path_, {})) {}
    TempFile &operator=(TempFile &&) = delete;
    TempFile(const TempFile &) = delete;
    TempFile &operator=(const TempFile &) = delete;
    const std::string &path() const { return path_; }

private:
    std::string path_;
};

// Writes a new file that only the server's OS user can read.
void write_private_file(const std::string &path, const std::string &contents) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 &&
              write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size());
    if (fd >= 0) ok = close(fd) == 0 && ok;
    if (!ok)
        throw pg::Error(ERRCODE_IO_ERROR, "could not write \"" + path + "\": " + strerror(errno));
}

// How pg_dump or pg_restore connects to `dsn`: its secrets go through the
// program's environment or a private service file, never its command line.
struct ChildDsn {
    std::string conninfo;  // for --dbname
    std::vector<std::pair<std::string, std::string>> environment;
    std::optional<TempFile> service_file;

    // A server-wide PGSERVICE would fill in options (a password, say) before
    // the environment does: the program uses what the DSN says.
    subprocess::Program program(std::vector<std::string> argv) const {
        return subprocess::Program{std::move(argv), environment, {"PGSERVICE"}};
    }
};

ChildDsn child_dsn(const std::string &dsn, const std::string &temp_prefix, const char *what) {
    std::string service = "pgmesh_join";
    conninfo::ChildConnection split;
    try {
        split = conninfo::for_child(dsn, service);
    } catch (const std::invalid_argument &e) {
        throw pg::Error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            std::string("cannot pass ") + what + " to pg_dump and pg_restore: " + e.what(), {},
            "Give the secret in a way libpq reads from a file, e.g. a password file.");
    }
    ChildDsn out{split.conninfo, split.environment, std::nullopt};
    if (!split.service_file.empty()) {
        out.service_file.emplace(temp_prefix + "." + what + ".service");
        write_private_file(out.service_file->path(), split.service_file);
        out.environment.emplace_back("PGSERVICEFILE", out.service_file->path());
    }
    return out;
}

// Runs a program to its end; throws with its output when it fails.
std::string run_program(const std::string &what, const subprocess::Program &program) {
    subprocess::Outcome outcome = subprocess::run(program);
    if (outcome.exit_code != 0)
        throw pg::Error(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                        what + " failed (exit status " + std::to_string(outcome.exit_code) + ")",
                        outcome.err + outcome.out,
                        "See the detail; the join target's schema must restore on this node.");
    return outcome.out;
}

// pg_restore's table of contents without the pgmesh extension and schema,
// which this node already has.
std::string without_pgmesh(const std::string &list) {
    std::string kept;
    size_t start = 0;
    while (start < list.size()) {
        size_t end = list.find('\n', start);
        if (end == std::string::npos) end = list.size();
        std::string_view line(list.data() + start, end - start);
        bool pgmesh_object = false;
        for (std::string_view object : {" EXTENSION - pgmesh", " SCHEMA - pgmesh"}) {
            size_t at = line.find(object);
            size_t after = at + object.size();
            if (at != std::string_view::npos && (after == line.size() || line[after] == ' '))
                pgmesh_object = true;
        }
        if (!pgmesh_object) {
            kept.append(line);
            kept += '\n';
        }
        start = end + 1;
    }
    return kept;
}

// Schema and data of the join target at `snapshot`, restored into this node
// (whose DSN is node_dsn) without the pgmesh extension itself.
void copy_target(const std::string &join_using_dsn, const std::string &node_dsn,
                 const std::string &snapshot) {
    std::string prefix = pg::call([] {
        MakePGDirectory(psprintf("%s/pgsql_tmp", DataDir));
        return static_cast<const char *>(
            psprintf("%s/pgsql_tmp/pgmesh_join_%d", DataDir, MyProcPid));
    });
    ChildDsn target = child_dsn(join_using_dsn, prefix, "join_using_dsn");
    ChildDsn local = child_dsn(node_dsn, prefix, "node_dsn");
    TempFile dump(prefix + ".dump");
    TempFile list(prefix + ".list");
    std::string bin = bindir();
    run_program("pg_dump of the join target",
                target.program({bin + "/pg_dump", "--format=custom", "--no-comments",
                                "--snapshot=" + snapshot, "--file=" + dump.path(),
                                "--dbname=" + target.conninfo}));
    std::string contents =
        run_program("listing the dump", {{bin + "/pg_restore", "--list", dump.path()}, {}, {}});
    write_private_file(list.path(), without_pgmesh(contents));
    run_program(
        "pg_restore into this node",
        local.program({bin + "/pg_restore", "--exit-on-error", "--single-transaction",
                       "--use-list=" + list.path(), "--dbname=" + local.conninfo, dump.path()}));
}

void set_origin(uint64_t provider, uint64_t lsn) {
    std::string name = catalog::origin_name(provider);
    pg::call([&] {
        RepOriginId origin = replorigin_by_name(name.c_str(), true);
        if (origin == InvalidRepOriginId) origin = replorigin_create(name.c_str());
        LockRelationOid(ReplicationOriginRelationId, RowExclusiveLock);
        replorigin_advance(origin, lsn, InvalidXLogRecPtr, true, true);
    });
}

void reset_copy_origin(bool) {
    replorigin_session_reset();
    replorigin_session_origin = InvalidRepOriginId;
}

// Marks the rest of this transaction's writes with the "pgmesh_copy" origin
// until it ends.
void write_as_copy() {
    pg::call([] {
        RepOriginId origin = replorigin_by_name("pgmesh_copy", true);
        if (origin == InvalidRepOriginId) origin = replorigin_create("pgmesh_copy");
        replorigin_session_setup(origin);
        replorigin_session_origin = origin;
    });
    xact_end::at_end(reset_copy_origin);
}

struct PeerSlot {
    uint64_t node_id;
    std::string dsn;
    uint64_t consistent_point;
};

// Replication commands take no parameters: the slot name is quoted by libpq.
std::string create_slot_command(PGconn *conn, const std::string &slot, const char *snapshot) {
    return "CREATE_REPLICATION_SLOT " + remote::quote_identifier(conn, slot) +
           " LOGICAL pgmesh (SNAPSHOT '" + snapshot + "')";
}

void drop_remote_slot(const std::string &dsn, const std::string &slot) {
    try {
        remote::Connection conn = remote::connect(dsn, false, "pgmesh join cleanup", 10);
        remote::exec_params(conn.get(),
                            "SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
                            "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                            {slot});
    } catch (const std::exception &) {
        // Best effort: the join already failed with the error that matters.
    }
}

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

}  // namespace

void check_server_setup() {
    pg::call([] {
        if (!loaded_at_startup)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pgmesh is not loaded through shared_preload_libraries"),
                            errhint("Add pgmesh to shared_preload_libraries in postgresql.conf "
                                    "and restart the server.")));
        if (wal_level < WAL_LEVEL_LOGICAL)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pgmesh needs wal_level = logical"),
                            errhint("Set wal_level = logical in postgresql.conf and restart "
                                    "the server.")));
        if (!track_commit_timestamp)
            ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
                            errmsg("pgmesh needs track_commit_timestamp = on"),
                            errdetail("Conflict resolution compares commit timestamps."),
                            errhint("Set track_commit_timestamp = on in postgresql.conf and "
                                    "restart the server.")));
        if (!superuser())
            ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
                            errmsg("only superusers can change pgmesh membership")));
    });
}

uint64_t create_group(const std::string &node_name, const std::string &node_dsn) {
    check_server_setup();
    check_node_name(node_name);
    remote::check_dsn(node_dsn, "node_dsn");
    check_not_a_node();
    check_dsn_reaches_self(node_dsn);
    uint64_t id = new_node_id();
    spi::query(
        "INSERT INTO pgmesh.node (node_id, node_name, dsn, state) VALUES ($1, $2, $3, 'ready')",
        {spi::int8(static_cast<int64_t>(id)), spi::text(node_name), spi::text(node_dsn)});
    spi::query("INSERT INTO pgmesh.local_node (node_id) VALUES ($1)",
               {spi::int8(static_cast<int64_t>(id))});
    start_manager_at_commit();
    return id;
}

uint64_t join_group(const std::string &node_name, const std::string &node_dsn,
                    const std::string &join_using_dsn) {
    check_server_setup();
    check_node_name(node_name);
    remote::check_dsn(node_dsn, "node_dsn");
    remote::check_dsn(join_using_dsn, "join_using_dsn");
    check_not_a_node();
    check_database_empty();
    check_dsn_reaches_self(node_dsn);

    remote::Connection target = remote::connect(join_using_dsn, false, "pgmesh join", 30);
    remote::Result ext = remote::exec(
        target.get(), "SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'pgmesh'");
    if (remote::value(ext.get(), 0, 0) != "1")
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "the join target has no pgmesh extension", {},
                        "Join through a node of the group: its DSN goes in join_using_dsn.");
    remote::Result tnodes =
        remote::exec(target.get(),
                     "SELECT n.node_id, n.node_name, n.dsn, n.state, l.node_id IS NOT NULL "
                     "FROM pgmesh.node n LEFT JOIN pgmesh.local_node l USING (node_id)");
    std::optional<uint64_t> target_id;
    std::vector<PeerSlot> peers;  // other members, to stream from directly
    for (int i = 0; i < PQntuples(tnodes.get()); i++) {
        uint64_t id = std::stoull(*remote::value(tnodes.get(), i, 0));
        if (remote::value(tnodes.get(), i, 1) == node_name)
            throw pg::Error(ERRCODE_DUPLICATE_OBJECT,
                            "node name \"" + node_name + "\" is already in use in this group", {},
                            "Choose another node_name.");
        if (remote::value(tnodes.get(), i, 3) == "parted") continue;
        if (remote::value(tnodes.get(), i, 4) == "t")
            target_id = id;
        else if (remote::value(tnodes.get(), i, 3) == "ready")
            peers.push_back(PeerSlot{id, *remote::value(tnodes.get(), i, 2), 0});
    }
    if (!target_id)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "the join target is not a member of a pgmesh group", {},
                        "Run pgmesh.create_group() there first, or join through a member.");

    uint64_t id = new_node_id();
    // 1. Announce the node as joining: the group learns of it, but no one
    //    streams from it before it is ready.
    remote::exec_params(target.get(),
                        "INSERT INTO pgmesh.node (node_id, node_name, dsn, state) "
                        "VALUES ($1, $2, $3, 'joining')",
                        {std::to_string(id), node_name, node_dsn}, PGRES_COMMAND_OK);
    std::vector<std::string> created_remote_slots;  // "dsn\nslot", for cleanup
    try {
        // 2. Slots on the other members first, then on the target with an
        //    exported snapshot: the copy below is taken at that snapshot.
        for (PeerSlot &p : peers) {
            remote::Connection repl = remote::connect(p.dsn, true, "pgmesh join", 30);
            std::string slot = catalog::slot_name(p.node_id, id);
            remote::Result r =
                remote::exec(repl.get(), create_slot_command(repl.get(), slot, "nothing"));
            created_remote_slots.push_back(p.dsn + "\n" + slot);
            p.consistent_point = lsn_of(remote::value(r.get(), 0, 1));
        }
        std::string target_slot = catalog::slot_name(*target_id, id);
        remote::Connection repl = remote::connect(join_using_dsn, true, "pgmesh join", 30);
        remote::Result created =
            remote::exec(repl.get(), create_slot_command(repl.get(), target_slot, "export"));
        created_remote_slots.push_back(join_using_dsn + "\n" + target_slot);
        uint64_t target_point = lsn_of(remote::value(created.get(), 0, 1));
        std::string snapshot = remote::value(created.get(), 0, 2).value_or("");

        // 3. The node catalog and the target's progress from each peer, as
        //    of the snapshot.
        remote::exec(target.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ", PGRES_COMMAND_OK);
        remote::exec(target.get(),
                     "SET TRANSACTION SNAPSHOT " + remote::quote_literal(target.get(), snapshot),
                     PGRES_COMMAND_OK);
        remote::Result snap_nodes =
            remote::exec(target.get(), "SELECT node_id, node_name, dsn, state FROM pgmesh.node");
        remote::Result snap_resolvers =
            remote::exec(target.get(),
                         "SELECT table_schema, table_name, conflict_type, resolver FROM "
                         "pgmesh.conflict_resolver");
        remote::Result progress = remote::exec(
            target.get(), "SELECT external_id, remote_lsn FROM pg_replication_origin_status");
        remote::exec(target.get(), "COMMIT", PGRES_COMMAND_OK);

        // 4. Schema and data at the snapshot, restored here without the
        //    pgmesh extension itself (we already have it).
        pg::call([] { fault::hold_if_armed("join_before_dump"); });
        copy_target(join_using_dsn, node_dsn, snapshot);
        repl.reset();  // the snapshot is no longer needed

        // 5. Slots here for every member, before anything is written here,
        //    so that no change made on this node from now on is missed.
        for (int i = 0; i < PQntuples(snap_nodes.get()); i++) {
            uint64_t peer = std::stoull(*remote::value(snap_nodes.get(), i, 0));
            if (peer == id || remote::value(snap_nodes.get(), i, 3) == "parted") continue;
            spi::query("SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgmesh')",
                       {spi::text(catalog::slot_name(id, peer))});
        }

        // 6. This node's origins set where its copy ends for each member,
        //    and the catalog as the target had it.
        set_origin(*target_id, target_point);
        for (const PeerSlot &p : peers) {
            // Changes from p that the target had applied by the snapshot are
            // in the copy; stream the rest straight from p.
            uint64_t applied_at_target = 0;
            for (int i = 0; i < PQntuples(progress.get()); i++)
                if (remote::value(progress.get(), i, 0) == catalog::origin_name(p.node_id))
                    applied_at_target = lsn_of(remote::value(progress.get(), i, 1));
            set_origin(p.node_id, std::max(p.consistent_point, applied_at_target));
        }
        // The copied rows are the group's, not news from this node: written
        // under an origin, our output plugin keeps them here.
        write_as_copy();
        auto column = [](const remote::Result &r, int row, int col) {
            return spi::text_or_null(remote::value(r.get(), row, col));
        };
        for (int i = 0; i < PQntuples(snap_nodes.get()); i++)
            spi::query(
                "INSERT INTO pgmesh.node (node_id, node_name, dsn, state) "
                "VALUES ($1::pg_catalog.int8, $2, $3, $4)",
                {column(snap_nodes, i, 0), column(snap_nodes, i, 1), column(snap_nodes, i, 2),
                 column(snap_nodes, i, 3)});
        for (int i = 0; i < PQntuples(snap_resolvers.get()); i++)
            spi::query(
                "INSERT INTO pgmesh.conflict_resolver (table_schema, table_name, "
                "conflict_type, resolver) VALUES ($1, $2, $3, $4)",
                {column(snap_resolvers, i, 0), column(snap_resolvers, i, 1),
                 column(snap_resolvers, i, 2), column(snap_resolvers, i, 3)});
        spi::query(
            "INSERT INTO pgmesh.local_node (node_id, copied_until) "
            "VALUES ($1, pg_catalog.clock_timestamp())",
            {spi::int8(static_cast<int64_t>(id))});

        // 7. Ready: the target's update reaches every member (and us, through
        //    our new stream from it).
        remote::exec_params(target.get(),
                            "UPDATE pgmesh.node SET state = 'ready' WHERE node_id = $1",
                            {std::to_string(id)}, PGRES_COMMAND_OK);
    } catch (...) {
        for (const std::string &entry : created_remote_slots) {
            size_t nl = entry.rfind('\n');
            drop_remote_slot(entry.substr(0, nl), entry.substr(nl + 1));
        }
        try {
            if (PQtransactionStatus(target.get()) != PQTRANS_IDLE)
                remote::exec(target.get(), "ROLLBACK", PGRES_COMMAND_OK);
            remote::exec_params(target.get(), "DELETE FROM pgmesh.node WHERE node_id = $1",
                                {std::to_string(id)}, PGRES_COMMAND_OK);
        } catch (const std::exception &) {
            // Best effort, as above.
        }
        throw;
    }
    start_manager_at_commit();
    return id;
}

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

namespace {

// A logical slot on this node, read from shared memory: no catalog access,
// so the waits work for callers who may not read pgmesh's catalogs.
struct LocalSlot {
    bool exists;  // SearchNamedReplicationSlot finds only slots in use
    bool active;
    XLogRecPtr confirmed_flush;
};

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

}  // namespace

bool wait_for_ready(int timeout_seconds) {
    return wait_until(timeout_seconds, [] {
        catalog::Nodes nodes = catalog::read_nodes();
        const catalog::Node *local = &nodes.require_local();
        if (local->state != "ready") return false;
        for (const catalog::Node &peer : nodes.all) {
            if (peer.is_local || peer.state != "ready") continue;
            // Our apply worker streams from the peer, and the peer's streams
            // from our slot.
            if (!local_slot(catalog::slot_name(local->id, peer.id)).active) return false;
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
        if (!peer.is_local && peer.state != "parted")
            slots.push_back(catalog::slot_name(local->id, peer.id));
    return wait_until(timeout_seconds, [&] {
        return std::all_of(slots.begin(), slots.end(), [&](const std::string &name) {
            LocalSlot slot = local_slot(name);
            return slot.exists && slot.confirmed_flush >= target;
        });
    });
}

void set_apply_paused(bool paused) {
    check_server_setup();
    catalog::read_nodes().require_local();
    pg::call([&] {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        shmem::DatabaseSlot *d = shmem::database_slot(MyDatabaseId, true);
        if (d) d->apply_paused = paused;
        LWLockRelease(shmem::state().lock);
        shmem::wake_database(MyDatabaseId);
    });
}

namespace {
void request_manager(bool committed) {
    if (committed) workers::request_manager(MyDatabaseId);
}
}  // namespace

void start_manager_at_commit() {
    xact_end::at_end(request_manager);
}

}  // namespace pgmesh::node_admin
