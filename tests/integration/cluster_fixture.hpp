// GoogleTest fixture for integration tests on real PostgreSQL servers.
//
// Each test gets its own cluster of N local nodes in a fresh /tmp directory
// (servers run as the "postgres" OS user when the test runs as root), on
// free ports, with fsync off. Nodes are numbered from 1, like their names
// node1..nodeN. Helpers throw on failure (pq::Error for SQL errors), which
// fails the test with the exception's message. The helpers are not
// thread-safe; threads open their own sessions with connect(node).
//
// TearDown stops the servers, fails the test if a server log contains
// "terminated by signal" (a crashed server process), prints the tail of every
// log when the test failed, and removes the directory (kept with
// PGMESH_KEEP_TMP=1).
//
//   class ReplicationTest : public pgmesh::test::MeshTest {
//   protected:
//       std::optional<pgmesh::test::MeshOptions> cluster_options() const override {
//           return pgmesh::test::MeshOptions{.nodes = 3};
//       }
//   };
//   TEST_F(ReplicationTest, InsertArrives) {
//       exec(1, "CREATE TABLE t (id int PRIMARY KEY)");  // DDL on each node for now
//       ...
//       wait_for_sync(1);
//       EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "1");
//       verify_all();
//   }
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "local_cluster.hpp"
#include "pq.hpp"
#include "test_thread.hpp"
#include "verify.hpp"

namespace pgmesh::test {

struct MeshOptions {
    int nodes = 3;
    // Database, extension, create_group on node 1, join_group + wait_for_ready
    // on the others. Without it, only the database is created on each node.
    bool form_mesh = true;
    // "" for plain servers (tests of the fixture itself).
    std::string shared_preload_libraries = "pgmesh";
    std::string db_name = "pgmesh";
    // Extra postgresql.conf settings (plain values), written last so they win.
    std::vector<local::Setting> settings;
    std::chrono::seconds ready_timeout{120};
    // Off (ALTER DATABASE ... SET pgmesh.replicate_ddl = off on every node):
    // DDL runs on the node it is sent to only, for tests that build each
    // node's schema themselves. Tests of DDL replication turn it on.
    bool replicate_ddl = false;
};

// A fresh directory "/tmp/<prefix>XXXXXX" that the server user owns; the
// prefix must start with "pgmesh-". The directory records this process as
// its owner, and the first call in a test process cleans up directories whose
// owner died without its TearDown (killed by a ctest timeout, say): it stops
// the servers of <dir>/cluster and removes the directory.
std::filesystem::path make_temp_dir(std::string_view prefix);
// True when PGMESH_KEEP_TMP=1: keep test directories for inspection.
bool keep_temp_dirs();
// Marks dir as kept (never cleaned up automatically) and says so.
void keep_temp_dir(const std::filesystem::path &dir);

// Lines of a server log with "terminated by signal", except those about the
// processes in tolerated_pids ("... (PID 123) was terminated by signal 9").
std::vector<std::string> unexpected_signal_terminations(const std::filesystem::path &log_file,
                                                        std::span<const pid_t> tolerated_pids = {});

// One server process stopped with SIGSTOP until thaw() or the end of the
// object's scope (SIGCONT), so that a test chooses when that process
// works: the WAL writer, say, to keep asynchronous commits unflushed.
class FrozenProcess {
public:
    explicit FrozenProcess(pid_t pid);
    ~FrozenProcess() { thaw(); }
    FrozenProcess(const FrozenProcess &) = delete;
    FrozenProcess &operator=(const FrozenProcess &) = delete;
    void thaw();

private:
    pid_t pid_;
};

class MeshTest : public ::testing::Test {
protected:
    // Override to have SetUp start a cluster; otherwise call start_cluster()
    // in the test body (e.g. to choose N per test).
    virtual std::optional<MeshOptions> cluster_options() const { return std::nullopt; }

    void SetUp() override;
    void TearDown() override;

    // Creates, starts, creates the database and, if options.form_mesh, forms
    // the group. One cluster per test.
    void start_cluster(const MeshOptions &options);
    // For clusters started with form_mesh = false.
    void form_mesh();

    local::LocalCluster &cluster();
    int node_count() const;
    std::string dsn(int node) const;
    std::string dsn(int node, std::string_view dbname) const;
    int port(int node) const;
    std::filesystem::path log_file(int node) const;
    const std::filesystem::path &temp_dir() const { return temp_dir_; }

