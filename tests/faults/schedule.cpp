#include "schedule.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace pgmesh::faults {

using std::chrono::milliseconds;

uint64_t Random::next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

int64_t Random::between(int64_t low, int64_t high) {
    const uint64_t span = static_cast<uint64_t>(high - low) + 1;
    return low + static_cast<int64_t>(next() % span);
}

std::string_view name(FaultKind kind) {
    switch (kind) {
        case FaultKind::kKillServer:
            return "kill -9 server";
        case FaultKind::kKillApply:
            return "kill -9 apply worker";
        case FaultKind::kKillWalsender:
            return "kill -9 walsender";
        case FaultKind::kFreeze:
            return "freeze (SIGSTOP)";
        case FaultKind::kPartition:
            return "partition";
        case FaultKind::kLatency:
            return "latency";
        case FaultKind::kRestartGroup:
            return "restart group";
    }
    return "?";
}

std::string Fault::describe() const {
    std::ostringstream out;
    out << "t=" << at.count() / 1000.0 << "s " << name(kind);
    switch (kind) {
        case FaultKind::kKillServer:
            out << " node" << node << ", down " << duration.count() << " ms";
            break;
        case FaultKind::kKillApply:
            out << " on node" << node << " (from node" << peer << ")";
            break;
        case FaultKind::kKillWalsender:
            out << " on node" << node << " (serving node" << peer << ")";
            break;
        case FaultKind::kFreeze:
            out << " node" << node << " for " << duration.count() << " ms";
            break;
        case FaultKind::kPartition:
            out << (one_way ? " one-way" : " two-way") << " {";
            for (size_t i = 0; i < blocked.size(); i++)
                out << (i ? " " : "") << blocked[i].first << "->" << blocked[i].second;
            out << "} for " << duration.count() << " ms, heal by "
                << (abrupt ? "reset" : "delivering what was held");
            break;
        case FaultKind::kLatency:
            out << " node" << node << "<->node" << peer << " +" << latency.count() << " ms for "
                << duration.count() << " ms";
            break;
        case FaultKind::kRestartGroup:
            out << " (" << (abrupt ? "immediate" : "fast") << " stop), down " << duration.count()
                << " ms";
            break;
    }
    return out.str();
}

namespace {

// Relative weights of the kinds, in kAllFaultKinds order.
constexpr std::array<int, kAllFaultKinds.size()> kWeights = {3, 2, 2, 2, 5, 2, 1};

FaultKind draw_kind(Random &random) {
    int total = 0;
    for (int w : kWeights) total += w;
    int pick = static_cast<int>(random.between(1, total));
    for (size_t i = 0; i < kWeights.size(); i++) {
        pick -= kWeights[i];
        if (pick <= 0) return kAllFaultKinds[i];
    }
    return kAllFaultKinds.back();
}

std::pair<int, int> draw_pair(Random &random, int nodes) {
    int a = static_cast<int>(random.between(1, nodes));
    int b = static_cast<int>(random.between(1, nodes - 1));
    if (b >= a) b++;
    return {a, b};
}

void draw_partition(Random &random, int nodes, Fault &f) {
    f.one_way = random.chance(40);
    f.abrupt = random.chance(30);
    f.duration = milliseconds(random.between(3000, 20000));
    if (random.chance(50)) {
        // Between two nodes only.
        auto [a, b] = draw_pair(random, nodes);
        f.blocked.push_back({a, b});
        if (!f.one_way) f.blocked.push_back({b, a});
        return;
    }
    // A minority cut off from the rest: one node, or two when there are five.
    std::vector<int> side{static_cast<int>(random.between(1, nodes))};
    if (nodes >= 5 && random.chance(50)) {
        int other = static_cast<int>(random.between(1, nodes - 1));
        if (other >= side[0]) other++;
        side.push_back(other);
    }
    for (int inside : side) {
        for (int outside = 1; outside <= nodes; outside++) {
            if (std::find(side.begin(), side.end(), outside) != side.end()) continue;
            // One-way: the minority still hears the others but is not heard.
            f.blocked.push_back({inside, outside});
            if (!f.one_way) f.blocked.push_back({outside, inside});
        }
    }
}

}  // namespace

std::vector<Fault> make_schedule(uint64_t seed, int nodes, milliseconds run_length,
                                 milliseconds warmup) {
    if (nodes < 2) throw std::invalid_argument("a fault schedule needs at least 2 nodes");
    Random random(seed);
    std::vector<Fault> schedule;
    milliseconds t = warmup;
    for (;;) {
        Fault f;
        f.at = t;
        f.kind = draw_kind(random);
        switch (f.kind) {
            case FaultKind::kKillServer:
                f.node = static_cast<int>(random.between(1, nodes));
                f.duration = milliseconds(random.between(500, 8000));
                break;
            case FaultKind::kKillApply:
            case FaultKind::kKillWalsender: {
                auto [a, b] = draw_pair(random, nodes);
                f.node = a;
                f.peer = b;
                break;
            }
            case FaultKind::kFreeze:
                f.node = static_cast<int>(random.between(1, nodes));
                f.duration = milliseconds(random.between(2000, 15000));
                break;
            case FaultKind::kPartition:
                draw_partition(random, nodes, f);
                break;
            case FaultKind::kLatency: {
                auto [a, b] = draw_pair(random, nodes);
                f.node = a;
                f.peer = b;
                f.latency = milliseconds(random.between(20, 500));
                f.duration = milliseconds(random.between(3000, 15000));
                break;
            }
            case FaultKind::kRestartGroup:
                f.abrupt = random.chance(50);
                f.duration = milliseconds(random.between(500, 3000));
                break;
        }
        // What a fault takes beyond its duration (stopping and starting
        // servers) is not known here: leave room after it.
        const milliseconds gap(random.between(2000, 8000));
        if (t + f.duration + gap > run_length) break;
        schedule.push_back(f);
        t += f.duration + gap;
    }
    return schedule;
}

}  // namespace pgmesh::faults
