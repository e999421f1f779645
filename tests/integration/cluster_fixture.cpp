#include "cluster_fixture.hpp"

#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "process.hpp"

namespace fs = std::filesystem;

namespace pgmesh::test {

namespace {

constexpr size_t kLogTailLinesOnFailure = 80;
constexpr std::chrono::seconds kChildGraceAfterKill9{30};

// Temporary directories record the test process that owns them, so that a
// later test can stop the servers of a test process that died without its
// TearDown (e.g. killed by ctest's timeout) instead of leaving them running.
constexpr std::string_view kTempDirParent = "/tmp";
constexpr std::string_view kTempDirNamePrefix = "pgmesh-";
constexpr std::string_view kOwnerFileName = "owner.pid";
constexpr std::string_view kClusterSubdir = "cluster";

void progress(std::string_view message) {
    std::cout << "[pgmesh fixture] " << message << "\n";
}

void clean_up_abandoned_temp_dirs() {
    std::error_code error;
    for (const auto &entry : fs::directory_iterator(kTempDirParent, error)) {
        if (!entry.path().filename().string().starts_with(kTempDirNamePrefix)) continue;
        std::ifstream owner_file(entry.path() / kOwnerFileName);
        long owner = 0;
        if (!owner_file || !(owner_file >> owner) || owner <= 0) continue;
        if (local::process_alive(static_cast<pid_t>(owner))) continue;
        progress("cleaning up " + entry.path().string() + " (its test process " +
                 std::to_string(owner) + " is gone)");
        const fs::path cluster_dir = entry.path() / kClusterSubdir;
        if (local::LocalCluster::exists(cluster_dir)) {
            try {
                local::LocalCluster::open(cluster_dir).stop_all(local::StopMode::kImmediate);
            } catch (const std::exception &stop_error) {
                progress(std::string("  could not stop its servers: ") + stop_error.what());
                continue;
            }
        }
        std::error_code remove_error;
        fs::remove_all(entry.path(), remove_error);
    }
}

}  // namespace

bool keep_temp_dirs() {
    const char *keep = std::getenv("PGMESH_KEEP_TMP");
    return keep != nullptr && std::string_view(keep) == "1";
}

void keep_temp_dir(const fs::path &dir) {
    std::error_code ignored;
    fs::remove(dir / kOwnerFileName, ignored);
    std::cout << "[pgmesh fixture] kept " << dir.string() << " (PGMESH_KEEP_TMP=1)\n";
}

fs::path make_temp_dir(std::string_view prefix) {
    static std::once_flag cleaned_up;
    std::call_once(cleaned_up, clean_up_abandoned_temp_dirs);
    // Short paths under /tmp keep the servers' Unix socket paths within the
    // 107 bytes sockaddr_un allows.
    std::string pattern = std::string(kTempDirParent) + "/" + std::string(prefix) + "XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
    }
    local::give_to_server_user(pattern);
    std::ofstream(fs::path(pattern) / kOwnerFileName) << getpid() << "\n";
    return pattern;
}

std::vector<std::string> unexpected_signal_terminations(const fs::path &log_file,
                                                        std::span<const pid_t> tolerated_pids) {
    std::vector<std::string> unexpected;
    for (std::string &line : local::find_signal_terminations(log_file)) {
        bool tolerated = false;
        for (pid_t pid : tolerated_pids) {
            tolerated =
                tolerated || line.find("(PID " + std::to_string(pid) + ")") != std::string::npos;
        }
        if (!tolerated) unexpected.push_back(std::move(line));
    }
    return unexpected;
}

void MeshTest::SetUp() {
    if (std::optional<MeshOptions> options = cluster_options()) start_cluster(*options);
}

void MeshTest::start_cluster(const MeshOptions &options) {
    if (cluster_) throw std::logic_error("start_cluster: this test already has a cluster");
    options_ = options;
    temp_dir_ = make_temp_dir("pgmesh-test-");
    local::ClusterOptions cluster_options;
    cluster_options.dir = temp_dir_ / kClusterSubdir;
    cluster_options.node_count = options.nodes;
    cluster_options.db_name = options.db_name;
    cluster_options.shared_preload_libraries = options.shared_preload_libraries;
    cluster_options.fast_unsafe_storage = true;
    cluster_options.extra_settings = options.settings;
    cluster_ = local::LocalCluster::create(cluster_options, progress);
    cluster_->start_all();
    for (int node = 1; node <= node_count(); ++node) {
        cluster_->create_database(node);
        if (!options.replicate_ddl && options.shared_preload_libraries == "pgmesh") {
            pq::Connection c = pq::Connection::open(dsn(node));
            c.exec("ALTER DATABASE " + c.quote_identifier(options.db_name) +
                   " SET pgmesh.replicate_ddl = off");
        }
    }
    if (options.form_mesh) form_mesh();
}

