// When a relay slot may move on (src/pg/relay.hpp has the why): pure logic
// of the manager's round, kept apart so that it is unit-tested.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>

namespace pgmesh::relay {

// Origin node id -> that node's commit LSN applied up to.
using Positions = std::map<uint64_t, uint64_t>;

// This node's WAL position, and its positions read right after it: what
// it applies from then on lies in WAL after local_lsn.
struct Checkpoint {
    uint64_t local_lsn = 0;
    Positions applied;
};

// Whether every member (id -> its positions) has applied, for every
// origin in the checkpoint but its own and those `gone` (parted), at least
// as much as the checkpoint noted. A member without an origin has applied
// nothing of it.
bool passed(const Checkpoint &checkpoint, const std::map<uint64_t, Positions> &members,
            const std::function<bool(uint64_t)> &gone);

// Takes the checkpoints (oldest first) that every member has passed off the
// front, and returns the newest of them: where the slot may move. Stops at
// the first that is not passed, since members apply in order.
std::optional<Checkpoint> take_passed(std::deque<Checkpoint> &checkpoints,
                                      const std::map<uint64_t, Positions> &members,
                                      const std::function<bool(uint64_t)> &gone);

}  // namespace pgmesh::relay
