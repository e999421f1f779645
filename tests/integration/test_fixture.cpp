// Tests of the integration test fixture itself, on plain PostgreSQL servers
// (shared_preload_libraries empty): they pass without pgmesh installed.
#include <gtest/gtest.h>

#include <fstream>

#include "cluster_fixture.hpp"
#include "pgmesh_stub.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pgmesh::test::MeshOptions;
using pgmesh::test::MeshTest;

class PlainTwoNodes : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 2, .form_mesh = false, .shared_preload_libraries = ""};
    }
};

TEST_F(PlainTwoNodes, NodesAreConfiguredForPgmesh) {
    for (int node = 1; node <= 2; ++node) {
        EXPECT_EQ(query_value(node, "SHOW wal_level"), "logical");
        EXPECT_EQ(query_value(node, "SHOW track_commit_timestamp"), "on");
        EXPECT_EQ(query_value(node, "SHOW port"), std::to_string(port(node)));
        EXPECT_EQ(query_value(node, "SHOW listen_addresses"), "127.0.0.1");
        EXPECT_EQ(query_value(node, "SHOW shared_preload_libraries"), "");
        EXPECT_EQ(query_value(node, "SHOW max_replication_slots"), "14");
        EXPECT_EQ(query_value(node, "SHOW max_wal_senders"), "14");
        EXPECT_EQ(query_value(node, "SHOW max_worker_processes"), "20");
        EXPECT_EQ(query_value(node, "SELECT current_database()"), "pgmesh");
        EXPECT_EQ(query_value(node, "SHOW server_encoding"), "UTF8");
    }
    EXPECT_NE(port(1), port(2));
}

TEST_F(PlainTwoNodes, RunsSqlAndReturnsRows) {
    exec(1, "CREATE TABLE items (id int PRIMARY KEY, label text)");
    exec(1, "INSERT INTO items VALUES (1, 'one'), (2, NULL), (3, 'three')");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM items"), "3");
    EXPECT_EQ(query_nullable(1, "SELECT label FROM items WHERE id = 2"), std::nullopt);
    EXPECT_THROW(query_value(1, "SELECT label FROM items WHERE id = 2"), std::runtime_error);

    pgmesh::pq::Rows rows = query_rows(1, "SELECT id, label FROM items ORDER BY id");
    ASSERT_EQ(rows.size(), 3u);
    EXPECT_EQ(rows[0], (pgmesh::pq::Row{"1", "one"}));
    EXPECT_EQ(rows[1], (pgmesh::pq::Row{"2", std::nullopt}));
    EXPECT_EQ(rows[2], (pgmesh::pq::Row{"3", "three"}));

    // The nodes are independent servers: nothing replicates without pgmesh.
    expect_error(2, "SELECT * FROM items", "42P01");

    // Separate sessions see committed data; the shared one keeps its state.
    pgmesh::pq::Connection other = connect(1);
    EXPECT_EQ(other.query_value("SELECT count(*) FROM items"), "3");
    exec(1, "SET application_name = 'fixture-session'");
    EXPECT_EQ(query_value(1, "SHOW application_name"), "fixture-session");
}

TEST_F(PlainTwoNodes, ExpectErrorReturnsTheError) {
    pgmesh::pq::Error error = expect_error(1, "SELECT * FROM nosuchtable", "42P01", "nosuchtable");
    EXPECT_EQ(error.sqlstate(), "42P01");
    EXPECT_EQ(error.message(), "relation \"nosuchtable\" does not exist");
    // The session is usable after the error.
    EXPECT_EQ(query_value(1, "SELECT 1"), "1");

    pgmesh::pq::Error with_hint =
        expect_error(2, "SELECT nosuchfunction(1)", "42883", "does not exist");
    EXPECT_FALSE(with_hint.hint().empty());
}

TEST_F(PlainTwoNodes, SqlErrorsThrowPqError) {
    try {
        exec(1, "SELECT 1/0");
        FAIL() << "no exception";
    } catch (const pgmesh::pq::Error &error) {
        EXPECT_EQ(error.sqlstate(), "22012");
    }
}

TEST_F(PlainTwoNodes, RestartKeepsDataAndChangesPid) {
    exec(1, "CREATE TABLE kept (id int PRIMARY KEY)");
    exec(1, "INSERT INTO kept SELECT generate_series(1, 100)");
    const pid_t before = postmaster_pid(1);
    restart(1);
    EXPECT_TRUE(is_running(1));
    EXPECT_NE(postmaster_pid(1), before);
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM kept"), "100");

    stop(2);
    EXPECT_FALSE(is_running(2));
    EXPECT_THROW(connect(2), pgmesh::pq::Error);
    start(2);
    EXPECT_TRUE(is_running(2));
    EXPECT_EQ(query_value(2, "SELECT 1"), "1");
}

