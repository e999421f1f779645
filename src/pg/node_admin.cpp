#include "node_admin.hpp"

#include <algorithm>
#include <functional>
#include <optional>
#include <vector>

#include "catalog.hpp"
#include "guard.hpp"
#include "remote.hpp"
#include "shmem.hpp"
#include "walstream.hpp"
#include "workers.hpp"
#include "xact_end.hpp"

namespace pgmesh::node_admin {

bool loaded_at_startup = false;

namespace {

using Rows = std::vector<std::vector<std::optional<std::string>>>;

// Runs SQL through SPI in the current transaction; text results.
Rows spi(const std::string &sql) {
    Rows rows;
    pg::call([&] {
        // Workers have no statement snapshot of their own.
        bool push_snapshot = !ActiveSnapshotSet();
        if (push_snapshot) PushActiveSnapshot(GetTransactionSnapshot());
        SPI_connect();
        int rc = SPI_execute(sql.c_str(), false, 0);
        if (rc < 0) elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
        for (uint64 i = 0; i < SPI_processed && SPI_tuptable; i++) {
            rows.emplace_back();
            for (int c = 1; c <= SPI_tuptable->tupdesc->natts; c++) {
                char *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, c);
                rows.back().push_back(v ? std::optional<std::string>(v) : std::nullopt);
            }
        }
        SPI_finish();
        if (push_snapshot) PopActiveSnapshot();
    });
    return rows;
}

std::string literal(const std::string &s) {
    return pg::call([&] { return static_cast<const char *>(quote_literal_cstr(s.c_str())); });
}

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

std::string shell_quote(const std::string &s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'')
            out += "'\\''";
        else
            out += c;
    }
    return out + "'";
}