void MeshTest::form_mesh() {
    cluster().form_mesh(options_.ready_timeout);
}

void MeshTest::TearDown() {
    connections_.clear();
    if (cluster_) {
        try {
            cluster_->stop_all();
        } catch (const std::exception &error) {
            ADD_FAILURE() << "stopping the servers failed: " << error.what();
        }
        // Checked after stopping, so crashes during shutdown count too.
        for (const local::NodeInfo &node : cluster_->nodes()) {
            const std::vector<pid_t> &tolerated = tolerated_terminations_[node.number];
            std::vector<std::string> crashes =
                unexpected_signal_terminations(node.log_file(), tolerated);
            if (!crashes.empty()) {
                std::ostringstream lines;
                for (const std::string &line : crashes) lines << "\n  " << line;
                ADD_FAILURE() << node.name << "'s server log reports processes terminated by "
                              << "a signal (crashes):" << lines.str();
            }
        }
        if (HasFailure()) {
            for (const local::NodeInfo &node : cluster_->nodes()) {
                std::cout << "----- last " << kLogTailLinesOnFailure << " lines of "
                          << node.log_file().string() << " -----\n"
                          << local::read_tail(node.log_file(), kLogTailLinesOnFailure)
                          << "----- end of " << node.name << "'s log -----\n";
            }
        }
    }
    if (!temp_dir_.empty()) {
        if (keep_temp_dirs()) {
            keep_temp_dir(temp_dir_);
        } else {
            std::error_code error;
            fs::remove_all(temp_dir_, error);
            if (error)
                std::cout << "cannot remove " << temp_dir_ << ": " << error.message() << "\n";
        }
    }
    cluster_.reset();
}

local::LocalCluster &MeshTest::cluster() {
    if (!cluster_) throw std::logic_error("no cluster: call start_cluster() first");
    return *cluster_;
}

int MeshTest::node_count() const {
    return cluster_ ? cluster_->node_count() : 0;
}

void MeshTest::check_node(int node) const {
    if (!cluster_) throw std::logic_error("no cluster: call start_cluster() first");
    cluster_->node(node);  // throws std::out_of_range for a bad number
}

std::string MeshTest::dsn(int node) const {
    check_node(node);
    return cluster_->dsn(node);
}

std::string MeshTest::dsn(int node, std::string_view dbname) const {
    check_node(node);
    return cluster_->dsn(node, dbname);
}

int MeshTest::port(int node) const {
    check_node(node);
    return cluster_->node(node).port;
}

fs::path MeshTest::log_file(int node) const {
    check_node(node);
    return cluster_->node(node).log_file();
}

pq::Connection &MeshTest::conn(int node) {
    auto found = connections_.find(node);
    if (found != connections_.end() && found->second.is_ok()) return found->second;
    forget_connection(node);
    return connections_.emplace(node, connect(node)).first->second;
}

pq::Connection MeshTest::connect(int node) {
    return pq::Connection::open(dsn(node));
}

pq::Connection MeshTest::connect(int node, std::string_view dbname) {
    return pq::Connection::open(dsn(node, dbname));
}

pq::Connection MeshTest::connect_as(int node, std::string_view role) {
    return pq::Connection::open(dsn(node) + " user=" + pq::quote_conninfo_value(role));
}

std::string MeshTest::server_log(int node) const {
    std::ifstream in(log_file(node));
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

void MeshTest::exec_all(std::string_view sql) {
    for (int n = 1; n <= node_count(); n++) exec(n, sql);
}

void MeshTest::expect_no_apply_errors() {
    for (int n = 1; n <= node_count(); n++) {
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM pgmesh.status WHERE last_error IS NOT NULL"),
                  "0")
            << "node" << n;
        EXPECT_EQ(query_value(n,
                              "SELECT count(*) FROM pgmesh.conflict_history WHERE resolution = "
                              "'error'"),
                  "0")
            << "node" << n;
    }
}