TEST_F(PlainTwoNodes, Kill9ThenStartRunsCrashRecovery) {
    exec(2, "CREATE TABLE durable (id int PRIMARY KEY, payload text)");
    exec(2, "INSERT INTO durable SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g");
    // An open session on the node must not keep it from going down.
    pgmesh::pq::Connection bystander = connect(2);
    bystander.exec("BEGIN");
    bystander.exec("INSERT INTO durable VALUES (5000, 'uncommitted')");

    const pid_t killed = postmaster_pid(2);
    const pid_t other = postmaster_pid(1);
    kill9(2);
    EXPECT_FALSE(is_running(2));
    EXPECT_THROW(connect(2), pgmesh::pq::Error);
    EXPECT_THROW(bystander.exec("COMMIT"), pgmesh::pq::Error);

    start(2);
    EXPECT_NE(postmaster_pid(2), killed);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM durable"), "1000");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM durable WHERE id = 5000"), "0");

    std::ifstream log(log_file(2));
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find("automatic recovery in progress"), std::string::npos)
        << "no crash recovery in " << log_file(2);
    // The other node is unaffected: the same server, still serving.
    EXPECT_EQ(postmaster_pid(1), other);
    EXPECT_EQ(query_value(1, "SELECT 1"), "1");
}

TEST_F(PlainTwoNodes, KilledChildIsToleratedAndServerRecovers) {
    pgmesh::pq::Connection victim = connect(1);
    const pid_t backend = victim.backend_pid();
    kill_child9(1, backend);
    // The postmaster reinitializes after a child's crash; wait until it
    // accepts connections again.
    ASSERT_TRUE(wait_until([&] { return query_value(1, "SELECT 1") == "1"; }, 60s));
    EXPECT_EQ(pgmesh::test::unexpected_signal_terminations(log_file(1)).size(), 1u);
    const pid_t tolerated[] = {backend};
    EXPECT_TRUE(pgmesh::test::unexpected_signal_terminations(log_file(1), tolerated).empty());
}

TEST_F(PlainTwoNodes, SignalTerminationScannerFindsCrashLines) {
    exec(1, "SELECT 1");
    const fs::path copy = temp_dir() / "copy-of-node1.log";
    fs::copy_file(log_file(1), copy);
    EXPECT_TRUE(pgmesh::test::unexpected_signal_terminations(copy).empty())
        << "a fresh server log should have no crash lines";

    std::ofstream(copy, std::ios::app)
        << "2025-01-01 00:00:00.000 UTC [4242] postmaster LOG:  server process (PID 4711) was "
           "terminated by signal 11: Segmentation fault\n";
    std::vector<std::string> found = pgmesh::test::unexpected_signal_terminations(copy);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_NE(found[0].find("PID 4711"), std::string::npos);
    EXPECT_EQ(pgmesh::local::find_signal_terminations(copy).size(), 1u);

    const pid_t other_pid[] = {471};
    EXPECT_EQ(pgmesh::test::unexpected_signal_terminations(copy, other_pid).size(), 1u)
        << "only the exact PID is tolerated";
    const pid_t same_pid[] = {4711};
    EXPECT_TRUE(pgmesh::test::unexpected_signal_terminations(copy, same_pid).empty());
}

// A TestThread stops its work on every path: a statement that waits (for
// a lock the test holds) is canceled (57014), and a session whose backend
// answers no cancel (frozen with SIGSTOP) is cut off; either way stop()
// returns and says how the work ended.
TEST_F(PlainTwoNodes, TestThreadsStopWhatTheyRunOnEveryPath) {
    using pgmesh::test::TestThread;
    pgmesh::pq::Connection gate = connect(1);
    gate.exec("SELECT pg_advisory_lock(1)");
    {
        TestThread waiting(
            [&](TestThread &self) { self.session(connect(1)).exec("SELECT pg_advisory_lock(1)"); },
            100ms, 10s);
        ASSERT_TRUE(wait_until([&] {
            return query_value(1, "SELECT count(*) FROM pg_locks WHERE NOT granted") == "1";
        }));
        EXPECT_FALSE(waiting.finished());
        std::string error = waiting.stop();
        EXPECT_TRUE(error.starts_with("57014")) << error;
    }
    {
        pgmesh::pq::Connection sleeper = connect(1);
        pgmesh::test::FrozenProcess frozen(sleeper.backend_pid());  // thawed after the thread
        TestThread sleeping(
            [&](TestThread &self) { self.borrow(sleeper).exec("SELECT pg_sleep(3600)"); }, 100ms,
            500ms);
        std::string error = sleeping.stop();
        EXPECT_TRUE(error.starts_with("08")) << error;
    }
    EXPECT_EQ(query_value(1, "SELECT 1"), "1");
}

