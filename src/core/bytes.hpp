// Big-endian fields, as every pgmesh message lays them out: a Reader that
// never trusts a length (anything truncated is a DecodeError naming the
// field and offset) and a Writer. Shared by the wire protocol (protocol.cpp)
// and pgmesh's own logical messages (mesh_message.cpp). Pure C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "protocol.hpp"

namespace pgmesh::proto {

// Reads big-endian fields of one message. Each read names the field so that
// errors say what was being read, where, and in which message.
class Reader {
public:
    Reader(std::span<const uint8_t> bytes, const char *message)
        : bytes_(bytes), message_(message) {}

    size_t offset() const { return pos_; }
    size_t remaining() const { return bytes_.size() - pos_; }

    [[noreturn]] void fail(const std::string &detail) const {
        throw DecodeError("malformed " + std::string(message_) + ": " + detail);
    }

    void need(size_t n, const char *what) const {
        if (n > remaining()) {
            throw DecodeError("truncated " + std::string(message_) + ": expected " +
                              std::to_string(n) + " bytes for " + what + " at offset " +
                              std::to_string(pos_) + ", " + std::to_string(remaining()) +
                              " remain");
        }
    }

    uint8_t u8(const char *what) { return static_cast<uint8_t>(be(1, what)); }
    uint16_t u16(const char *what) { return static_cast<uint16_t>(be(2, what)); }
    uint32_t u32(const char *what) { return static_cast<uint32_t>(be(4, what)); }
    uint64_t u64(const char *what) { return be(8, what); }
    // Signed fields travel as their two's complement bit pattern; C++20
    // defines the unsigned-to-signed conversion as exactly that.
    int32_t i32(const char *what) { return static_cast<int32_t>(u32(what)); }
    int64_t i64(const char *what) { return static_cast<int64_t>(u64(what)); }

    // A u32 length then that many bytes; the view points into the input.
    std::string_view str(const char *what) {
        size_t at = pos_;
        uint32_t len = u32(what);
        if (len > remaining()) {
            throw DecodeError("truncated " + std::string(message_) + ": " + what + " at offset " +
                              std::to_string(at) + " declares " + std::to_string(len) +
                              " bytes but " + std::to_string(remaining()) + " remain");
        }
        std::string_view s(reinterpret_cast<const char *>(bytes_.data() + pos_), len);
        pos_ += len;
        return s;
    }

    void expect_end() const {
        if (remaining() != 0) {
            fail(std::to_string(remaining()) + " trailing bytes after the message at offset " +
                 std::to_string(pos_));
        }
    }

private:
    uint64_t be(size_t n, const char *what) {
        need(n, what);
        uint64_t v = 0;
        for (size_t i = 0; i < n; ++i) v = (v << 8) | bytes_[pos_ + i];
        pos_ += n;
        return v;
    }

    std::span<const uint8_t> bytes_;
    const char *message_;
    size_t pos_ = 0;
};

// Appends big-endian fields to a string.
class Writer {
public:
    void u8(uint8_t v) { buf_.push_back(static_cast<char>(v)); }
    void u32(uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8) u8(static_cast<uint8_t>(v >> shift));
    }
    void u64(uint64_t v) {
        for (int shift = 56; shift >= 0; shift -= 8) u8(static_cast<uint8_t>(v >> shift));
    }
    void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
    void str(std::string_view s) {
        if (s.size() > std::numeric_limits<uint32_t>::max())
            throw std::length_error("pgmesh protocol: string of " + std::to_string(s.size()) +
                                    " bytes does not fit a u32 length");
        u32(static_cast<uint32_t>(s.size()));
        buf_.append(s);
    }
    void raw(std::string_view s) { buf_.append(s); }
    const std::string &bytes() const { return buf_; }
    std::string take() { return std::move(buf_); }

private:
    std::string buf_;
};

}  // namespace pgmesh::proto
