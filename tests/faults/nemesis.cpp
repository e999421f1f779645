#include "nemesis.hpp"

#include <dirent.h>
#include <signal.h>

#include <array>
#include <span>
#include <fstream>
#include <sstream>
#include <thread>

#include "pq.hpp"

namespace pgmesh::faults {

using namespace std::chrono_literals;

namespace {

// Sleeps for `length`, in steps, giving up early once stop is set.
void sleep_unless_stopped(std::chrono::milliseconds length, const std::atomic<bool> &stop) {
    const auto until = std::chrono::steady_clock::now() + length;
    while (!stop && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(50ms);
}

// The direct children of pid, from /proc.
std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> children;
    DIR *proc = opendir("/proc");
    if (proc == nullptr) return children;
    while (dirent *entry = readdir(proc)) {
        const std::string name = entry->d_name;
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        std::ifstream stat("/proc/" + name + "/stat");
        std::string line;
        if (!std::getline(stat, line)) continue;
        // pid (comm) state ppid ...: comm may hold spaces, so start after ')'.
        const size_t close = line.rfind(')');
        if (close == std::string::npos) continue;
        std::istringstream rest(line.substr(close + 1));
        char state;
        pid_t ppid;
        if (rest >> state >> ppid && ppid == parent) children.push_back(std::stoi(name));
    }
    closedir(proc);
    return children;
}

}  // namespace

void Nemesis::run(const std::vector<Fault> &schedule, std::chrono::steady_clock::time_point start,
                  const std::atomic<bool> &stop) {
    for (const Fault &fault : schedule) {
        const auto due = start + fault.at;
        while (!stop && std::chrono::steady_clock::now() < due) std::this_thread::sleep_for(50ms);
        if (stop) return;
        const auto late = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - due);
        log_(fault.describe() +
             (late > 1s ? " (" + std::to_string(late.count()) + " ms late)" : ""));
        inject(fault);
    }
}

void Nemesis::signal_server(int node, int signal) {
    std::optional<pid_t> postmaster = cluster_.postmaster_pid(node);
    if (!postmaster) return;
    // The postmaster first, so that it starts no child in between.
    std::vector<pid_t> all{*postmaster};
    if (signal == SIGCONT) all.clear();
    for (pid_t child : children_of(*postmaster)) all.push_back(child);
    if (signal == SIGCONT) all.push_back(*postmaster);
    for (pid_t pid : all) kill(pid, signal);
}

void Nemesis::kill_child(int node, std::string_view query, std::span<const pq::Value> params,
                         std::string_view what) {
    std::optional<pid_t> pid;
    try {
        pq::Connection conn = pq::Connection::open(cluster_.dsn(node), 5s);
        pq::Result result = conn.exec_params(query, params);
        if (result.row_count() > 0 && !result.is_null(0, 0)) pid = std::stoi(*result.get(0, 0));
    } catch (const pq::Error &error) {
        log_("  cannot look for the " + std::string(what) + ": " + error.what());
    }
    if (!pid) {
        log_("  no " + std::string(what) + " runs now: skipped");
        skipped_++;
        return;
    }
    killed_children_[node].push_back(*pid);
    kill(*pid, SIGKILL);
    log_("  killed PID " + std::to_string(*pid));
}

void Nemesis::inject(const Fault &fault) {
    const std::atomic<bool> never{false};
    const std::string peer_name = "node" + std::to_string(fault.peer);
    const std::string node_name = "node" + std::to_string(fault.node);
    switch (fault.kind) {
        case FaultKind::kKillServer: {
            std::vector<pid_t> left = cluster_.kill9(fault.node);
            if (!left.empty())
                stragglers_.push_back(node_name + ": " + std::to_string(left.size()) +
                                      " processes outlived the postmaster's kill -9 by 30 s");
            sleep_unless_stopped(fault.duration, never);
            cluster_.start(fault.node);
            break;
        }
        case FaultKind::kKillApply:
            kill_child(fault.node,
                       "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgmesh apply' "
                       "AND application_name = 'pgmesh apply from ' || $1",
                       std::array<pq::Value, 1>{peer_name}, "apply worker for " + peer_name);
            break;
        case FaultKind::kKillWalsender:
            // Its application_name is the subscriber's: "pgmesh apply <id> from <us>".
            kill_child(fault.node,
                       "SELECT a.pid FROM pg_stat_activity a JOIN pgmesh.node m "
                       "ON a.application_name = 'pgmesh apply ' || lpad(to_hex(m.node_id), 16, "
                       "'0') || ' from ' || $1 WHERE a.backend_type = 'walsender' "
                       "AND m.node_name = $2",
                       std::array<pq::Value, 2>{node_name, peer_name},
                       "walsender serving " + peer_name);
            break;
        case FaultKind::kFreeze:
            signal_server(fault.node, SIGSTOP);
            frozen_.push_back(fault.node);
            sleep_unless_stopped(fault.duration, never);
            signal_server(fault.node, SIGCONT);
            frozen_.clear();
            break;
        case FaultKind::kPartition:
            for (auto [sender, receiver] : fault.blocked)
                proxies_.set_blocked(sender, receiver, true);
            sleep_unless_stopped(fault.duration, never);
            if (fault.abrupt) {
                for (auto [sender, receiver] : fault.blocked) {
                    proxies_.reset(sender, receiver);
                    proxies_.reset(receiver, sender);
                }
                // The resets happen on the proxies' next round.
                std::this_thread::sleep_for(200ms);
            }
            proxies_.heal();
            break;
        case FaultKind::kLatency:
            proxies_.set_delay(fault.node, fault.peer, fault.latency);
            proxies_.set_delay(fault.peer, fault.node, fault.latency);
            sleep_unless_stopped(fault.duration, never);
            proxies_.heal();
            break;
        case FaultKind::kRestartGroup:
            cluster_.stop_all(fault.abrupt ? local::StopMode::kImmediate : local::StopMode::kFast);
            sleep_unless_stopped(fault.duration, never);
            cluster_.start_all();
            break;
    }
    injected_[fault.kind]++;
}

void Nemesis::heal_all() {
    for (int node : frozen_) signal_server(node, SIGCONT);
    frozen_.clear();
    proxies_.heal();
    for (const local::NodeInfo &info : cluster_.nodes()) cluster_.start(info.number);
}

}  // namespace pgmesh::faults
