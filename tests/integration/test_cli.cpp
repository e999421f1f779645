// Tests of the pgmesh command-line tool, run as a separate process.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cluster_fixture.hpp"
#include "local_cluster.hpp"
#include "pgmesh_stub.hpp"
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

}  // namespace