TEST_F(PlainTwoNodes, VerifyComparesTablesAcrossNodes) {
    for (int node = 1; node <= 2; ++node) {
        exec(node, "CREATE SCHEMA \"Odd Schema\"");
        exec(node, "CREATE TABLE \"Odd Schema\".\"T\" (id int PRIMARY KEY, v text, t text)");
        exec(node, "INSERT INTO \"Odd Schema\".\"T\" VALUES (1, 'a', 'x'), (2, NULL, 'y')");
        exec(node, "CREATE TABLE public.empty (id int PRIMARY KEY)");
    }
    // Row order on disk does not matter.
    exec(2, "UPDATE \"Odd Schema\".\"T\" SET v = v WHERE id = 1");
    EXPECT_TRUE(verify_all());

    exec(2, "UPDATE \"Odd Schema\".\"T\" SET v = 'b' WHERE id = 1");
    exec(1, "CREATE TABLE only_on_node1 (id int PRIMARY KEY)");
    pgmesh::local::VerifyReport report = verify_report();
    EXPECT_FALSE(report.all_equal());
    EXPECT_EQ(report.differing_tables,
              (std::vector<std::string>{"\"Odd Schema\".\"T\"", "public.only_on_node1"}));
    const auto &missing = report.tables.at("public.only_on_node1");
    ASSERT_EQ(missing.size(), 2u);
    EXPECT_TRUE(missing[0].has_value());
    EXPECT_FALSE(missing[1].has_value());
    EXPECT_EQ(report.tables.at("public.empty")[0]->row_count, 0);
    EXPECT_NE(report.format().find("missing"), std::string::npos) << report.format();
}

// The forming steps, against a plain-SQL stand-in for the extension.
TEST_F(PlainTwoNodes, FormingStepsCallTheSqlSurface) {
    for (int node = 1; node <= 2; ++node) exec(node, pgmesh::test::kPgmeshStubSql);
    cluster().create_group(1);
    cluster().join_group(2, 1, 7s);
    const std::string calls =
        "SELECT function_name, array_to_string(arguments, '|') "
        "FROM pgmesh.calls ORDER BY id";
    EXPECT_EQ(query_rows(1, calls), (pgmesh::pq::Rows{{"create_group", "node1|" + dsn(1)}}));
    EXPECT_EQ(query_rows(2, calls),
              (pgmesh::pq::Rows{{"join_group", "node2|" + dsn(2) + "|" + dsn(1)},
                                {"wait_for_ready", "7"}}));
    EXPECT_EQ(dsn(1),
              "host=127.0.0.1 port=" + std::to_string(port(1)) + " dbname=pgmesh user=postgres");

    wait_for_sync(1);
    exec(1,
         "CREATE OR REPLACE FUNCTION pgmesh.wait_for_sync(timeout_seconds integer) RETURNS boolean "
         "LANGUAGE sql AS 'SELECT false'");
    EXPECT_THROW(wait_for_sync(1), std::runtime_error);

    exec(
        2,
        "CREATE OR REPLACE FUNCTION pgmesh.wait_for_ready(timeout_seconds integer) RETURNS boolean "
        "LANGUAGE sql AS 'SELECT false'");
    try {
        cluster().join_group(2, 1, 1s);
        FAIL() << "join_group accepted wait_for_ready() = false";
    } catch (const pgmesh::local::NodeError &error) {
        EXPECT_EQ(error.node_number(), 2);
        EXPECT_NE(std::string(error.what()).find("not ready after 1 s"), std::string::npos)
            << error.what();
    }
    // The stub's tables live in schema pgmesh, which verify skips.
    EXPECT_TRUE(verify_report().tables.empty());
}

// The CLI tests read the stub's views as they would the extension's.
TEST_F(PlainTwoNodes, StubViewsHaveTheExtensionsColumns) {
    if (query_value(2, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgmesh'") == "0")
        GTEST_SKIP() << "pgmesh is not installed";
    exec(1, pgmesh::test::kPgmeshStubSql);
    exec(2, "CREATE EXTENSION pgmesh");  // the views need no preloaded library
    const std::string columns =
        "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE c.relnamespace = 'pgmesh'::regnamespace AND c.relname IN ('nodes', 'status') "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum";
    const pgmesh::pq::Rows stub = query_rows(1, columns);
    EXPECT_EQ(stub.size(), 19u);  // 6 in nodes, 13 in status
    EXPECT_EQ(stub, query_rows(2, columns));
}

TEST_F(MeshTest, StartClusterInTheTestBodyWithExtraSettings) {
    start_cluster({.nodes = 1,
                   .form_mesh = false,
                   .shared_preload_libraries = "",
                   .db_name = "other_db",
                   .settings = {{"wal_level", "replica"}, {"cluster_name", "it's quoted"}}});
    EXPECT_EQ(node_count(), 1);
    EXPECT_EQ(query_value(1, "SHOW wal_level"), "replica");
    EXPECT_EQ(query_value(1, "SELECT current_database()"), "other_db");
    EXPECT_EQ(connect(1, "postgres").query_value("SHOW cluster_name"), "it's quoted");
    EXPECT_THROW(query_value(2, "SELECT 1"), std::out_of_range);
}

}  // namespace