    // The node's shared session (opened on first use, reopened after the
    // node restarts or the connection breaks). Session state (SET, an open
    // transaction) carries over between helper calls.
    pq::Connection &conn(int node);
    // A new, separate session (e.g. for concurrent transactions).
    pq::Connection connect(int node);
    pq::Connection connect(int node, std::string_view dbname);
    // A new session as another role (local clusters trust 127.0.0.1).
    pq::Connection connect_as(int node, std::string_view role);

    // SQL on the node's shared session; SQL errors throw pq::Error.
    void exec(int node, std::string_view sql);
    // The same on every node, one after the other.
    void exec_all(std::string_view sql);
    // The single value of a one-row, one-column result; throws on NULL.
    std::string query_value(int node, std::string_view sql);
    std::optional<std::string> query_nullable(int node, std::string_view sql);
    pq::Rows query_rows(int node, std::string_view sql);
    // Runs sql expecting it to fail with this SQLSTATE and (if not empty) a
    // primary message containing message_substring; records a test failure
    // otherwise. Returns the error for further checks (detail, hint).
    pq::Error expect_error(int node, std::string_view sql, std::string_view sqlstate,
                           std::string_view message_substring = {});
    // The same on a session of the test's own (connect_as, ...).
    static pq::Error expect_error(pq::Connection &session, std::string_view sql,
                                  std::string_view sqlstate,
                                  std::string_view message_substring = {});
    // The node's whole server log.
    std::string server_log(int node) const;

    // Server control.
    void start(int node);
    void stop(int node);
    void restart(int node);
    // SIGKILL the postmaster (a crash); start(node) later runs crash
    // recovery. Fails the test if some server child ignored the postmaster's
    // death for 30 s.
    void kill9(int node);
    // SIGKILL one child process of the node's postmaster (a backend, a
    // worker). The postmaster then logs "... (PID <pid>) was terminated by
    // signal 9" and restarts all sessions; that one line is tolerated by the
    // TearDown check. Returns once the line is in the log: until then the
    // postmaster may not have noticed, and still accepts sessions that the
    // restart then ends.
    void kill_child9(int node, pid_t pid);
    bool is_running(int node) const;
    pid_t postmaster_pid(int node) const;  // throws if not running
    // The pid of the node's one process of this pg_stat_activity
    // backend_type ("walwriter", "checkpointer", ...); throws if none.
    pid_t server_process(int node, std::string_view backend_type);

    // Polls condition (exceptions count as "not yet") until it holds or the
    // timeout passes; returns whether it held. Use as
    // ASSERT_TRUE(wait_until([&] { ... }, 30s)).
    bool wait_until(const std::function<bool()> &condition,
                    std::chrono::milliseconds timeout = std::chrono::seconds(60),
                    std::chrono::milliseconds interval = std::chrono::milliseconds(100));
    // SELECT pgmesh.wait_for_sync(timeout) on node must return true; throws
    // otherwise.
    void wait_for_sync(int node, int timeout_seconds = 60);
    void wait_for_sync_all(int timeout_seconds = 60);
    // Waits until some row of the node's pgmesh.status has a last_error
    // containing `fragment`, and returns that last_error; records a test
    // failure (and returns the last one seen) when none shows in time.
    std::string wait_for_last_error(int node, std::string_view fragment,
                                    std::chrono::milliseconds timeout = std::chrono::seconds(60));

    // Fault points (src/pg/fault.hpp) for the apply workers of `node`: a
    // database setting, read by every new session, then the workers restart
    // to read it. disarm_workers undoes it.
    void arm_workers(int node, std::string_view points);
    void disarm_workers(int node);
    // Terminates the node's apply workers and waits until new ones stream.
    void restart_apply_workers(int node);
    // Sessions of `node` waiting for an advisory lock (a held fault point).
    int advisory_waiters(int node);

    // No peer's apply is stopped on an error, and no node's conflict history
    // records one (not even one that a retry got past).
    void expect_no_apply_errors();

    // Compares all user tables on all nodes like `pgmesh verify`. Records a
    // test failure showing the comparison when they differ; returns whether
    // all were equal.
    bool verify_all();
    local::VerifyReport verify_report();

private:
    void forget_connection(int node);
    void check_node(int node) const;

    std::filesystem::path temp_dir_;
    std::optional<local::LocalCluster> cluster_;
    MeshOptions options_;
    std::map<int, pq::Connection> connections_;
    std::map<int, std::vector<pid_t>> tolerated_terminations_;
};

}  // namespace pgmesh::test
