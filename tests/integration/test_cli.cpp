// Tests of the pgmesh command-line tool, run as a separate process.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cluster_fixture.hpp"
#include "local_cluster.hpp"
#include "pgmesh_stub.hpp"
#include "pq.hpp"
#include "run_process.hpp"

namespace {

namespace fs = std::filesystem;
using pgmesh::test::MeshOptions;
using pgmesh::test::MeshTest;

using CliResult = pgmesh::test::ProcessResult;

// The CLI with these arguments; output holds its stdout and stderr.
CliResult run_cli(const std::vector<std::string> &arguments) {
    std::vector<std::string> argv = {PGMESH_CLI_PATH};
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    // Under the tests' 300 s ctest timeout, so that a hung command shows its output.
    return pgmesh::test::run_process(argv, {.timeout = std::chrono::seconds(270)});
}

bool pgmesh_installed() {
    fs::path bindir = pgmesh::local::default_pg_bindir();
    return fs::exists(fs::path(pgmesh::local::pg_config_value(bindir, "pkglibdir")) / "pgmesh.so");
}

bool contains(const std::string &text, std::string_view part) {
    return text.find(part) != std::string::npos;
}

// Removes a temporary directory at the end of a test (after `local down`).
struct TempDir {
    fs::path path = pgmesh::test::make_temp_dir("pgmesh-clitest-");
    ~TempDir() {
        std::error_code ignored;
        if (pgmesh::test::keep_temp_dirs()) {
            pgmesh::test::keep_temp_dir(path);
        } else {
            fs::remove_all(path, ignored);
        }
    }
};

// A cluster made by `pgmesh local up`, stopped and removed at the end.
struct UpCluster {
    TempDir temp;
    std::string dir = (temp.path / "cluster").string();
    CliResult up;

