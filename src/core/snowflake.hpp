// Snowflake ids (pgmesh.snowflake_nextval): 64-bit integers that nodes of a
// group hand out without asking each other, yet never twice.
//
//   bit 63      0 (ids are positive bigints)
//   bits 62-22  milliseconds since 2025-01-01 00:00:00 UTC (41 bits: until 2094)
//   bits 21-12  the node's number, pgmesh.node.node_number (10 bits)
//   bits 11-0   a counter within the millisecond (12 bits)
//
// Two nodes never share a number, so their ids differ in the node bits; on
// one node, next() only ever goes up. Pure C++: the pg layer keeps the last
// id per sequence in shared memory and persists a reservation ahead of it in
// the sequence (docs/ids.md).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace pgmesh::snowflake {

inline constexpr int kCounterBits = 12;
inline constexpr int kNodeBits = 10;
inline constexpr int kTimeBits = 41;

inline constexpr int kMaxCounter = (1 << kCounterBits) - 1;         // 4095
inline constexpr int kMaxNode = (1 << kNodeBits) - 1;               // 1023
inline constexpr int64_t kMaxTime = (int64_t{1} << kTimeBits) - 1;  // ms, 2094-09-07

// 2025-01-01 00:00:00 UTC, in milliseconds since the Unix epoch.
inline constexpr int64_t kEpochUnixMs = 1735689600000;

// How far ahead of the clock a reservation reaches (see reservation()).
inline constexpr int64_t kReserveAheadMs = 1000;

// The id space is used up: the clock (or the ids already handed out) passed
// the last millisecond 41 bits can count. The pg layer reports it as a
// sequence that reached its limit (2200H).
class OutOfRange : public std::range_error {
public:
    explicit OutOfRange(const std::string &what) : std::range_error(what) {}
};

struct Parts {
    int64_t ms = 0;  // since kEpochUnixMs
    int node = 0;
    int counter = 0;
};

// The id made of these parts. Throws OutOfRange for ms past kMaxTime,
// std::invalid_argument for a negative ms or a node or counter that does not
// fit its bits.
int64_t compose(int64_t ms, int node, int counter);
// The parts of an id; throws std::invalid_argument for a negative one.
Parts decompose(int64_t id);

// Milliseconds since the Unix epoch to the ids' time (negative before 2025).
inline constexpr int64_t ms_since_epoch(int64_t unix_ms) {
    return unix_ms - kEpochUnixMs;
}

// The id `node` hands out after `last_issued` when its clock reads now_ms:
//
//     max(compose(now_ms, node, 0), the smallest id of `node` above last_issued)
//
// So it is strictly greater than last_issued and carries `node` in its node
// bits, whatever last_issued's were (a sequence restored from another node
// holds that node's ids). A full counter moves on to the next millisecond,
// ahead of the clock (borrowing from the future), never into the node bits.
// A clock that went back keeps counting up from last_issued; a clock before
// 2025 counts as 2025-01-01. Throws OutOfRange when now_ms or the id needed
// is past kMaxTime.
int64_t next(int64_t last_issued, int64_t now_ms, int node);

// What to persist before handing out `issued`: at least `issued`, and
// compose(t + ahead_ms, node, 0) where t is the later of the clock and
// issued's time (capped at the last millisecond), so that about ahead_ms
// worth of ids need no write, also when they run ahead of the clock. After
// a crash, next(reservation, ...) starts above every id handed out before.
int64_t reservation(int64_t issued, int64_t now_ms, int node, int64_t ahead_ms = kReserveAheadMs);

}  // namespace pgmesh::snowflake
