// Wrong use of the SQL surface fails with an error that names the fix.
#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

class SetupErrorTest : public MeshTest {
protected:
    // Database and extension on each node, no group yet.
    void start_plain(int nodes, std::vector<local::Setting> settings = {},
                     std::string preload = "pgmesh") {
        MeshOptions options{.nodes = nodes, .form_mesh = false};
        options.settings = std::move(settings);
        options.shared_preload_libraries = std::move(preload);
        start_cluster(options);
        for (int n = 1; n <= nodes; n++) exec(n, "CREATE EXTENSION pgmesh");
    }
    std::string create_group_sql(int node, const std::string &name) {
        return "SELECT pgmesh.create_group('" + name + "', '" + dsn(node) + "')";
    }
    std::string join_sql(int node, const std::string &name, int via) {
        return "SELECT pgmesh.join_group('" + name + "', '" + dsn(node) + "', '" + dsn(via) + "')";
    }
};

TEST_F(SetupErrorTest, MissingPreloadIsNamed) {
    start_plain(1, {}, "");
    pq::Error e = expect_error(1, create_group_sql(1, "n1"), "55000", "shared_preload_libraries");
    EXPECT_NE(e.hint().find("shared_preload_libraries"), std::string::npos);
}

TEST_F(SetupErrorTest, WalLevelBelowLogicalIsNamed) {
    start_plain(1, {{"wal_level", "replica"}});
    pq::Error e = expect_error(1, create_group_sql(1, "n1"), "55000", "wal_level");
    EXPECT_NE(e.hint().find("wal_level = logical"), std::string::npos);
}

TEST_F(SetupErrorTest, TrackCommitTimestampOffIsNamed) {
    start_plain(1, {{"track_commit_timestamp", "off"}});
    pq::Error e = expect_error(1, create_group_sql(1, "n1"), "55000", "track_commit_timestamp");
    EXPECT_NE(e.hint().find("track_commit_timestamp = on"), std::string::npos);
}

TEST_F(SetupErrorTest, BadAndUnreachableDsns) {
    start_plain(2);
    expect_error(1, "SELECT pgmesh.create_group('n1', 'host=127.0.0.1 port')", "22023",
                 "invalid node_dsn");
    expect_error(1, "SELECT pgmesh.create_group('n1', 'this is not a dsn')", "22023",
                 "invalid node_dsn");
    // Nothing listens on port 1.
    pq::Error down = expect_error(
        1, "SELECT pgmesh.create_group('n1', 'host=127.0.0.1 port=1 dbname=pgmesh user=postgres')",
        "08001", "could not connect");
    EXPECT_NE(down.hint().find("DSN"), std::string::npos);
    // A DSN that leads to another server is not this node's.
    expect_error(1, create_group_sql(2, "n1"), "22023", "does not lead to this database");
    // A password never shows in errors.
    pq::Error masked = expect_error(
        1,
        "SELECT pgmesh.create_group('n1', 'host=127.0.0.1 port=1 dbname=pgmesh user=postgres "
        "password=s3cret')",
        "08001");
    EXPECT_EQ(masked.message().find("s3cret"), std::string::npos) << masked.message();
    // Bad names.
    expect_error(1, create_group_sql(1, "bad name!"), "22023", "invalid node name");
    // Nothing was created by the failures.
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.node"), "0");
}

TEST_F(SetupErrorTest, JoinMistakes) {
    start_plain(3);
    // Joining through a database that is not a node.
    expect_error(2, join_sql(2, "n2", 1), "55000", "not a member");
    exec(1, create_group_sql(1, "n1"));
    // Creating a second group, or joining, from a node.
    expect_error(1, create_group_sql(1, "again"), "42710", "already pgmesh node");
    // Name in use.
    expect_error(2, join_sql(2, "n1", 1), "42710", "already in use");
    // Unreachable join target.
    expect_error(2,
                 "SELECT pgmesh.join_group('n2', '" + dsn(2) +
                     "', 'host=127.0.0.1 port=1 dbname=pgmesh user=postgres')",
                 "08001", "could not connect");
    // A joining database must be empty.
    exec(3, "CREATE TABLE mine (id int PRIMARY KEY)");
    expect_error(3, join_sql(3, "n3", 1), "55000", "must be empty");
    // A good join (it returns the new node's id), then joining twice.
    const std::string n2_id = query_value(2, join_sql(2, "n2", 1));
    EXPECT_EQ(query_value(2, "SELECT pgmesh.wait_for_ready(60)"), "t");
    EXPECT_EQ(query_value(2, "SELECT node_id FROM pgmesh.nodes WHERE is_local"), n2_id);
    EXPECT_EQ(query_value(1, "SELECT node_id FROM pgmesh.nodes WHERE node_name = 'n2'"), n2_id);
    expect_error(2, join_sql(2, "n2b", 1), "42710", "already pgmesh node");
    // Failed joins left nothing behind on the group.
    EXPECT_EQ(query_value(1,
                          "SELECT string_agg(node_name, ',' ORDER BY node_name) "
                          "FROM pgmesh.nodes"),
              "n1,n2");
    EXPECT_EQ(query_value(1,
                          "SELECT count(*) FROM pg_replication_slots WHERE slot_name NOT LIKE "
                          "'pgmesh\\_relay\\_%'"),
              "1");
}

TEST_F(SetupErrorTest, FunctionsNeedANode) {
    start_plain(1);
    expect_error(1, "SELECT pgmesh.wait_for_sync(1)", "55000", "not a pgmesh node");
    expect_error(1, "SELECT pgmesh.wait_for_ready(1)", "55000", "not a pgmesh node");
    expect_error(1, "SELECT pgmesh.pause_apply()", "55000", "not a pgmesh node");
    expect_error(1, "SELECT pgmesh.wait_for_sync(-1)", "22023", "timeout");
}

TEST_F(SetupErrorTest, CatalogsAreNotReadableByOrdinaryUsers) {
    start_plain(1);
    exec(1, create_group_sql(1, "n1"));
    exec(1, "CREATE ROLE app LOGIN");
    exec(1, "SET ROLE app");
    expect_error(1, "SELECT dsn FROM pgmesh.node", "42501");
    expect_error(1, "SELECT pgmesh.pause_apply()", "42501");
    exec(1, "RESET ROLE");
}

}  // namespace
}  // namespace pgmesh::test