    explicit UpCluster(int nodes)
        : up(run_cli({"local", "up", "--nodes", std::to_string(nodes), "--dir", dir, "--base-port",
                      std::to_string(pgmesh::local::find_free_ports(1, 0)[0])})) {}
    ~UpCluster() {
        if (!pgmesh::local::LocalCluster::exists(dir)) return;
        run_cli({"local", "down", "--dir", dir});
        const pgmesh::local::LocalCluster stopped = cluster();
        for (const auto &node : stopped.nodes()) {
            EXPECT_TRUE(pgmesh::local::find_signal_terminations(node.log_file()).empty())
                << node.name << ": " << pgmesh::local::read_tail(node.log_file(), 80);
        }
    }
    // Read again each time: the CLI changes the state file.
    pgmesh::local::LocalCluster cluster() const { return pgmesh::local::LocalCluster::open(dir); }
    std::string dsn(int node) const { return cluster().dsn(node); }
};

// The first column of the only row of a query on a node ("NULL" for NULL).
std::string query(const std::string &dsn, std::string_view sql) {
    pgmesh::pq::Connection conn = pgmesh::pq::Connection::open(dsn);
    return conn.query_value(sql).value_or("NULL");
}

void exec(const std::string &dsn, std::string_view sql) {
    pgmesh::pq::Connection::open(dsn).exec(sql);
}

TEST(CliUsage, HelpAndUsageErrors) {
    CliResult help = run_cli({"--help"});
    EXPECT_EQ(help.exit_code, 0);
    EXPECT_TRUE(contains(help.output, "pgmesh local up")) << help.output;

    EXPECT_EQ(run_cli({"local", "up", "--help"}).exit_code, 0);
    EXPECT_EQ(run_cli({"verify", "--help"}).exit_code, 0);

    CliResult none = run_cli({});
    EXPECT_EQ(none.exit_code, 2);
    EXPECT_TRUE(contains(none.output, "no command")) << none.output;

    CliResult no_dir = run_cli({"local", "up", "--nodes", "2"});
    EXPECT_EQ(no_dir.exit_code, 2);
    EXPECT_TRUE(contains(no_dir.output, "--dir is required")) << no_dir.output;

    EXPECT_EQ(run_cli({"local", "up", "--dir", "/tmp/x", "--nodes", "0"}).exit_code, 2);
    EXPECT_EQ(run_cli({"local", "up", "--dir", "/tmp/x", "--nodes", "two"}).exit_code, 2);
    EXPECT_EQ(run_cli({"local", "up", "--dir", "/tmp/x", "--bogus"}).exit_code, 2);
    EXPECT_EQ(run_cli({"local", "down"}).exit_code, 2);
    EXPECT_EQ(run_cli({"local", "sideways"}).exit_code, 2);
    EXPECT_EQ(run_cli({"frobnicate"}).exit_code, 2);
    CliResult one_dsn = run_cli({"verify", "--dsn", "host=127.0.0.1"});
    EXPECT_EQ(one_dsn.exit_code, 2);
    EXPECT_TRUE(contains(one_dsn.output, "at least two")) << one_dsn.output;
}

TEST(CliUsage, AddAndPartUsageErrors) {
    CliResult help = run_cli({"--help"});
    EXPECT_TRUE(contains(help.output, "pgmesh local add")) << help.output;
    EXPECT_TRUE(contains(help.output, "pgmesh local part")) << help.output;
    EXPECT_EQ(run_cli({"local", "add", "--help"}).exit_code, 0);
    EXPECT_EQ(run_cli({"local", "part", "--help"}).exit_code, 0);

    CliResult add_no_dir = run_cli({"local", "add"});
    EXPECT_EQ(add_no_dir.exit_code, 2);
    EXPECT_TRUE(contains(add_no_dir.output, "--dir is required")) << add_no_dir.output;
    CliResult bad_set = run_cli({"local", "add", "--dir", "/tmp/x", "--set", "fsync"});
    EXPECT_EQ(bad_set.exit_code, 2);
    EXPECT_TRUE(contains(bad_set.output, "--set expects NAME=VALUE")) << bad_set.output;

    CliResult part_no_dir = run_cli({"local", "part", "--node", "node3"});
    EXPECT_EQ(part_no_dir.exit_code, 2);
    EXPECT_TRUE(contains(part_no_dir.output, "--dir is required")) << part_no_dir.output;
    CliResult part_no_node = run_cli({"local", "part", "--dir", "/tmp/x"});
    EXPECT_EQ(part_no_node.exit_code, 2);
    EXPECT_TRUE(contains(part_no_node.output, "--node is required")) << part_no_node.output;
}

TEST(CliUsage, LocalCommandsRefuseDirectoriesWithoutACluster) {
    TempDir dir;
    CliResult down = run_cli({"local", "down", "--dir", dir.path.string(), "--purge"});
    EXPECT_EQ(down.exit_code, 1);
    EXPECT_TRUE(contains(down.output, "no pgmesh local cluster")) << down.output;
    EXPECT_TRUE(fs::exists(dir.path)) << "--purge must not remove a directory without a cluster";
    EXPECT_EQ(run_cli({"local", "status", "--dir", dir.path.string()}).exit_code, 1);
}

TEST(CliUsage, PasswordsAreNeverPrinted) {
    CliResult result =
        run_cli({"verify", "--dsn", "host=127.0.0.1 port=1 user=u password=hunter2 dbname=x",
                 "--dsn", "postgresql://u:hunter3@127.0.0.1:1/x"});
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_FALSE(contains(result.output, "hunter")) << result.output;
    EXPECT_TRUE(contains(result.output, "password=********")) << result.output;
}

class CliOnPlainNodes : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 2, .form_mesh = false, .shared_preload_libraries = ""};
    }
};

TEST_F(CliOnPlainNodes, VerifyReportsEqualAndDifferentTables) {
    for (int node = 1; node <= 2; ++node) {
        exec(node, "CREATE TABLE accounts (id int PRIMARY KEY, balance numeric)");
        exec(node, "INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 50) g");
    }
    CliResult same = run_cli({"verify", "--dsn", dsn(1), "--dsn", dsn(2)});
    EXPECT_EQ(same.exit_code, 0) << same.output;
    EXPECT_TRUE(contains(same.output, "all 1 tables are equal on 2 nodes")) << same.output;
    EXPECT_TRUE(contains(same.output, "public.accounts")) << same.output;

    exec(2, "DELETE FROM accounts WHERE id = 7");
    CliResult differ = run_cli({"verify", "--dsn", dsn(1), "--dsn", dsn(2)});
    EXPECT_EQ(differ.exit_code, 1) << differ.output;
    EXPECT_TRUE(contains(differ.output, "1 of 1 tables differ: public.accounts")) << differ.output;
    EXPECT_TRUE(contains(differ.output, " 49 ")) << differ.output;
}

