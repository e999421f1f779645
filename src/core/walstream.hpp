// Framing of PostgreSQL's streaming replication protocol (inside CopyData),
// which carries pgmesh protocol messages (protocol.hpp) as XLogData payload.
//
//   server -> client  'w' u64 start_lsn, u64 end_lsn, i64 send_time, payload
//                     'k' u64 end_lsn, i64 send_time, u8 reply_requested
//   client -> server  'r' u64 write_lsn, u64 flush_lsn, u64 apply_lsn,
//                         i64 send_time, u8 reply_requested
//
// Pure C++; malformed frames throw proto::DecodeError.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <optional>
#include <string_view>
#include <variant>

#include "protocol.hpp"

namespace pgmesh::walstream {

struct XLogData {
    uint64_t start_lsn = 0;
    uint64_t end_lsn = 0;
    int64_t send_time = 0;
    std::span<const uint8_t> payload;  // points into the frame
};

struct Keepalive {
    uint64_t end_lsn = 0;
    int64_t send_time = 0;
    bool reply_requested = false;
};

using Frame = std::variant<XLogData, Keepalive>;

Frame parse_frame(std::span<const uint8_t> copy_data);

// The 34-byte standby status update ('r').
std::string standby_status(uint64_t write_lsn, uint64_t flush_lsn, uint64_t apply_lsn,
                           int64_t send_time, bool reply_requested);

// "X/Y" text form of an LSN, as PostgreSQL prints and parses it.
std::string format_lsn(uint64_t lsn);
// Parses "X/Y" (hex, each part at most 8 digits); nullopt when malformed.
std::optional<uint64_t> parse_lsn(std::string_view text);

}  // namespace pgmesh::walstream
