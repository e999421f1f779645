// Unit tests of the streaming-replication framing (src/core/walstream.*).
#include "walstream.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "protocol.hpp"

namespace pgmesh::walstream {
namespace {

using proto::DecodeError;

std::vector<uint8_t> bytes(std::initializer_list<int> list) {
    std::vector<uint8_t> out;
    for (int b : list) out.push_back(static_cast<uint8_t>(b));
    return out;
}

void put64(std::vector<uint8_t> &out, uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

std::vector<uint8_t> xlogdata(uint64_t start, uint64_t end, int64_t time,
                              std::string_view payload) {
    std::vector<uint8_t> out{'w'};
    put64(out, start);
    put64(out, end);
    put64(out, static_cast<uint64_t>(time));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

std::vector<uint8_t> keepalive(uint64_t end, int64_t time, uint8_t reply) {
    std::vector<uint8_t> out{'k'};
    put64(out, end);
    put64(out, static_cast<uint64_t>(time));
    out.push_back(reply);
    return out;
}

TEST(WalstreamFrame, XLogDataFieldsAndPayload) {
    auto frame = xlogdata(0x0000000100000002, 0x0000000300000004, -5, "payload");
    ASSERT_EQ(frame.size(), 25u + 7u);
    Frame f = parse_frame(frame);
    ASSERT_TRUE(std::holds_alternative<XLogData>(f));
    const auto &d = std::get<XLogData>(f);
    EXPECT_EQ(d.start_lsn, 0x0000000100000002u);
    EXPECT_EQ(d.end_lsn, 0x0000000300000004u);
    EXPECT_EQ(d.send_time, -5);
    ASSERT_EQ(d.payload.size(), 7u);
    EXPECT_EQ(d.payload.data(), frame.data() + 25);  // points into the frame
    EXPECT_EQ(std::string(d.payload.begin(), d.payload.end()), "payload");
}

TEST(WalstreamFrame, XLogDataGoldenHeader) {
    auto frame =
        bytes({'w',  0,    0,    0,    0,    0x01, 0x6B, 0x37, 0x48, 0,    0,    0,    0,
               0x01, 0x6B, 0x37, 0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE, 'B'});
    const auto d = std::get<XLogData>(parse_frame(frame));
    EXPECT_EQ(d.start_lsn, 0x16B3748u);
    EXPECT_EQ(d.end_lsn, 0x16B3780u);
    EXPECT_EQ(d.send_time, -2);
    ASSERT_EQ(d.payload.size(), 1u);
    EXPECT_EQ(d.payload[0], 'B');
}

TEST(WalstreamFrame, XLogDataWithEmptyPayloadIsAFrame) {
    auto frame = xlogdata(1, 2, 3, "");
    const auto d = std::get<XLogData>(parse_frame(frame));
    EXPECT_TRUE(d.payload.empty());
}

TEST(WalstreamFrame, XLogDataCarriesAPgmeshMessage) {
    proto::Encoder enc;
    enc.commit(proto::Commit{.commit_lsn = 10, .end_lsn = 20, .commit_time = 30});
    auto msg = enc.bytes();
    auto frame = xlogdata(10, 20, 0,
                          std::string_view(reinterpret_cast<const char *>(msg.data()), msg.size()));
    const auto d = std::get<XLogData>(parse_frame(frame));
    EXPECT_EQ(proto::decode(d.payload),
              proto::Decoded(proto::Commit{.commit_lsn = 10, .end_lsn = 20, .commit_time = 30}));
}

TEST(WalstreamFrame, KeepaliveFields) {
    for (uint8_t reply : {0, 1}) {
        auto frame = keepalive(0xFFFFFFFFFFFFFFFF, 123456789, reply);
        ASSERT_EQ(frame.size(), 18u);
        Frame f = parse_frame(frame);
        ASSERT_TRUE(std::holds_alternative<Keepalive>(f));
        const auto &k = std::get<Keepalive>(f);
        EXPECT_EQ(k.end_lsn, 0xFFFFFFFFFFFFFFFFu);
        EXPECT_EQ(k.send_time, 123456789);
        EXPECT_EQ(k.reply_requested, reply == 1);
    }
}

TEST(WalstreamFrame, KeepaliveBadReplyByte) {
    for (uint8_t reply : {2, 0x80, 0xFF}) {
        EXPECT_THROW(parse_frame(keepalive(1, 2, reply)), DecodeError) << int(reply);
    }
}

TEST(WalstreamFrame, KeepaliveMustBeExactly18Bytes) {
    auto frame = keepalive(1, 2, 0);
    frame.push_back(0);
    EXPECT_THROW(parse_frame(frame), DecodeError);
}

TEST(WalstreamFrame, EmptyAndUnknownFramesRejected) {
    EXPECT_THROW(parse_frame({}), DecodeError);
    for (int type : {int{'r'}, int{'W'}, int{'K'}, 0, 0xFF}) {
        auto frame = keepalive(1, 2, 0);
        frame[0] = static_cast<uint8_t>(type);
        EXPECT_THROW(parse_frame(frame), DecodeError) << type;
    }
}

TEST(WalstreamFrame, EveryTruncationRejected) {
    for (const auto &full : {xlogdata(1, 2, 3, ""), keepalive(1, 2, 1)}) {
        for (size_t len = 0; len < full.size(); ++len) {
            std::vector<uint8_t> prefix(full.begin(), full.begin() + len);
            EXPECT_THROW(parse_frame(prefix), DecodeError) << "length " << len;
        }
    }
}

TEST(WalstreamFrame, ErrorMessagesSayWhatIsWrong) {
    try {
        parse_frame(bytes({'w', 0, 0}));
        FAIL();
    } catch (const DecodeError &e) {
        EXPECT_NE(std::string(e.what()).find("truncated XLogData"), std::string::npos) << e.what();
    }
    try {
        parse_frame(bytes({'r'}));
        FAIL();
    } catch (const DecodeError &e) {
        EXPECT_NE(std::string(e.what()).find("0x72 ('r')"), std::string::npos) << e.what();
    }
}

TEST(WalstreamFrame, RandomInputOnlyEverThrowsDecodeError) {
    std::mt19937 rng(7);
    size_t parsed = 0, rejected = 0;
    for (int i = 0; i < 20000; ++i) {
        std::vector<uint8_t> frame(std::uniform_int_distribution<size_t>(0, 40)(rng));
        for (auto &b : frame) b = static_cast<uint8_t>(rng());
        if (!frame.empty() && (i & 1)) frame[0] = (i & 2) ? 'w' : 'k';
        try {
            Frame f = parse_frame(frame);
            ++parsed;
            // An XLogData payload is whatever follows the 25-byte header.
            if (auto *d = std::get_if<XLogData>(&f)) {
                ASSERT_EQ(d->payload.size(), frame.size() - 25) << "iteration " << i;
            }
        } catch (const DecodeError &) {
            ++rejected;
        }
    }
    // Both outcomes must occur, or the input is not exercising anything.
    EXPECT_GT(parsed, 1000u);
    EXPECT_GT(rejected, 1000u);
}

TEST(WalstreamStandbyStatus, GoldenBytes) {
    std::string s =
        standby_status(0x0102030405060708, 0x1112131415161718, 0x2122232425262728, -1, true);
    auto expect = bytes({'r',  0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x11, 0x12, 0x13,
                         0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27,
                         0x28, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01});
    ASSERT_EQ(s.size(), 34u);
    EXPECT_EQ(std::vector<uint8_t>(s.begin(), s.end()), expect);
}

TEST(WalstreamStandbyStatus, ReplyFlagAndZeroes) {
    std::string s = standby_status(0, 0, 0, 0, false);
    ASSERT_EQ(s.size(), 34u);
    EXPECT_EQ(s[0], 'r');
    EXPECT_EQ(s.substr(1), std::string(33, '\0'));
}

TEST(WalstreamLsn, FormatLikePostgres) {
    EXPECT_EQ(format_lsn(0), "0/0");
    EXPECT_EQ(format_lsn(0x16B3748), "0/16B3748");
    EXPECT_EQ(format_lsn(0x100000000), "1/0");
    EXPECT_EQ(format_lsn(0x0000000A000000BC), "A/BC");
    EXPECT_EQ(format_lsn(0xFFFFFFFFFFFFFFFF), "FFFFFFFF/FFFFFFFF");
    EXPECT_EQ(format_lsn(0x0ABCDEF012345678), "ABCDEF0/12345678");
}

TEST(WalstreamLsn, ParseValid) {
    EXPECT_EQ(parse_lsn("0/0"), 0u);
    EXPECT_EQ(parse_lsn("0/16B3748"), 0x16B3748u);
    EXPECT_EQ(parse_lsn("0/16b3748"), 0x16B3748u);
    EXPECT_EQ(parse_lsn("00000000/00000001"), 1u);
    EXPECT_EQ(parse_lsn("1/0"), 0x100000000u);
    EXPECT_EQ(parse_lsn("FFFFFFFF/FFFFFFFF"), 0xFFFFFFFFFFFFFFFFu);
    EXPECT_EQ(parse_lsn("aBcDeF01/23456789"), 0xABCDEF0123456789u);
}

TEST(WalstreamLsn, ParseInvalid) {
    for (const char *bad :
         {"", "/", "0", "0/", "/0", "0//0", "0/0/0", "123456789/0", "0/123456789", "g/0", "0/g",
          " 0/0", "0/0 ", "+1/0", "-1/0", "0x1/0", "0/0\n", "1.0/0"}) {
        EXPECT_EQ(parse_lsn(bad), std::nullopt) << '"' << bad << '"';
    }
    EXPECT_EQ(parse_lsn(std::string_view("0/0\0", 4)), std::nullopt);
}

TEST(WalstreamLsn, FormatParseRoundTrip) {
    std::mt19937_64 rng(42);
    for (int i = 0; i < 10000; ++i) {
        uint64_t lsn = rng();
        if (i % 3 == 0) lsn >>= (i % 64);  // short halves too
        EXPECT_EQ(parse_lsn(format_lsn(lsn)), lsn);
    }
}

}  // namespace
}  // namespace pgmesh::walstream