TEST_F(CliOnPlainNodes, StatusWithoutTheExtensionFailsClearly) {
    CliResult result = run_cli({"status", "--dsn", dsn(1)});
    EXPECT_EQ(result.exit_code, 1);
    EXPECT_TRUE(contains(result.output, "42P01")) << result.output;
    EXPECT_TRUE(contains(result.output, "pgmesh.status")) << result.output;
}

TEST_F(CliOnPlainNodes, StatusPrintsTheStatusViewAsATable) {
    exec(1, pgmesh::test::kPgmeshStubSql);
    CliResult result = run_cli({"status", "--dsn", dsn(1)});
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_TRUE(contains(result.output, " peer_node_id | peer_node_name | connected |"))
        << result.output;
    EXPECT_TRUE(contains(result.output, "            2 | node2          | t         |"))
        << result.output;
    EXPECT_TRUE(contains(result.output, " | conflicts | conflicts_by_type | last_error"))
        << result.output;
    EXPECT_TRUE(contains(result.output, "(1 row)")) << result.output;
}

TEST_F(CliOnPlainNodes, LocalStatusWorksOnTheFixturesCluster) {
    exec(1, pgmesh::test::kPgmeshStubSql);
    const std::string dir = (temp_dir() / "cluster").string();
    CliResult result = run_cli({"local", "status", "--dir", dir});
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_TRUE(contains(result.output, "node1 | running")) << result.output;
    EXPECT_TRUE(contains(result.output, "node2 | running")) << result.output;
    EXPECT_TRUE(contains(result.output, "pgmesh.nodes:")) << result.output;
    EXPECT_TRUE(contains(result.output, "4242")) << result.output;
    // node2 has no pgmesh schema: reported, not fatal.
    EXPECT_TRUE(contains(result.output, "cannot read: relation \"pgmesh.nodes\" does not exist"))
        << result.output;

    stop(2);
    CliResult one_down = run_cli({"local", "status", "--dir", dir});
    EXPECT_EQ(one_down.exit_code, 1) << one_down.output;
    EXPECT_TRUE(contains(one_down.output, "node2 | stopped")) << one_down.output;
}

TEST_F(CliOnPlainNodes, PartRefusesAnUnknownNodeName) {
    const std::string dir = (temp_dir() / "cluster").string();
    CliResult result = run_cli({"local", "part", "--dir", dir, "--node", "node9"});
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_TRUE(contains(result.output, "no node \"node9\" in " + dir + " (nodes: node1, node2)"))
        << result.output;
}

TEST(CliLocal, UpFailsCleanlyWithoutTheExtension) {
    if (pgmesh_installed()) GTEST_SKIP() << "pgmesh is installed; UpFormsAGroup covers local up";
    TempDir temp;
    const std::string dir = (temp.path / "cluster").string();
    const std::string base_port = std::to_string(pgmesh::local::find_free_ports(1, 0)[0]);

    CliResult refused =
        run_cli({"local", "up", "--nodes", "2", "--dir", dir, "--base-port", base_port});
    EXPECT_EQ(refused.exit_code, 1) << refused.output;
    EXPECT_TRUE(contains(refused.output, "not installed")) << refused.output;
    EXPECT_FALSE(fs::exists(dir)) << "nothing is created before the checks pass";

    // Servers without pgmesh preloaded start, so CREATE EXTENSION is what fails.
    CliResult failed = run_cli({"local", "up", "--nodes", "2", "--dir", dir, "--base-port",
                                base_port, "--set", "shared_preload_libraries="});
    EXPECT_EQ(failed.exit_code, 1) << failed.output;
    EXPECT_TRUE(contains(failed.output, "CREATE EXTENSION pgmesh failed")) << failed.output;
    EXPECT_TRUE(contains(failed.output, "lines of " + dir + "/node1/postgres.log"))
        << failed.output;
    EXPECT_TRUE(contains(failed.output, "local down --dir " + dir + " --purge")) << failed.output;

    CliResult status = run_cli({"local", "status", "--dir", dir});
    EXPECT_EQ(status.exit_code, 1) << status.output;
    EXPECT_TRUE(contains(status.output, "never fully set up")) << status.output;
    EXPECT_TRUE(contains(status.output, "node2 | stopped")) << status.output;

    CliResult start = run_cli({"local", "start", "--dir", dir});
    EXPECT_EQ(start.exit_code, 1) << start.output;
    EXPECT_TRUE(contains(start.output, "never fully set up")) << start.output;

    CliResult again = run_cli(
        {"local", "up", "--nodes", "2", "--dir", dir, "--set", "shared_preload_libraries="});
    EXPECT_EQ(again.exit_code, 1) << again.output;
    EXPECT_TRUE(contains(again.output, "already holds a pgmesh local cluster")) << again.output;

    CliResult down = run_cli({"local", "down", "--dir", dir, "--purge"});
    EXPECT_EQ(down.exit_code, 0) << down.output;
    EXPECT_FALSE(fs::exists(dir));
}

