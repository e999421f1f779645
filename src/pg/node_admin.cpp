#include "node_admin.hpp"

#include <algorithm>

#include "catalog.hpp"
#include "group_key.hpp"
#include "guard.hpp"
#include "node.hpp"
#include "remote.hpp"
#include "shmem.hpp"
#include "tombstones.hpp"
#include "spi.hpp"
#include "workers.hpp"
#include "xact_end.hpp"

namespace pgmesh::node_admin {

bool loaded_at_startup = false;

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
        "INSERT INTO pgmesh.node (node_id, node_name, dsn, state, node_number) "
        "VALUES ($1, $2, $3, $4, 1)",
        {spi::int8(static_cast<int64_t>(id)), spi::text(node_name), spi::text(node_dsn),
         spi::text(node::name(node::State::kReady))});
    spi::query(
        "INSERT INTO pgmesh.local_node (node_id, group_key) "
        "VALUES ($1, pg_catalog.decode($2, 'hex'))",
        {spi::int8(static_cast<int64_t>(id)), spi::text(group_key::generate_hex())});
    pg::call([] { tombstones::add_triggers_everywhere(); });
    start_manager_at_commit();
    return id;
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

namespace {
void wake_database_if_committed(bool committed) {
    if (committed) shmem::wake_database(MyDatabaseId);
}
}  // namespace

void wake_manager_at_commit() {
    xact_end::at_end(wake_database_if_committed);
}

}  // namespace pgmesh::node_admin