// Runs a command with the password (if any) in PGPASSWORD, never on its
// command line; throws with the command's output when it fails.
void run_program(const std::string &what, const std::string &command,
                 const std::optional<std::string> &password) {
    if (password) setenv("PGPASSWORD", password->c_str(), 1);
    std::string output;
    int status = pg::call([&] {
        FILE *pipe = OpenPipeStream((command + " 2>&1").c_str(), "r");
        if (!pipe) return -1;
        char buf[1024];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
        return ClosePipeStream(pipe);
    });
    if (password) unsetenv("PGPASSWORD");
    if (status != 0)
        throw pg::Error(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, what + " failed", output,
                        "See the detail; the join target's schema must restore on this node.");
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

std::string create_slot_command(const std::string &slot, const char *snapshot) {
    return "CREATE_REPLICATION_SLOT \"" + slot + "\" LOGICAL pgmesh (SNAPSHOT '" + snapshot + "')";
}

void drop_remote_slot(const std::string &dsn, const std::string &slot) {
    try {
        remote::Connection conn = remote::connect(dsn, false, "pgmesh join cleanup", 10);
        remote::exec(conn.get(),
                     "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE slot_name = " +
                         remote::quote_literal(slot));
    } catch (const std::exception &) {
        // Best effort: the join already failed with the error that matters.
    }
}

void check_database_empty() {
    Rows rows =
        spi("SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
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
    spi("INSERT INTO pgmesh.node (node_id, node_name, dsn, state) VALUES (" + std::to_string(id) +
        ", " + literal(node_name) + ", " + literal(node_dsn) + ", 'ready')");
    spi("INSERT INTO pgmesh.local_node (node_id) VALUES (" + std::to_string(id) + ")");
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
    remote::exec(target.get(),
                 "INSERT INTO pgmesh.node (node_id, node_name, dsn, state) VALUES (" +
                     std::to_string(id) + ", " + remote::quote_literal(node_name) + ", " +
                     remote::quote_literal(node_dsn) + ", 'joining')",
                 PGRES_COMMAND_OK);
    std::vector<std::string> created_remote_slots;  // "dsn\nslot", for cleanup
    try {
        // 2. Slots on the other members first, then on the target with an
        //    exported snapshot: the copy below is taken at that snapshot.
        for (PeerSlot &p : peers) {
            remote::Connection repl = remote::connect(p.dsn, true, "pgmesh join", 30);
            std::string slot = catalog::slot_name(p.node_id, id);
            remote::Result r = remote::exec(repl.get(), create_slot_command(slot, "nothing"));
            created_remote_slots.push_back(p.dsn + "\n" + slot);
            p.consistent_point = lsn_of(remote::value(r.get(), 0, 1));
        }
        std::string target_slot = catalog::slot_name(*target_id, id);
        remote::Connection repl = remote::connect(join_using_dsn, true, "pgmesh join", 30);
        remote::Result created =
            remote::exec(repl.get(), create_slot_command(target_slot, "export"));
        created_remote_slots.push_back(join_using_dsn + "\n" + target_slot);
        uint64_t target_point = lsn_of(remote::value(created.get(), 0, 1));
        std::string snapshot = remote::value(created.get(), 0, 2).value_or("");

        // 3. The node catalog and the target's progress from each peer, as
        //    of the snapshot.
        remote::exec(target.get(), "BEGIN ISOLATION LEVEL REPEATABLE READ", PGRES_COMMAND_OK);
        remote::exec(target.get(), "SET TRANSACTION SNAPSHOT " + remote::quote_literal(snapshot),
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
        auto [target_conninfo, target_password] = remote::split_password(join_using_dsn);
        auto [local_conninfo, local_password] = remote::split_password(node_dsn);
        std::string dump = pg::call([] {
            return static_cast<const char *>(
                psprintf("%s/pgsql_tmp/pgmesh_join_%d.dump", DataDir, MyProcPid));
        });
        pg::call([] { MakePGDirectory(psprintf("%s/pgsql_tmp", DataDir)); });
        std::string bin = bindir();
        run_program("pg_dump of the join target",
                    shell_quote(bin + "/pg_dump") + " --format=custom --no-comments --snapshot=" +
                        shell_quote(snapshot) + " --file=" + shell_quote(dump) +
                        " --dbname=" + shell_quote(target_conninfo),
                    target_password);
        repl.reset();  // the snapshot is no longer needed
        std::string list = dump + ".list";
        run_program("listing the dump",
                    shell_quote(bin + "/pg_restore") + " --list " + shell_quote(dump) +
                        " | grep -v -E ' (EXTENSION|SCHEMA) - pgmesh( |$)' > " + shell_quote(list),
                    std::nullopt);
        run_program("pg_restore into this node",
                    shell_quote(bin + "/pg_restore") + " --exit-on-error --single-transaction " +
                        "--use-list=" + shell_quote(list) +
                        " --dbname=" + shell_quote(local_conninfo) + " " + shell_quote(dump),
                    local_password);
        unlink(dump.c_str());
        unlink(list.c_str());

        // 5. Slots here for every member, before anything is written here,
        //    so that no change made on this node from now on is missed.
        for (int i = 0; i < PQntuples(snap_nodes.get()); i++) {
            uint64_t peer = std::stoull(*remote::value(snap_nodes.get(), i, 0));
            if (peer == id || remote::value(snap_nodes.get(), i, 3) == "parted") continue;
            spi("SELECT pg_catalog.pg_create_logical_replication_slot(" +
                literal(catalog::slot_name(id, peer)) + ", 'pgmesh')");
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
        for (int i = 0; i < PQntuples(snap_nodes.get()); i++) {
            spi("INSERT INTO pgmesh.node (node_id, node_name, dsn, state) VALUES (" +
                *remote::value(snap_nodes.get(), i, 0) + ", " +
                literal(*remote::value(snap_nodes.get(), i, 1)) + ", " +
                literal(*remote::value(snap_nodes.get(), i, 2)) + ", " +
                literal(*remote::value(snap_nodes.get(), i, 3)) + ")");
        }
        for (int i = 0; i < PQntuples(snap_resolvers.get()); i++) {
            std::string row;
            for (int c = 0; c < 4; c++)
                row += (c ? ", " : "") + literal(*remote::value(snap_resolvers.get(), i, c));
            spi("INSERT INTO pgmesh.conflict_resolver VALUES (" + row + ")");
        }
        spi("INSERT INTO pgmesh.local_node (node_id, copied_until) VALUES (" + std::to_string(id) +
            ", clock_timestamp())");

        // 7. Ready: the target's update reaches every member (and us, through
        //    our new stream from it).
        remote::exec(target.get(),
                     "UPDATE pgmesh.node SET state = 'ready' WHERE node_id = " + std::to_string(id),
                     PGRES_COMMAND_OK);
    } catch (...) {
        for (const std::string &entry : created_remote_slots) {
            size_t nl = entry.rfind('\n');
            drop_remote_slot(entry.substr(0, nl), entry.substr(nl + 1));
        }
        try {
            if (PQtransactionStatus(target.get()) != PQTRANS_IDLE)
                remote::exec(target.get(), "ROLLBACK", PGRES_COMMAND_OK);
            remote::exec(target.get(),
                         "DELETE FROM pgmesh.node WHERE node_id = " + std::to_string(id),
                         PGRES_COMMAND_OK);
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

bool wait_for_ready(int timeout_seconds) {
    return wait_until(timeout_seconds, [] {
        catalog::Nodes nodes = catalog::read_nodes();
        const catalog::Node *local = &nodes.require_local();
        if (local->state != "ready") return false;
        for (const catalog::Node &peer : nodes.all) {
            if (peer.is_local || peer.state != "ready") continue;
            // Our apply worker streams from the peer, and the peer's streams
            // from our slot.
            Rows active =
                spi("SELECT count(*) FROM pg_catalog.pg_replication_slots "
                    "WHERE active AND slot_name = " +
                    literal(catalog::slot_name(local->id, peer.id)));
            if (active.at(0).at(0) != "1") return false;
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
    std::string slots;
    for (const catalog::Node &peer : nodes.all) {
        if (peer.is_local || peer.state == "parted") continue;
        slots += (slots.empty() ? "" : ", ") + literal(catalog::slot_name(local->id, peer.id));
    }
    if (slots.empty()) return true;
    std::string lsn = literal(walstream::format_lsn(target));
    std::string sql =
        "SELECT count(*) FILTER (WHERE confirmed_flush_lsn IS NULL OR confirmed_flush_lsn < " +
        lsn + "::pg_lsn) FROM (SELECT unnest(ARRAY[" + slots +
        "]) AS slot_name) want LEFT JOIN pg_catalog.pg_replication_slots USING (slot_name)";
    return wait_until(timeout_seconds, [&] { return spi(sql).at(0).at(0) == "0"; });
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