TEST(CliLocal, UpFormsAGroup) {
    if (!pgmesh_installed()) GTEST_SKIP() << "pgmesh is not installed (cmake --install build)";
    TempDir temp;
    const std::string dir = (temp.path / "cluster").string();
    const std::string base_port = std::to_string(pgmesh::local::find_free_ports(1, 0)[0]);
    struct Down {
        std::string dir;
        ~Down() { run_cli({"local", "down", "--dir", dir}); }
    } down_at_end{dir};

    CliResult up = run_cli({"local", "up", "--nodes", "2", "--dir", dir, "--base-port", base_port});
    ASSERT_EQ(up.exit_code, 0) << up.output;
    EXPECT_TRUE(contains(up.output, "psql \"host=127.0.0.1 port=")) << up.output;

    CliResult status = run_cli({"local", "status", "--dir", dir});
    EXPECT_EQ(status.exit_code, 0) << status.output;
    EXPECT_TRUE(contains(status.output, "node2 | running")) << status.output;

    pgmesh::local::LocalCluster cluster = pgmesh::local::LocalCluster::open(dir);
    CliResult node_status = run_cli({"status", "--dsn", cluster.dsn(1)});
    EXPECT_EQ(node_status.exit_code, 0) << node_status.output;
    EXPECT_TRUE(contains(node_status.output, "node2")) << node_status.output;

    CliResult verify = run_cli({"verify", "--dsn", cluster.dsn(1), "--dsn", cluster.dsn(2)});
    EXPECT_EQ(verify.exit_code, 0) << verify.output;

    CliResult stopped = run_cli({"local", "down", "--dir", dir});
    EXPECT_EQ(stopped.exit_code, 0) << stopped.output;
    for (const auto &node : cluster.nodes()) {
        EXPECT_TRUE(pgmesh::local::find_signal_terminations(node.log_file()).empty())
            << node.name << ": " << pgmesh::local::read_tail(node.log_file(), 80);
    }
}

TEST(CliLocal, AddJoinsANodeThatReplicatesBothWays) {
    if (!pgmesh_installed()) GTEST_SKIP() << "pgmesh is not installed (cmake --install build)";
    UpCluster cluster(2);
    ASSERT_EQ(cluster.up.exit_code, 0) << cluster.up.output;
    exec(cluster.dsn(1),
         "BEGIN; SET LOCAL pgmesh.permit_ddl_locking = on;"
         "CREATE TABLE items (id int PRIMARY KEY, note text); COMMIT;"
         "INSERT INTO items VALUES (1, 'before the add')");

    CliResult add = run_cli({"local", "add", "--dir", cluster.dir});
    ASSERT_EQ(add.exit_code, 0) << add.output;
    EXPECT_TRUE(contains(add.output, "node3 joined the pgmesh group")) << add.output;
    EXPECT_TRUE(contains(add.output, "psql \"host=127.0.0.1 port=")) << add.output;
    EXPECT_EQ(query(cluster.dsn(3), "SELECT note FROM items WHERE id = 1"), "before the add");
    exec(cluster.dsn(3), "INSERT INTO items VALUES (2, 'from node3')");
    EXPECT_EQ(query(cluster.dsn(3), "SELECT pgmesh.wait_for_sync(60)"), "t");
    EXPECT_EQ(query(cluster.dsn(1), "SELECT note FROM items WHERE id = 2"), "from node3");

    CliResult status = run_cli({"local", "status", "--dir", cluster.dir});
    EXPECT_EQ(status.exit_code, 0) << status.output;
    EXPECT_TRUE(contains(status.output, "node3 | running")) << status.output;

    ASSERT_EQ(run_cli({"local", "down", "--dir", cluster.dir}).exit_code, 0);
    CliResult start = run_cli({"local", "start", "--dir", cluster.dir});
    EXPECT_EQ(start.exit_code, 0) << start.output;
    EXPECT_TRUE(contains(start.output, "group of 3 nodes is running")) << start.output;
    for (int node = 1; node <= 3; ++node) EXPECT_TRUE(cluster.cluster().is_running(node)) << node;
}

