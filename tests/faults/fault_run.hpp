// One fault run: a local group of K nodes behind link proxies, the client
// workloads on every node, the nemesis's seeded schedule, then healing,
// catching up, and every check. docs/faults.md describes it.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>

namespace pgmesh::faults {

struct RunOptions {
    int nodes = 3;
    std::chrono::seconds length{60};  // of the faulty part, from the first client on
    uint64_t seed = 1;
    std::chrono::milliseconds pace{20};  // each client's pause between transactions
    bool keep = false;                   // keep the cluster directory even when all passed
};

// Prints the schedule as it goes and a summary table at the end; returns
// whether every check passed (0 lost, 0 duplicated, 0 partial reads, 0
// divergent tables, 0 unexpected crashes, ...).
bool run(const RunOptions &options, std::ostream &out);

}  // namespace pgmesh::faults
