// The nemesis's plan: which fault happens when, drawn from a seed.
//
// Pure logic (no servers): the same seed, node count and run length always
// give the same schedule, on any machine, so a failing run can be replayed.
// Faults come one after the other, each healed before the next begins; the
// gaps between them let the group make progress under the workload.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmesh::faults {

enum class FaultKind {
    kKillServer,     // kill -9 of a postmaster, restart after `duration`
    kKillApply,      // kill -9 of node's apply worker for peer
    kKillWalsender,  // kill -9 of node's walsender that serves peer
    kFreeze,         // SIGSTOP of every process of node, SIGCONT after `duration`
    kPartition,      // the `blocked` directions drop everything for `duration`
    kLatency,        // link (node, peer) delays both ways by `latency`
    kRestartGroup,   // every server stopped (fast or immediate), then started
};
inline constexpr std::array kAllFaultKinds = {
    FaultKind::kKillServer, FaultKind::kKillApply, FaultKind::kKillWalsender, FaultKind::kFreeze,
    FaultKind::kPartition,  FaultKind::kLatency,   FaultKind::kRestartGroup};

std::string_view name(FaultKind kind);

struct Fault {
    std::chrono::milliseconds at{0};  // from the start of the run
    FaultKind kind = FaultKind::kKillServer;
    int node = 0;
    int peer = 0;
    // kPartition: (sender, receiver) directions that drop traffic; one-way
    // when some pair is blocked in one direction only.
    std::vector<std::pair<int, int>> blocked;
    bool one_way = false;
    // kPartition: heal by resetting the held connections instead of letting
    // the held bytes through. kRestartGroup: stop with mode immediate.
    bool abrupt = false;
    std::chrono::milliseconds latency{0};
    std::chrono::milliseconds duration{0};

    std::string describe() const;
};

// A fault every few seconds from `warmup` on; the last one is healed by
// run_length. Nodes are numbered 1..nodes (nodes >= 2).
std::vector<Fault> make_schedule(uint64_t seed, int nodes, std::chrono::milliseconds run_length,
                                 std::chrono::milliseconds warmup = std::chrono::seconds(5));

// splitmix64: tiny, and the same on every platform (std::uniform_*
// distributions are not).
class Random {
public:
    explicit Random(uint64_t seed) : state_(seed) {}
    uint64_t next();
    // Uniform in [low, high].
    int64_t between(int64_t low, int64_t high);
    bool chance(int percent) { return between(1, 100) <= percent; }

private:
    uint64_t state_;
};

}  // namespace pgmesh::faults
