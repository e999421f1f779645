// pgmesh's own logical messages: replicated DDL ("pgmesh_ddl", in the
// transaction that ran it), the global lock protocol ("pgmesh_lock",
// non-transactional, so that it goes out at once) and the clock tick
// ("pgmesh_clock", non-transactional). Layouts in
// docs/protocol.md. Pure C++.
//
// Every role may call pg_logical_emit_message, so a message's prefix proves
// nothing: each message is sealed with an HMAC-SHA256 under the group's key
// (pgmesh.local_node.group_key, superuser-only), and a peer acts only on a
// message whose seal checks. The MAC itself is computed by the caller (the
// pg adapter has PostgreSQL's HMAC); this file frames and checks it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pgmesh::mesh {

inline constexpr std::string_view kDdlPrefix = "pgmesh_ddl";
inline constexpr std::string_view kLockPrefix = "pgmesh_lock";
inline constexpr std::string_view kClockPrefix = "pgmesh_clock";
// A join's barrier on a member (join.cpp): an empty transaction of the
// member's own, with nothing to apply. Applying it moves the receiver's
// origin for the member, which is all the barrier is for; unlike a row
// update it cannot meet a local row and count as a conflict.
inline constexpr std::string_view kBarrierPrefix = "pgmesh_barrier";

// Layout version of both message kinds.
inline constexpr uint8_t kMessageVersion = 1;

inline constexpr size_t kMacSize = 32;
using MacValue = std::array<uint8_t, kMacSize>;
// HMAC-SHA256 of `data` under the group key.
using Mac = std::function<MacValue(std::string_view data)>;

// Thrown for a message that is malformed or whose seal does not check.
class BadMessage : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// One replicated statement. The peer runs `statement` as `role` with
// `search_path`, in the transaction that carries the message.
struct DdlStatement {
    uint64_t origin_node = 0;
    // The origin transaction's xid: the peer checks it against the BEGIN of
    // the transaction the message arrived in, so that a sealed message copied
    // into another transaction is refused.
    uint32_t xid = 0;
    uint64_t lock_id = 0;  // the global lock it ran under
    std::string role;
    std::string search_path;
    std::string statement;
    bool operator==(const DdlStatement &) const = default;
};

enum class Strength : uint8_t { kDdl = 1, kWrite = 2 };
std::string_view name(Strength strength);  // "ddl", "write"

enum class LockKind : uint8_t {
    kRequest = 'Q',   // holder asks every node (again for each upgrade: seq)
    kGrant = 'G',     // sender grants (holder, lock_id, seq)
    kAcquired = 'A',  // holder has every grant of a write lock
    kRelease = 'R',   // holder is done (commit, abort, yield)
    kReset = 'X',     // sender restarted: every lock it held or asked for is void
};

struct LockMessage {
    LockKind kind = LockKind::kRequest;
    uint64_t sender = 0;  // node that wrote the message
    uint64_t holder = 0;  // node that asks for or holds the lock
    uint64_t lock_id = 0;
    uint32_t seq = 0;
    Strength strength = Strength::kDdl;
    // When the holder first asked (µs since the epoch): of two requests at
    // once, the older wins (then the lower node id).
    int64_t priority = 0;
    int32_t holder_pid = 0;
    // For a write lock: the tables whose writes it blocks, or all of them.
    bool all_tables = false;
    std::vector<std::pair<std::string, std::string>> tables;  // schema, name
    bool operator==(const LockMessage &) const = default;
};

// A node's clock, written into its WAL every few seconds. A peer that has
// applied the tick has every transaction the sender committed before it in
// WAL order, hence (up to clock skew) every one with an older commit time:
// tombstones older than that, from every peer, are no longer needed
// (tombstones.hpp).
struct ClockTick {
    uint64_t sender = 0;
    int64_t time = 0;  // TimestampTz: µs since 2000-01-01
    bool operator==(const ClockTick &) const = default;
};

// Encodes and seals (u8 version, fields, 32-byte MAC over prefix and body).
std::string seal(const DdlStatement &m, const Mac &mac);
std::string seal(const LockMessage &m, const Mac &mac);
std::string seal(const ClockTick &m, const Mac &mac);

// Checks the seal and decodes; throws BadMessage.
DdlStatement open_ddl(std::string_view content, const Mac &mac);
LockMessage open_lock(std::string_view content, const Mac &mac);
ClockTick open_clock(std::string_view content, const Mac &mac);

}  // namespace pgmesh::mesh