void MeshTest::arm_workers(int node, std::string_view points) {
    exec(node, "ALTER DATABASE pgmesh SET pgmesh.fault_points = '" + std::string(points) + "'");
    restart_apply_workers(node);
}

void MeshTest::disarm_workers(int node) {
    exec(node, "ALTER DATABASE pgmesh RESET pgmesh.fault_points");
    restart_apply_workers(node);
}

void MeshTest::restart_apply_workers(int node) {
    std::set<std::string> old;
    for (const auto &row : query_rows(node, "SELECT worker_pid FROM pgmesh.status"))
        if (row.at(0)) old.insert(*row.at(0));
    exec(node, "SELECT pg_terminate_backend(worker_pid) FROM pgmesh.status");
    ASSERT_TRUE(wait_until([&] {
        for (const auto &row :
             query_rows(node, "SELECT worker_pid, connected FROM pgmesh.status")) {
            if (!row.at(0) || old.count(*row.at(0)) || row.at(1) != "t") return false;
        }
        return true;
    })) << "apply workers of node"
        << node << " did not come back";
}

int MeshTest::advisory_waiters(int node) {
    return std::stoi(query_value(
        node, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"));
}

void MeshTest::forget_connection(int node) {
    connections_.erase(node);
}

void MeshTest::exec(int node, std::string_view sql) {
    try {
        conn(node).exec(sql);
    } catch (const pq::Error &error) {
        if (error.is_connection_error()) forget_connection(node);
        throw;
    }
}

std::optional<std::string> MeshTest::query_nullable(int node, std::string_view sql) {
    try {
        return conn(node).query_value(sql);
    } catch (const pq::Error &error) {
        if (error.is_connection_error()) forget_connection(node);
        throw;
    }
}

std::string MeshTest::query_value(int node, std::string_view sql) {
    std::optional<std::string> value = query_nullable(node, sql);
    if (!value)
        throw std::runtime_error("NULL from node " + std::to_string(node) + ": " +
                                 std::string(sql));
    return *value;
}

pq::Rows MeshTest::query_rows(int node, std::string_view sql) {
    try {
        return conn(node).exec(sql).rows();
    } catch (const pq::Error &error) {
        if (error.is_connection_error()) forget_connection(node);
        throw;
    }
}

pq::Error MeshTest::expect_error(int node, std::string_view sql, std::string_view sqlstate,
                                 std::string_view message_substring) {
    pq::Error error = expect_error(conn(node), sql, sqlstate, message_substring);
    if (error.is_connection_error()) forget_connection(node);
    return error;
}

pq::Error MeshTest::expect_error(pq::Connection &session, std::string_view sql,
                                 std::string_view sqlstate, std::string_view message_substring) {
    try {
        session.exec(sql);
    } catch (const pq::Error &error) {
        EXPECT_EQ(error.sqlstate(), sqlstate) << sql << "\n" << error.what();
        if (!message_substring.empty()) {
            EXPECT_NE(error.message().find(message_substring), std::string::npos)
                << "the error message of " << sql << " lacks \"" << message_substring << "\":\n"
                << error.what();
        }
        return error;
    }
    ADD_FAILURE() << "expected SQLSTATE " << sqlstate << ", but " << sql << " succeeded";
    return pq::Error("", "no error (the statement succeeded)");
}

void MeshTest::start(int node) {
    forget_connection(node);
    cluster().start(node);
}

void MeshTest::stop(int node) {
    forget_connection(node);
    cluster().stop(node);
}

void MeshTest::restart(int node) {
    forget_connection(node);
    cluster().restart(node);
}

void MeshTest::kill9(int node) {
    forget_connection(node);
    std::vector<pid_t> lingering = cluster().kill9(node, kChildGraceAfterKill9);
    if (!lingering.empty()) {
        std::ostringstream pids;
        for (pid_t pid : lingering) pids << " " << pid;
        ADD_FAILURE() << "after kill -9 of node" << node << "'s postmaster, these children were "
                      << "still running after " << kChildGraceAfterKill9.count()
                      << " s and were killed:" << pids.str()
                      << " (a server process must exit when the postmaster dies)";
    }
}

void MeshTest::kill_child9(int node, pid_t pid) {
    pid_t postmaster = postmaster_pid(node);
    std::optional<local::ProcessInfo> info = local::process_info(pid);
    if (!info || info->parent_pid != postmaster) {
        throw std::invalid_argument("kill_child9: " + std::to_string(pid) +
                                    " is not a child of node" + std::to_string(node) +
                                    "'s postmaster " + std::to_string(postmaster));
    }
    tolerated_terminations_[node].push_back(pid);
    // Every session of the node ends in the crash restart that follows.
    forget_connection(node);
    if (::kill(pid, SIGKILL) != 0) {
        throw std::system_error(errno, std::generic_category(), "kill -9 " + std::to_string(pid));
    }
    const std::string marker = "(PID " + std::to_string(pid) + ")";
    bool noticed = wait_until([&] {
        for (const std::string &line : local::find_signal_terminations(log_file(node)))
            if (line.find(marker) != std::string::npos) return true;
        return false;
    });
    if (!noticed)
        ADD_FAILURE() << "node" << node << "'s postmaster did not log the end of " << pid
                      << " within 60 s";
}

pid_t MeshTest::server_process(int node, std::string_view backend_type) {
    pq::Connection &c = conn(node);
    std::string type(backend_type);
    pq::Value pid = c.exec_params("SELECT pid FROM pg_stat_activity WHERE backend_type = $1",
                                  std::vector<pq::Value>{type})
                        .get(0, 0);
    if (!pid) throw std::runtime_error("node" + std::to_string(node) + " has no " + type);
    return static_cast<pid_t>(std::stol(*pid));
}

FrozenProcess::FrozenProcess(pid_t pid) : pid_(pid) {
    if (::kill(pid_, SIGSTOP) != 0)
        throw std::system_error(errno, std::generic_category(),
                                "kill -STOP " + std::to_string(pid_));
}

void FrozenProcess::thaw() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    pid_ = 0;
}

bool MeshTest::is_running(int node) const {
    check_node(node);
    return cluster_->is_running(node);
}

pid_t MeshTest::postmaster_pid(int node) const {
    check_node(node);
    std::optional<pid_t> pid = cluster_->postmaster_pid(node);
    if (!pid) throw std::runtime_error("node" + std::to_string(node) + " is not running");
    return *pid;
}

bool MeshTest::wait_until(const std::function<bool()> &condition, std::chrono::milliseconds timeout,
                          std::chrono::milliseconds interval) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string last_error;
    for (;;) {
        try {
            if (condition()) return true;
        } catch (const std::exception &error) {
            last_error = error.what();
        }
        if (std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(interval);
    }
    std::cout << "[pgmesh fixture] wait_until: condition not met within " << timeout.count()
              << " ms" << (last_error.empty() ? "" : "; last exception: " + last_error) << "\n";
    return false;
}

void MeshTest::wait_for_sync(int node, int timeout_seconds) {
    const std::string sql = "SELECT pgmesh.wait_for_sync(" + std::to_string(timeout_seconds) + ")";
    if (query_value(node, sql) != "t") {
        throw std::runtime_error("node" + std::to_string(node) + ": " + sql +
                                 " returned false: some peer did not apply this node's changes "
                                 "in time (see pgmesh.status)");
    }
}

std::string MeshTest::wait_for_last_error(int node, std::string_view fragment,
                                          std::chrono::milliseconds timeout) {
    std::string last;
    bool seen = wait_until(
        [&] {
            for (const auto &row : query_rows(node, "SELECT last_error FROM pgmesh.status")) {
                if (row.at(0) && row.at(0)->find(fragment) != std::string::npos) {
                    last = *row.at(0);
                    return true;
                }
                if (row.at(0)) last = *row.at(0);
            }
            return false;
        },
        timeout);
    EXPECT_TRUE(seen) << "node" << node << " last_error: " << last;
    return last;
}

void MeshTest::wait_for_sync_all(int timeout_seconds) {
    for (int node = 1; node <= node_count(); ++node) wait_for_sync(node, timeout_seconds);
}

local::VerifyReport MeshTest::verify_report() {
    std::vector<local::NodeToVerify> nodes;
    for (const local::NodeInfo &node : cluster().nodes()) {
        nodes.push_back({node.name, cluster().dsn(node.number)});
    }
    return local::verify_nodes(nodes);
}

bool MeshTest::verify_all() {
    local::VerifyReport report = verify_report();
    if (!report.all_equal()) ADD_FAILURE() << "nodes differ:\n" << report.format();
    return report.all_equal();
}

}  // namespace pgmesh::test
