#include "fault_run.hpp"

#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "cluster_fixture.hpp"
#include "link_proxy.hpp"
#include "local_cluster.hpp"
#include "nemesis.hpp"
#include "pq.hpp"
#include "schedule.hpp"
#include "verify.hpp"
#include "workloads.hpp"

namespace pgmesh::faults {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

constexpr int kCatchUpTimeoutSeconds = 180;

class RunLog {
public:
    explicit RunLog(std::ostream &out) : out_(out), start_(std::chrono::steady_clock::now()) {}
    void operator()(std::string_view line) {
        std::lock_guard lock(mutex_);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
        out_ << "[" << std::fixed << std::setprecision(1) << std::setw(7) << seconds << "s] "
             << line << std::endl;
    }

private:
    std::mutex mutex_;
    std::ostream &out_;
    std::chrono::steady_clock::time_point start_;
};

std::string node_name(int node) {
    return "node" + std::to_string(node);
}

std::string service_dsn(int node, const std::string &db_name) {
    return "service=" + node_name(node) + " dbname=" + pq::quote_conninfo_value(db_name);
}

// Node `node` reaches itself directly and every peer through its proxy.
fs::path write_service_file(const local::LocalCluster &cluster, const LinkProxies &proxies,
                            int node) {
    const fs::path file = cluster.node(node).node_dir / "pg_service.conf";
    std::ofstream out(file);
    for (const local::NodeInfo &peer : cluster.nodes()) {
        const int port = peer.number == node ? peer.port : proxies.port(node, peer.number);
        out << "[" << node_name(peer.number) << "]\nhost=127.0.0.1\nport=" << port
            << "\nuser=postgres\n\n";
    }
    out.close();
    if (!out) throw std::runtime_error("cannot write " + file.string());
    return file;
}

void form_group(local::LocalCluster &cluster) {
    const std::string db = cluster.db_name();
    for (const local::NodeInfo &info : cluster.nodes()) {
        cluster.create_database(info.number);
        cluster.create_extension(info.number);
    }
    {
        pq::Connection first = pq::Connection::open(cluster.dsn(1));
        const std::array<pq::Value, 2> params = {node_name(1), service_dsn(1, db)};
        first.exec_params("SELECT pgmesh.create_group($1, $2)", params);
    }
    for (const local::NodeInfo &info : cluster.nodes()) {
        if (info.number == 1) continue;
        pq::Connection conn = pq::Connection::open(cluster.dsn(info.number));
        const std::array<pq::Value, 3> params = {info.name, service_dsn(info.number, db),
                                                 service_dsn(1, db)};
        conn.exec_params("SELECT pgmesh.join_group($1, $2, $3)", params);
        if (conn.query_value("SELECT pgmesh.wait_for_ready(180)") != "t")
            throw std::runtime_error(info.name + " did not become ready");
    }
}

// Every node's changes on every other node: false for the nodes that did
// not get there in time.
std::vector<int> catch_up(const local::LocalCluster &cluster, RunLog &log) {
    std::vector<int> behind;
    for (const local::NodeInfo &info : cluster.nodes()) {
        try {
            pq::Connection conn = pq::Connection::open(cluster.dsn(info.number), 30s);
            const std::array<pq::Value, 1> params = {std::to_string(kCatchUpTimeoutSeconds)};
            if (conn.exec_params("SELECT pgmesh.wait_for_sync($1::int)", params).get(0, 0) != "t")
                behind.push_back(info.number);
        } catch (const pq::Error &error) {
            log(info.name + ": wait_for_sync failed: " + error.what());
            behind.push_back(info.number);
        }
    }
    return behind;
}

struct LogFindings {
    std::vector<std::string> crashes;
    std::vector<std::string> panics;
};

LogFindings scan_logs(const local::LocalCluster &cluster, const Nemesis &nemesis) {
    LogFindings findings;
    for (const local::NodeInfo &info : cluster.nodes()) {
        std::vector<pid_t> ours;
        if (auto it = nemesis.killed_children().find(info.number);
            it != nemesis.killed_children().end())
            ours = it->second;
        for (std::string &line : test::unexpected_signal_terminations(info.log_file(), ours))
            findings.crashes.push_back(info.name + ": " + line);
        std::ifstream log(info.log_file());
        for (std::string line; std::getline(log, line);) {
            if (line.find("PANIC:") != std::string::npos)
                findings.panics.push_back(info.name + ": " + line);
        }
    }
    return findings;
}

// Conflicts that stopped an apply (resolution 'error'), per node.
uint64_t apply_errors(const local::LocalCluster &cluster, std::vector<std::string> &examples) {
    uint64_t total = 0;
    for (const local::NodeInfo &info : cluster.nodes()) {
        pq::Connection conn = pq::Connection::open(cluster.dsn(info.number));
        for (const pq::Row &row : conn.exec("SELECT occurrences, table_name, message "
                                            "FROM pgmesh.conflict_history "
                                            "WHERE resolution = 'error' ORDER BY id")
                                      .rows()) {
            total++;
            if (examples.size() < 10)
                examples.push_back(info.name + ": " + row[1].value_or("") + ": " +
                                   row[2].value_or("") + " (" + row[0].value_or("") + " times)");
        }
    }
    return total;
}

void print_row(std::ostream &out, std::string_view label, uint64_t value) {
    out << "  " << std::left << std::setw(36) << label << std::right << std::setw(10) << value
        << "\n";
}

}  // namespace

