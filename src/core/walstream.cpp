// PostgreSQL streaming-replication framing inside CopyData, see
// https://www.postgresql.org/docs/current/protocol-replication.html
// (XLogData, Primary keepalive message, Standby status update).
#include "walstream.hpp"

#include <cstddef>
#include <string>

#include "cpp_only.hpp"

namespace pgmesh::walstream {
namespace {

using proto::DecodeError;

constexpr size_t kXLogDataHeader = 1 + 8 + 8 + 8;
constexpr size_t kKeepaliveSize = 1 + 8 + 8 + 1;
constexpr size_t kStandbyStatusSize = 1 + 8 + 8 + 8 + 8 + 1;

uint64_t be64(std::span<const uint8_t> b, size_t at) {
    uint64_t v = 0;
    for (size_t i = 0; i < 8; ++i) v = (v << 8) | b[at + i];
    return v;
}

void put64(std::string &out, uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) {
        out.push_back(static_cast<char>(static_cast<uint8_t>(v >> shift)));
    }
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// One half of an LSN: 1 to 8 hex digits, nothing else.
std::optional<uint32_t> parse_half(std::string_view s) {
    if (s.empty() || s.size() > 8) return std::nullopt;
    uint32_t v = 0;
    for (char c : s) {
        int d = hex_digit(c);
        if (d < 0) return std::nullopt;
        v = (v << 4) | static_cast<uint32_t>(d);
    }
    return v;
}

void append_hex(std::string &out, uint32_t v) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    char digits[8];
    int n = 0;
    do {
        digits[n++] = kHex[v & 0xf];
        v >>= 4;
    } while (v != 0);
    while (n > 0) out.push_back(digits[--n]);
}

}  // namespace

Frame parse_frame(std::span<const uint8_t> copy_data) {
    if (copy_data.empty()) throw DecodeError("empty replication CopyData frame");
    switch (copy_data[0]) {
        case 'w': {
            if (copy_data.size() < kXLogDataHeader) {
                throw DecodeError("truncated XLogData frame: " + std::to_string(copy_data.size()) +
                                  " bytes, the header alone is " + std::to_string(kXLogDataHeader));
            }
            XLogData d;
            d.start_lsn = be64(copy_data, 1);
            d.end_lsn = be64(copy_data, 9);
            d.send_time = static_cast<int64_t>(be64(copy_data, 17));
            d.payload = copy_data.subspan(kXLogDataHeader);
            return d;
        }
        case 'k': {
            if (copy_data.size() != kKeepaliveSize) {
                throw DecodeError(
                    std::string(copy_data.size() < kKeepaliveSize ? "truncated" : "oversized") +
                    " keepalive frame: " + std::to_string(copy_data.size()) + " bytes, expected " +
                    std::to_string(kKeepaliveSize));
            }
            uint8_t reply = copy_data[kKeepaliveSize - 1];
            if (reply > 1) {
                throw DecodeError("malformed keepalive frame: reply_requested byte is " +
                                  std::to_string(reply) + ", expected 0 or 1");
            }
            Keepalive k;
            k.end_lsn = be64(copy_data, 1);
            k.send_time = static_cast<int64_t>(be64(copy_data, 9));
            k.reply_requested = reply == 1;
            return k;
        }
        default:
            throw DecodeError("unknown replication CopyData frame type " +
                              proto::describe_byte(copy_data[0]));
    }
}

std::string standby_status(uint64_t write_lsn, uint64_t flush_lsn, uint64_t apply_lsn,
                           int64_t send_time, bool reply_requested) {
    std::string out;
    out.reserve(kStandbyStatusSize);
    out.push_back('r');
    put64(out, write_lsn);
    put64(out, flush_lsn);
    put64(out, apply_lsn);
    put64(out, static_cast<uint64_t>(send_time));
    out.push_back(reply_requested ? 1 : 0);
    return out;
}

std::string format_lsn(uint64_t lsn) {
    std::string out;
    append_hex(out, static_cast<uint32_t>(lsn >> 32));
    out.push_back('/');
    append_hex(out, static_cast<uint32_t>(lsn));
    return out;
}

std::optional<uint64_t> parse_lsn(std::string_view text) {
    size_t slash = text.find('/');
    if (slash == std::string_view::npos) return std::nullopt;
    auto hi = parse_half(text.substr(0, slash));
    auto lo = parse_half(text.substr(slash + 1));
    if (!hi || !lo) return std::nullopt;
    return (uint64_t{*hi} << 32) | *lo;
}

}  // namespace pgmesh::walstream