TEST(CliLocal, AddThatFailsLeavesTheClusterAsItWas) {
    if (!pgmesh_installed()) GTEST_SKIP() << "pgmesh is not installed (cmake --install build)";
    UpCluster cluster(2);
    ASSERT_EQ(cluster.up.exit_code, 0) << cluster.up.output;

    // Without pgmesh preloaded the server starts, and the join (or already
    // CREATE EXTENSION) fails.
    CliResult failed =
        run_cli({"local", "add", "--dir", cluster.dir, "--set", "shared_preload_libraries="});
    EXPECT_EQ(failed.exit_code, 1) << failed.output;
    EXPECT_TRUE(contains(failed.output, "local add failed: node3: ")) << failed.output;
    EXPECT_TRUE(contains(failed.output, "shared_preload_libraries")) << failed.output;
    EXPECT_TRUE(contains(failed.output, "lines of " + cluster.dir + "/node3/postgres.log"))
        << failed.output;
    EXPECT_TRUE(contains(failed.output, "the cluster is as it was")) << failed.output;
    EXPECT_FALSE(fs::exists(fs::path(cluster.dir) / "node3"));
    EXPECT_EQ(cluster.cluster().node_count(), 2);

    // Nothing joined, so the number is free again.
    CliResult add = run_cli({"local", "add", "--dir", cluster.dir});
    EXPECT_EQ(add.exit_code, 0) << add.output;
    EXPECT_TRUE(contains(add.output, "node3 joined")) << add.output;
}

// Needs pgmesh.part_node in the installed extension.
TEST(CliLocal, PartStopsTheNodeAndTheNextAddMakesANewOne) {
    if (!pgmesh_installed()) GTEST_SKIP() << "pgmesh is not installed (cmake --install build)";
    UpCluster cluster(3);
    ASSERT_EQ(cluster.up.exit_code, 0) << cluster.up.output;

    CliResult part = run_cli({"local", "part", "--dir", cluster.dir, "--node", "node3"});
    ASSERT_EQ(part.exit_code, 0) << part.output;
    EXPECT_TRUE(contains(part.output, "parted node3 from the pgmesh group")) << part.output;
    EXPECT_EQ(query(cluster.dsn(1), "SELECT state FROM pgmesh.nodes WHERE node_name = 'node3'"),
              "parted");
    EXPECT_FALSE(cluster.cluster().is_running(3));
    CliResult status = run_cli({"local", "status", "--dir", cluster.dir});
    EXPECT_EQ(status.exit_code, 0) << status.output;
    EXPECT_TRUE(contains(status.output, "node3 | parted")) << status.output;

    CliResult add = run_cli({"local", "add", "--dir", cluster.dir});
    ASSERT_EQ(add.exit_code, 0) << add.output;
    EXPECT_TRUE(contains(add.output, "node4 joined")) << add.output;

    ASSERT_EQ(run_cli({"local", "down", "--dir", cluster.dir}).exit_code, 0);
    CliResult start = run_cli({"local", "start", "--dir", cluster.dir});
    EXPECT_EQ(start.exit_code, 0) << start.output;
    EXPECT_TRUE(contains(start.output, "group of 3 nodes is running")) << start.output;
    EXPECT_FALSE(cluster.cluster().is_running(3)) << "local start must not start a parted node";

    EXPECT_EQ(run_cli({"local", "down", "--dir", cluster.dir, "--purge"}).exit_code, 0);
    EXPECT_FALSE(fs::exists(cluster.dir));
}

}  // namespace
