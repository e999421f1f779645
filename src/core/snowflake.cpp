#include "snowflake.hpp"

#include <algorithm>

#include "cpp_only.hpp"

namespace pgmesh::snowflake {

namespace {

constexpr int kNodeShift = kCounterBits;
constexpr int kTimeShift = kCounterBits + kNodeBits;

void check_node(int node) {
    if (node < 0 || node > kMaxNode)
        throw std::invalid_argument("snowflake node number " + std::to_string(node) +
                                    " is outside 0.." + std::to_string(kMaxNode));
}

[[noreturn]] void exhausted() {
    throw OutOfRange(
        "snowflake ids are used up: their 41-bit time passed its last millisecond "
        "(2094-09-07)");
}

// The smallest id of `node` greater than `last`.
int64_t smallest_above(int64_t last, int node) {
    int64_t first = compose(0, node, 0);
    if (last < first) return first;
    Parts p = decompose(last);
    if (p.node == node && p.counter < kMaxCounter) return compose(p.ms, node, p.counter + 1);
    // Ids of a smaller node number in this millisecond are below ours.
    if (p.node < node) return compose(p.ms, node, 0);
    if (p.ms >= kMaxTime) exhausted();
    return compose(p.ms + 1, node, 0);
}

}  // namespace

int64_t compose(int64_t ms, int node, int counter) {
    if (ms > kMaxTime) exhausted();
    if (ms < 0)
        throw std::invalid_argument("snowflake time " + std::to_string(ms) +
                                    " ms is before 2025-01-01");
    check_node(node);
    if (counter < 0 || counter > kMaxCounter)
        throw std::invalid_argument("snowflake counter " + std::to_string(counter) +
                                    " is outside 0.." + std::to_string(kMaxCounter));
    return (ms << kTimeShift) | (int64_t{node} << kNodeShift) | counter;
}

Parts decompose(int64_t id) {
    if (id < 0) throw std::invalid_argument("a snowflake id is never negative");
    return Parts{id >> kTimeShift, static_cast<int>((id >> kNodeShift) & kMaxNode),
                 static_cast<int>(id & kMaxCounter)};
}

int64_t next(int64_t last_issued, int64_t now_ms, int node) {
    check_node(node);
    if (now_ms > kMaxTime) exhausted();
    int64_t from_clock = compose(std::max<int64_t>(now_ms, 0), node, 0);
    return std::max(from_clock, smallest_above(last_issued, node));
}

int64_t reservation(int64_t issued, int64_t now_ms, int node, int64_t ahead_ms) {
    // Ids that run ahead of the clock (borrowed, or after the clock went
    // back) get their second ahead too, not one write each.
    int64_t ms = std::clamp<int64_t>(now_ms, 0, kMaxTime);
    if (issued >= 0) ms = std::max(ms, decompose(issued).ms);
    ms = std::min(kMaxTime, ms + std::max<int64_t>(ahead_ms, 0));
    return std::max(issued, compose(ms, node, 0));
}

}  // namespace pgmesh::snowflake
