#include "relay_plan.hpp"

#include <utility>

namespace pgmesh::relay {

bool passed(const Checkpoint &checkpoint, const std::map<uint64_t, Positions> &members,
            const std::function<bool(uint64_t)> &gone) {
    for (const auto &[member, applied] : members)
        for (const auto &[origin, lsn] : checkpoint.applied) {
            if (origin == member || lsn == 0 || gone(origin)) continue;
            auto it = applied.find(origin);
            if (it == applied.end() || it->second < lsn) return false;
        }
    return true;
}

std::optional<Checkpoint> take_passed(std::deque<Checkpoint> &checkpoints,
                                      const std::map<uint64_t, Positions> &members,
                                      const std::function<bool(uint64_t)> &gone) {
    std::optional<Checkpoint> newest;
    while (!checkpoints.empty() && passed(checkpoints.front(), members, gone)) {
        newest = std::move(checkpoints.front());
        checkpoints.pop_front();
    }
    return newest;
}

}  // namespace pgmesh::relay
