// The nemesis: carries out a fault schedule on a local cluster and its link
// proxies, one fault at a time, each healed before the next.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "link_proxy.hpp"
#include "local_cluster.hpp"
#include "pq.hpp"
#include "schedule.hpp"

namespace pgmesh::faults {

class Nemesis {
public:
    using Log = std::function<void(std::string_view)>;
    Nemesis(local::LocalCluster &cluster, LinkProxies &proxies, Log log)
        : cluster_(cluster), proxies_(proxies), log_(std::move(log)) {}

    // Runs the schedule from `start` on; returns early once stop is set
    // (after healing the fault in progress).
    void run(const std::vector<Fault> &schedule, std::chrono::steady_clock::time_point start,
             const std::atomic<bool> &stop);
    // Whatever is still broken: every server running and not stopped,
    // every link forwarding.
    void heal_all();

    // Faults carried out, by kind; those that found no target (no such
    // worker at that moment) are counted as skipped.
    const std::map<FaultKind, int> &injected() const { return injected_; }
    int skipped() const { return skipped_; }
    // Children we killed, per node: their "terminated by signal 9" lines in
    // the server log are ours.
    const std::map<int, std::vector<pid_t>> &killed_children() const { return killed_children_; }
    // Processes that outlived their postmaster's kill -9 by 30 s.
    const std::vector<std::string> &stragglers() const { return stragglers_; }

private:
    void inject(const Fault &fault);
    void kill_child(int node, std::string_view query, std::span<const pq::Value> params,
                    std::string_view what);
    void signal_server(int node, int signal);

    local::LocalCluster &cluster_;
    LinkProxies &proxies_;
    Log log_;
    std::map<FaultKind, int> injected_;
    int skipped_ = 0;
    std::map<int, std::vector<pid_t>> killed_children_;
    std::vector<std::string> stragglers_;
    std::vector<int> frozen_;
};

}  // namespace pgmesh::faults