bool run(const RunOptions &options, std::ostream &out) {
    RunLog log(out);
    log("fault run: seed " + std::to_string(options.seed) + ", " + std::to_string(options.nodes) +
        " nodes, " + std::to_string(options.length.count()) +
        " s of faults (replay: tests/faults/run --seconds " +
        std::to_string(options.length.count()) + " --nodes " + std::to_string(options.nodes) +
        " --seed " + std::to_string(options.seed) + ")");
    const std::vector<Fault> schedule =
        make_schedule(options.seed, options.nodes, std::chrono::milliseconds(options.length));

    const fs::path dir = test::make_temp_dir("pgmesh-faults-");
    local::ClusterOptions cluster_options;
    cluster_options.dir = dir / "cluster";
    cluster_options.node_count = options.nodes;
    cluster_options.fast_unsafe_storage = true;
    // A frozen or cut-off peer is given up on after 5 s rather than 60.
    cluster_options.extra_settings = {{"wal_sender_timeout", "5s"}};
    std::optional<local::LocalCluster> cluster;
    std::optional<LinkProxies> proxies;
    std::optional<Nemesis> nemesis;
    bool passed = false;
    try {
        cluster = local::LocalCluster::create(cluster_options, [&](std::string_view m) { log(m); });
        std::map<int, int> ports;
        for (const local::NodeInfo &info : cluster->nodes()) ports[info.number] = info.port;
        proxies.emplace(ports);
        for (const local::NodeInfo &info : cluster->nodes()) {
            const fs::path file = write_service_file(*cluster, *proxies, info.number);
            cluster->set_server_environment(info.number, {"PGSERVICEFILE=" + file.string()});
        }
        cluster->start_all();
        form_group(*cluster);
        log("group formed; every link goes through a proxy");

        std::vector<ClientTarget> targets;
        for (const local::NodeInfo &info : cluster->nodes())
            targets.push_back(
                ClientTarget{info.number, cluster->dsn(info.number),
                             options.seed * 1000003 + static_cast<uint64_t>(info.number)});
        Workloads workloads(options.nodes, options.pace);
        workloads.create_schema(targets);
        if (std::vector<int> behind = catch_up(*cluster, log); !behind.empty())
            throw std::runtime_error("the schema did not reach every node before the run");

        nemesis.emplace(*cluster, *proxies, [&](std::string_view m) { log(m); });
        std::atomic<bool> stop{false};
        std::vector<std::thread> clients;
        for (const ClientTarget &t : targets) {
            clients.emplace_back([&, t] { workloads.unique_inserts(t, stop); });
            clients.emplace_back([&, t] { workloads.bank_transfers(t, stop); });
            clients.emplace_back([&, t] { workloads.bank_reads(t, stop); });
            clients.emplace_back([&, t] { workloads.contended_writes(t, stop); });
        }
        clients.emplace_back([&] { workloads.schema_changes(targets, stop); });
        log("clients started: " + std::to_string(clients.size()));

        const auto start = std::chrono::steady_clock::now();
        std::string nemesis_error;
        try {
            nemesis->run(schedule, start, stop);
        } catch (const std::exception &error) {
            nemesis_error = error.what();
            log(std::string("nemesis failed: ") + error.what());
        }
        while (nemesis_error.empty() && std::chrono::steady_clock::now() < start + options.length)
            std::this_thread::sleep_for(100ms);
        stop = true;
        nemesis->heal_all();
        log("faults over; healed; waiting for the clients to finish");
        for (std::thread &t : clients) t.join();

        log("waiting for every node to catch up (pgmesh.wait_for_sync)");
        const std::vector<int> behind = catch_up(*cluster, log);
        std::vector<local::NodeToVerify> to_verify;
        for (const ClientTarget &t : targets) to_verify.push_back({node_name(t.node), t.dsn});
        const local::VerifyReport verify = local::verify_nodes(to_verify);
        const Workloads::Findings findings = workloads.check(targets);
        const LogFindings logs = scan_logs(*cluster, *nemesis);
        std::vector<std::string> apply_error_examples;
        const uint64_t errors = apply_errors(*cluster, apply_error_examples);

        // The report.
        std::ostringstream table;
        table << "\n=== fault run summary: seed " << options.seed << ", " << options.nodes
              << " nodes, " << options.length.count() << " s ===\n";
        table << "faults injected:\n";
        int total_faults = 0;
        for (FaultKind kind : kAllFaultKinds) {
            const auto it = nemesis->injected().find(kind);
            const int count = it == nemesis->injected().end() ? 0 : it->second;
            total_faults += count;
            print_row(table, name(kind), static_cast<uint64_t>(count));
        }
        print_row(table, "(of which found no target)", static_cast<uint64_t>(nemesis->skipped()));
        print_row(table, "total", static_cast<uint64_t>(total_faults));
        table << "operations (acknowledged / uncertain / failed):\n";
        for (const auto &[workload, c] : workloads.counters()) {
            table << "  " << std::left << std::setw(22) << workload << std::right << std::setw(10)
                  << c.acknowledged << " / " << c.uncertain << " / " << c.failed << "\n";
        }
        table << "errors seen by clients (by SQLSTATE):";
        for (const auto &[what, count] : workloads.errors())
            table << " " << what << "=" << count << ";";
        table << "\nchecks (all must be 0):\n";
        const std::vector<std::pair<std::string, uint64_t>> checks = {
            {"acknowledged rows lost", findings.lost},
            {"rows duplicated", findings.duplicated},
            {"partial reads", findings.partial_reads},
            {"rows/values no client committed", findings.foreign_values},
            {"conflict history disagreeing", findings.inconsistent_conflicts},
            {"schema differences", findings.schema_differences},
            {"divergent tables", verify.differing_tables.size()},
            {"nodes not caught up", behind.size()},
            {"unexpected crashes", logs.crashes.size()},
            {"PANICs", logs.panics.size()},
            {"apply errors", errors},
            {"processes outliving their postmaster", nemesis->stragglers().size()},
            {"nemesis errors", nemesis_error.empty() ? 0u : 1u},
        };
        passed = true;
        for (const auto &[label, value] : checks) {
            print_row(table, label, value);
            passed = passed && value == 0;
        }
        std::vector<std::string> details = findings.examples;
        details.insert(details.end(), logs.crashes.begin(), logs.crashes.end());
        details.insert(details.end(), logs.panics.begin(), logs.panics.end());
        details.insert(details.end(), apply_error_examples.begin(), apply_error_examples.end());
        details.insert(details.end(), nemesis->stragglers().begin(), nemesis->stragglers().end());
        if (!nemesis_error.empty()) details.push_back("nemesis: " + nemesis_error);
        if (!verify.all_equal()) details.push_back(verify.format());
        if (!details.empty()) {
            table << "details:\n";
            for (const std::string &line : details) table << "  " << line << "\n";
        }
        table << "result: " << (passed ? "PASS" : "FAIL") << " (seed " << options.seed << ")\n";
        out << table.str() << std::flush;
    } catch (const std::exception &error) {
        log(std::string("fault run failed: ") + error.what());
        passed = false;
    }
    if (nemesis) {
        try {
            nemesis->heal_all();
        } catch (const std::exception &) {
        }
    }
    if (cluster) {
        try {
            cluster->stop_all(local::StopMode::kFast);
        } catch (const std::exception &error) {
            log(std::string("stopping the servers: ") + error.what());
        }
    }
    proxies.reset();
    if (passed && !options.keep && !test::keep_temp_dirs()) {
        std::error_code ignored;
        fs::remove_all(dir, ignored);
    } else {
        test::keep_temp_dir(dir);
        log("cluster directory kept: " + dir.string());
    }
    return passed;
}

}  // namespace pgmesh::faults
