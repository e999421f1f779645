// Unit tests of the pgmesh wire protocol (src/core/protocol.*).
#include "protocol.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "encode_any.hpp"

namespace pgmesh::proto {
namespace {

using test_support::encode_any;
using ::testing::HasSubstr;

std::span<const uint8_t> as_span(const std::string &s) {
    return {reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

std::string as_string(std::span<const uint8_t> b) {
    return std::string(reinterpret_cast<const char *>(b.data()), b.size());
}

// "49 0102 'ab'" -> bytes. Hex pairs, with spaces allowed anywhere and text in
// single quotes, so golden bytes read like the layout tables in
// docs/protocol.md.
std::string hex(std::string_view text) {
    std::string out;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        throw std::invalid_argument("bad hex in test data");
    };
    for (size_t i = 0; i < text.size();) {
        char c = text[i];
        if (c == ' ') {
            ++i;
        } else if (c == '\'') {
            size_t end = text.find('\'', i + 1);
            if (end == std::string_view::npos) throw std::invalid_argument("unclosed quote");
            out.append(text.substr(i + 1, end - i - 1));
            i = end + 1;
        } else {
            if (i + 1 >= text.size()) throw std::invalid_argument("odd hex digit count");
            out.push_back(static_cast<char>(nibble(c) << 4 | nibble(text[i + 1])));
            i += 2;
        }
    }
    return out;
}

Value text(std::string_view s) {
    return {ValueKind::kText, s};
}
Value binary(std::string_view s) {
    return {ValueKind::kBinary, s};
}
Value null() {
    return {ValueKind::kNull, {}};
}
Value unchanged() {
    return {ValueKind::kUnchanged, {}};
}

// A tuple of n values of every kind, for the column-count limits.
Tuple wide_tuple(size_t n) {
    static const std::string kData = "value";
    Tuple t;
    for (size_t i = 0; i < n; ++i) {
        switch (i % 4) {
            case 0:
                t.push_back(text(kData));
                break;
            case 1:
                t.push_back(null());
                break;
            case 2:
                t.push_back(unchanged());
                break;
            default:
                t.push_back(binary(std::string_view(kData).substr(0, i % 5)));
        }
    }
    return t;
}

Relation wide_relation(size_t ncols) {
    Relation r{.relid = 99, .schema = "public", .name = "wide", .columns = {}};
    for (size_t i = 0; i < ncols; ++i) {
        r.columns.push_back(Column{.name = "c" + std::to_string(i),
                                   .type_oid = 23,
                                   .type_name = "integer",
                                   .type_mod = -1,
                                   .is_key = i == 0});
    }
    return r;
}

// Valid messages of every type, edge cases included. Value data points into
// string literals, so the samples stay valid for the whole test run.
const std::vector<Decoded> &samples() {
    static const std::vector<Decoded> kSamples = [] {
        std::vector<Decoded> v;
        v.push_back(Begin{});
        v.push_back(Begin{.origin_node_id = 0x0102030405060708,
                          .xid = 0xAABBCCDD,
                          .final_lsn = 0x16B3748,
                          .commit_time = -1});
        v.push_back(Begin{.origin_node_id = UINT64_MAX,
                          .xid = UINT32_MAX,
                          .final_lsn = UINT64_MAX,
                          .commit_time = INT64_MIN});
        v.push_back(Commit{});
        v.push_back(Commit{.commit_lsn = 1, .end_lsn = 2, .commit_time = 3});
        v.push_back(Commit{.commit_lsn = UINT64_MAX, .end_lsn = 0, .commit_time = INT64_MAX});
        v.push_back(Relation{});
        v.push_back(Relation{
            .relid = 16385,
            .schema = "s",
            .name = "t",
            .columns = {{.name = "id", .type_oid = 23, .type_name = "integer", .is_key = true},
                        {.name = "v", .type_oid = 25, .type_name = "text"}}});
        v.push_back(Relation{
            .relid = UINT32_MAX,
            .schema = "Schema With Spaces",
            .name = std::string("nul\0inside", 10),
            .columns = {{.name = "", .type_oid = 0, .type_name = "", .type_mod = INT32_MIN},
                        {.name = "n",
                         .type_oid = 1700,
                         .type_name = "numeric(10,2)",
                         .type_mod = 655366,
                         .is_key = true},
                        {.name = "a",
                         .type_oid = 16390,
                         .type_name = "myschema.mytype[]",
                         .type_mod = INT32_MAX}}});
        v.push_back(wide_relation(kMaxColumns));
        v.push_back(Insert{});
        v.push_back(Insert{
            .relid = 0x01020304,
            .new_tuple = {text("ab"), null(), unchanged(), binary(std::string_view("\0\xff", 2))}});
        v.push_back(Insert{.relid = 1, .new_tuple = {text(""), binary("")}});
        v.push_back(Insert{.relid = 2, .new_tuple = wide_tuple(kMaxColumns)});
        v.push_back(Update{});
        v.push_back(Update{.relid = 7, .old_key = Tuple{}, .new_tuple = {}});
        v.push_back(
            Update{.relid = 7, .old_key = Tuple{text("1")}, .new_tuple = {text("2"), unchanged()}});
        v.push_back(Update{.relid = 8,
                           .old_key = std::nullopt,
                           .new_tuple = {text("x"), null(), binary("\x01\x02")}});
        v.push_back(
            Update{.relid = 9, .old_key = wide_tuple(kMaxColumns), .new_tuple = wide_tuple(3)});
        v.push_back(Delete{});
        v.push_back(Delete{.relid = 9, .old_key = {text("5"), null()}});
        v.push_back(Truncate{});
        v.push_back(Truncate{.relids = {1, 2}, .cascade = true, .restart_identity = true});
        v.push_back(Truncate{.relids = {UINT32_MAX}, .cascade = true});
        v.push_back(Truncate{.relids = {5, 6, 7}, .restart_identity = true});
        v.push_back(Message{});
        v.push_back(Message{.transactional = false, .prefix = "pgmesh.ddl", .content = "x"});
        v.push_back(Message{.transactional = true,
                            .prefix = "pgmesh.lock",
                            .content = std::string("\0\x01\x02 binary", 10)});
        return v;
    }();
    return kSamples;
}

const char *type_of(const Decoded &d) {
    static const char *kNames[] = {"Begin",  "Commit", "Relation", "Insert",
                                   "Update", "Delete", "Truncate", "Message"};
    return kNames[d.index()];
}

TEST(ProtocolRoundTrip, EverySampleDecodesToItselfAndReencodesToTheSameBytes) {
    for (const Decoded &msg : samples()) {
        SCOPED_TRACE(type_of(msg));
        std::string wire = encode_any(msg);
        Decoded back = decode(as_span(wire));
        EXPECT_EQ(back, msg);
        EXPECT_EQ(encode_any(back), wire);
    }
}

TEST(ProtocolRoundTrip, CoversEveryMessageType) {
    std::vector<bool> seen(std::variant_size_v<Decoded>, false);
    for (const Decoded &msg : samples()) seen[msg.index()] = true;
    for (size_t i = 0; i < seen.size(); ++i) EXPECT_TRUE(seen[i]) << "no sample of type " << i;
}

TEST(ProtocolRoundTrip, DecodedValuesPointIntoTheInput) {
    std::string wire = hex("49 00000001 0002 74 00000003 'abc' 62 00000001 00");
    auto in = as_span(wire);
    auto ins = std::get<Insert>(decode(in));
    ASSERT_EQ(ins.new_tuple.size(), 2u);
    const char *begin = wire.data();
    const char *end = wire.data() + wire.size();
    for (const Value &v : ins.new_tuple) {
        EXPECT_GE(v.data.data(), begin);
        EXPECT_LE(v.data.data() + v.data.size(), end);
    }
    EXPECT_EQ(ins.new_tuple[0].data.data(), begin + 12);
}

TEST(ProtocolRoundTrip, EncoderAppendsMessagesUntilCleared) {
    Encoder enc;
    enc.begin(Begin{.xid = 1});
    size_t first = enc.size();
    EXPECT_EQ(first, 29u);
    enc.commit(Commit{});
    EXPECT_EQ(enc.size(), first + 25);
    auto b = enc.bytes();
    EXPECT_EQ(decode(b.first(first)), Decoded(Begin{.xid = 1}));
    EXPECT_EQ(decode(b.subspan(first)), Decoded(Commit{}));
    enc.clear();
    EXPECT_EQ(enc.size(), 0u);
}

// --- golden bytes ------------------------------------------------------------

struct Golden {
    Decoded msg;
    std::string bytes;
};

std::vector<Golden> goldens() {
    return {
        {Begin{.origin_node_id = 0x0102030405060708,
               .xid = 0xAABBCCDD,
               .final_lsn = 0x16B3748,
               .commit_time = -1},
         hex("42 0102030405060708 AABBCCDD 00000000016B3748 FFFFFFFFFFFFFFFF")},
        {Commit{.commit_lsn = 1, .end_lsn = 2, .commit_time = 3},
         hex("43 0000000000000001 0000000000000002 0000000000000003")},
        {Relation{.relid = 16385,
                  .schema = "s",
                  .name = "t",
                  .columns = {{.name = "id",
                               .type_oid = 23,
                               .type_name = "integer",
                               .type_mod = -1,
                               .is_key = true},
                              {.name = "v", .type_oid = 25, .type_name = "text"}}},
         hex("52 00004001 00000001 's' 00000001 't' 0002"
             " 01 00000002 'id' 00000017 00000007 'integer' FFFFFFFF"
             " 00 00000001 'v' 00000019 00000004 'text' FFFFFFFF")},
        {Insert{
             .relid = 0x01020304,
             .new_tuple = {text("ab"), null(), unchanged(), binary(std::string_view("\0\xff", 2))}},
         hex("49 01020304 0004 74 00000002 'ab' 6E 75 62 00000002 00FF")},
        {Update{.relid = 7, .old_key = Tuple{text("1")}, .new_tuple = {text("2"), unchanged()}},
         hex("55 00000007 'K' 0001 74 00000001 '1' 0002 74 00000001 '2' 75")},
        {Update{.relid = 7, .old_key = std::nullopt, .new_tuple = {}}, hex("55 00000007 'N' 0000")},
        {Delete{.relid = 9, .old_key = {text("5"), null()}},
         hex("44 00000009 0002 74 00000001 '5' 6E")},
        {Truncate{.relids = {1, 2}, .cascade = true, .restart_identity = true},
         hex("54 03 00000002 00000001 00000002")},
        {Truncate{.relids = {}, .cascade = false, .restart_identity = true}, hex("54 02 00000000")},
        {Message{.transactional = false, .prefix = "pgmesh.ddl", .content = "x"},
         hex("4D 00 0000000A 'pgmesh.ddl' 00000001 'x'")},
        {Message{.transactional = true, .prefix = "", .content = ""},
         hex("4D 01 00000000 00000000")},
    };
}

TEST(ProtocolGolden, EncoderWritesTheDocumentedBytes) {
    for (const Golden &g : goldens()) {
        SCOPED_TRACE(type_of(g.msg));
        EXPECT_EQ(encode_any(g.msg), g.bytes);
    }
}

TEST(ProtocolGolden, DecoderReadsTheDocumentedBytes) {
    for (const Golden &g : goldens()) {
        SCOPED_TRACE(type_of(g.msg));
        EXPECT_EQ(decode(as_span(g.bytes)), g.msg);
    }
}

// --- streaming encoder ------------------------------------------------------

TEST(ProtocolStreaming, InsertMatchesStructEncoder) {
    // Binary data with a NUL byte: the length, not a terminator, delimits it.
    const std::string_view bin("\x00\x01", 2);
    Insert m{.relid = 42, .new_tuple = {text("a"), null(), binary(bin), unchanged()}};
    Encoder streamed;
    streamed.start_insert(42, 4);
    streamed.value(ValueKind::kText, "a");
    streamed.value(ValueKind::kNull);
    streamed.value(ValueKind::kBinary, bin);
    streamed.value(ValueKind::kUnchanged);
    Encoder whole;
    whole.insert(m);
    const std::string expected = hex("49 0000002A 0004 74 00000001 'a' 6E 62 00000002 0001 75");
    EXPECT_EQ(as_string(streamed.bytes()), expected);
    EXPECT_EQ(as_string(whole.bytes()), expected);
}

TEST(ProtocolStreaming, UpdateWithOldKeyMatchesStructEncoder) {
    Update m{.relid = 5, .old_key = Tuple{text("k1"), text("k2")}, .new_tuple = {text("x")}};
    Encoder streamed;
    streamed.start_update(5, 2);
    streamed.value(ValueKind::kText, "k1");
    streamed.value(ValueKind::kText, "k2");
    streamed.start_tuple(1);
    streamed.value(ValueKind::kText, "x");
    Encoder whole;
    whole.update(m);
    EXPECT_EQ(as_string(streamed.bytes()), as_string(whole.bytes()));
}

TEST(ProtocolStreaming, UpdateWithoutOldKeyMatchesStructEncoder) {
    Update m{.relid = 5, .old_key = std::nullopt, .new_tuple = {null(), unchanged()}};
    Encoder streamed;
    streamed.start_update(5, std::nullopt);
    streamed.start_tuple(2);
    streamed.value(ValueKind::kNull);
    streamed.value(ValueKind::kUnchanged);
    Encoder whole;
    whole.update(m);
    EXPECT_EQ(as_string(streamed.bytes()), as_string(whole.bytes()));
}

TEST(ProtocolStreaming, DeleteMatchesStructEncoder) {
    Delete m{.relid = 6, .old_key = {text("1"), null(), null()}};
    Encoder streamed;
    streamed.start_delete(6, 3);
    streamed.value(ValueKind::kText, "1");
    streamed.value(ValueKind::kNull);
    streamed.value(ValueKind::kNull);
    Encoder whole;
    whole.delete_(m);
    EXPECT_EQ(as_string(streamed.bytes()), as_string(whole.bytes()));
}

TEST(ProtocolStreaming, SeveralMessagesInOneBuffer) {
    Encoder enc;
    enc.start_insert(1, 1);
    enc.value(ValueKind::kText, "a");
    size_t first = enc.size();
    enc.start_delete(1, 1);
    enc.value(ValueKind::kText, "a");
    auto b = enc.bytes();
    EXPECT_EQ(decode(b.first(first)), Decoded(Insert{.relid = 1, .new_tuple = {text("a")}}));
    EXPECT_EQ(decode(b.subspan(first)), Decoded(Delete{.relid = 1, .old_key = {text("a")}}));
}

// --- encoder refuses what no decoder would accept -----------------------------

TEST(ProtocolEncoderMisuse, ValueWithoutTupleThrows) {
    Encoder enc;
    EXPECT_THROW(enc.value(ValueKind::kNull), std::logic_error);
    enc.start_insert(1, 1);
    enc.value(ValueKind::kNull);
    EXPECT_THROW(enc.value(ValueKind::kNull), std::logic_error);
}

TEST(ProtocolEncoderMisuse, NewMessageBeforeTupleCompleteThrows) {
    Encoder enc;
    enc.start_insert(1, 2);
    enc.value(ValueKind::kNull);
    EXPECT_THROW(enc.commit(Commit{}), std::logic_error);
    EXPECT_THROW(enc.start_insert(1, 1), std::logic_error);
    enc.clear();
    EXPECT_NO_THROW(enc.commit(Commit{}));
}

TEST(ProtocolEncoderMisuse, StartTupleOnlyAfterCompleteOldKey) {
    Encoder enc;
    EXPECT_THROW(enc.start_tuple(1), std::logic_error);
    enc.start_update(1, 1);
    EXPECT_THROW(enc.start_tuple(1), std::logic_error);  // old key value missing
    enc.value(ValueKind::kText, "k");
    enc.start_tuple(0);
    EXPECT_THROW(enc.start_tuple(0), std::logic_error);  // only one new tuple
    EXPECT_NO_THROW(enc.begin(Begin{}));
}

TEST(ProtocolEncoderMisuse, UpdateWithoutNewTupleIsIncomplete) {
    Encoder enc;
    enc.start_update(1, std::nullopt);
    EXPECT_THROW(enc.commit(Commit{}), std::logic_error);
}

TEST(ProtocolEncoderMisuse, TooManyColumnsThrows) {
    Encoder enc;
    EXPECT_THROW(enc.start_insert(1, kMaxColumns + 1), std::length_error);
    enc.clear();
    EXPECT_THROW(enc.start_delete(1, kMaxColumns + 1), std::length_error);
    enc.clear();
    EXPECT_THROW(enc.start_update(1, kMaxColumns + 1), std::length_error);
    enc.clear();
    EXPECT_THROW(enc.insert(Insert{.relid = 1, .new_tuple = wide_tuple(kMaxColumns + 1)}),
                 std::length_error);
    enc.clear();
    EXPECT_THROW(
        enc.update(
            Update{.relid = 1, .old_key = std::nullopt, .new_tuple = wide_tuple(kMaxColumns + 1)}),
        std::length_error);
    enc.clear();
    EXPECT_THROW(enc.relation(wide_relation(kMaxColumns + 1)), std::length_error);
    // Nothing at all was written: the checks come before the first byte.
    EXPECT_EQ(enc.size(), 0u);
}

TEST(ProtocolEncoderMisuse, DataOnNullOrUnchangedThrows) {
    Encoder enc;
    enc.start_insert(1, 2);
    EXPECT_THROW(enc.value(ValueKind::kNull, "x"), std::invalid_argument);
    EXPECT_THROW(enc.value(ValueKind::kUnchanged, "x"), std::invalid_argument);
}

TEST(ProtocolEncoderMisuse, UnknownValueKindThrows) {
    Encoder enc;
    enc.start_insert(1, 1);
    EXPECT_THROW(enc.value(static_cast<ValueKind>('x'), "x"), std::invalid_argument);
}

// --- malformed input ----------------------------------------------------------

// Decodes `wire`, expecting a DecodeError whose message contains `what`.
void expect_error(const std::string &wire, const std::string &what) {
    try {
        decode(as_span(wire));
        ADD_FAILURE() << "decoded without error; expected: " << what;
    } catch (const DecodeError &e) {
        EXPECT_THAT(e.what(), HasSubstr(what));
    }
}

TEST(ProtocolMalformed, EmptyInput) {
    EXPECT_THROW(decode({}), DecodeError);
    expect_error("", "empty");
}

TEST(ProtocolMalformed, UnknownTypeByte) {
    expect_error(hex("5A"), "unknown pgmesh message type 0x5a ('Z')");
    expect_error(hex("00"), "unknown pgmesh message type 0x00");
    expect_error(hex("FF 00000000"), "unknown pgmesh message type 0xff");
    expect_error(hex("62 00000001 0000"), "unknown pgmesh message type 0x62 ('b')");
}

TEST(ProtocolMalformed, TruncationMessageNamesFieldAndOffset) {
    expect_error(hex("49"), "truncated INSERT: expected 4 bytes for relid at offset 1");
    expect_error(hex("49 00000001 00"), "truncated INSERT: expected 2 bytes for natts at offset 5");
    expect_error(hex("42 0000000000000001 00000002"),
                 "truncated BEGIN: expected 8 bytes for final_lsn at offset 13");
}

TEST(ProtocolMalformed, TooManyValuesInTuple) {
    // 1601 values declared, and enough null bytes to hold them: only the
    // limit is wrong.
    std::string wire = hex("49 00000001 0641") + std::string(kMaxColumns + 1, 'n');
    expect_error(wire, "more than the maximum 1600");
    expect_error(hex("49 00000001 FFFF"), "more than the maximum 1600");
    expect_error(hex("44 00000001 0641"), "more than the maximum 1600");
    expect_error(hex("55 00000001 'K' 0641"), "more than the maximum 1600");
    expect_error(hex("55 00000001 'N' 0641"), "more than the maximum 1600");
}

TEST(ProtocolMalformed, TupleCountBeyondBufferRejectedBeforeReading) {
    expect_error(hex("49 00000001 0640 6E6E6E"),
                 "truncated INSERT: expected 1600 bytes for tuple values at offset 7");
}

TEST(ProtocolMalformed, TooManyColumnsInRelation) {
    expect_error(hex("52 00000001 00000000 00000000 0641"), "ncols 1601");
    expect_error(hex("52 00000001 00000000 00000000 FFFF"), "ncols 65535");
}

TEST(ProtocolMalformed, RelationColumnCountBeyondBufferRejectedBeforeReserving) {
    // 1600 columns of at least 17 bytes each cannot fit in what remains.
    expect_error(hex("52 00000001 00000000 00000000 0640 00 00000000"),
                 "expected 27200 bytes for columns");
}

TEST(ProtocolMalformed, TruncateCountBeyondBufferRejectedBeforeReserving) {
    expect_error(hex("54 00 FFFFFFFF 00000001"), "expected 17179869180 bytes for relids");
    expect_error(hex("54 00 00000002 00000001"), "truncated TRUNCATE");
}

TEST(ProtocolMalformed, UnknownValueKind) {
    expect_error(hex("49 00000001 0001 78"), "unknown value kind 0x78 ('x') at offset 7");
    expect_error(hex("49 00000001 0001 00"), "unknown value kind 0x00");
    expect_error(hex("49 00000001 0001 54 00000000"), "unknown value kind 0x54 ('T')");
}

TEST(ProtocolMalformed, UnknownColumnFlagBits) {
    std::string col = " 00000001 'c' 00000017 00000000 FFFFFFFF";
    expect_error(hex("52 00000001 00000000 00000000 0001 02" + col),
                 "unknown column flag bits 0x02");
    expect_error(hex("52 00000001 00000000 00000000 0001 81" + col),
                 "unknown column flag bits 0x81");
    EXPECT_NO_THROW(decode(as_span(hex("52 00000001 00000000 00000000 0001 01" + col))));
}

TEST(ProtocolMalformed, UnknownTruncateFlagBits) {
    expect_error(hex("54 04 00000000"), "unknown flag bits 0x04");
    expect_error(hex("54 FF 00000000"), "unknown flag bits 0xff");
}

TEST(ProtocolMalformed, BadTransactionalByte) {
    expect_error(hex("4D 02 00000000 00000000"), "transactional flag 0x02");
    expect_error(hex("4D 'T' 00000000 00000000"), "transactional flag 0x54");
}

TEST(ProtocolMalformed, BadOldKeyMarker) {
    expect_error(hex("55 00000001 'X' 0000"), "old key marker 0x58 ('X') at offset 5");
    expect_error(hex("55 00000001 'k' 0000 0000"), "neither 'K' nor 'N'");
    expect_error(hex("55 00000001 00 0000"), "neither 'K' nor 'N'");
}

TEST(ProtocolMalformed, StringLengthBeyondBuffer) {
    expect_error(hex("52 00000001 FFFFFFFF 's'"),
                 "truncated RELATION: schema at offset 5 declares 4294967295 bytes but 1 remain");
    expect_error(hex("52 00000001 00000000 00000002 't'"), "name at offset 9 declares 2 bytes");
    expect_error(hex("49 00000001 0001 74 00000005 'abcd'"), "value data at offset 8 declares 5");
    expect_error(hex("49 00000001 0001 62 80000000"), "value data");
    expect_error(hex("4D 01 00000001"), "prefix");
    expect_error(hex("4D 01 00000000 00000003 'ab'"), "content");
}

TEST(ProtocolMalformed, TrailingBytesAfterEveryMessageType) {
    for (const Decoded &msg : samples()) {
        SCOPED_TRACE(type_of(msg));
        for (std::string extra : {std::string(1, '\0'), std::string("xyz")}) {
            std::string wire = encode_any(msg) + extra;
            expect_error(wire, "trailing bytes");
        }
    }
}

TEST(ProtocolMalformed, TwoMessagesInOneBufferAreTrailingBytes) {
    std::string wire = encode_any(Commit{}) + encode_any(Commit{});
    expect_error(wire, "25 trailing bytes after the message at offset 25");
}

// A data frame carries a batch: every sample message back to back, read with
// decode_next, comes back in order and uses up exactly the batch.
TEST(ProtocolBatch, DecodeNextReadsEveryMessageOfABatchInOrder) {
    std::string batch;
    for (const Decoded &msg : samples()) batch += encode_any(msg);
    std::vector<uint8_t> bytes(batch.begin(), batch.end());
    std::span<const uint8_t> rest(bytes);
    size_t n = 0;
    for (const Decoded &expected : samples()) {
        ASSERT_FALSE(rest.empty()) << "batch ended after " << n << " messages";
        size_t used = 0;
        EXPECT_EQ(decode_next(rest, used), expected) << "message " << n;
        ASSERT_GT(used, 0u);
        ASSERT_LE(used, rest.size());
        rest = rest.subspan(used);
        ++n;
    }
    EXPECT_TRUE(rest.empty());
    // decode() still wants exactly one message.
    EXPECT_THROW(decode(bytes), DecodeError);
}

TEST(ProtocolBatch, ATruncatedLastMessageOrGarbageAfterOneIsRejected) {
    Encoder enc;
    enc.begin(Begin{.xid = 7});
    size_t first = enc.size();
    enc.commit(Commit{.end_lsn = 9});
    auto wire = enc.bytes();
    size_t used = 0;
    EXPECT_EQ(decode_next(wire, used), Decoded(Begin{.xid = 7}));
    EXPECT_EQ(used, first);
    for (size_t len = 0; len < wire.size() - first; ++len) {
        std::vector<uint8_t> cut(wire.begin() + first, wire.begin() + first + len);
        EXPECT_THROW(decode_next(cut, used), DecodeError) << "length " << len;
    }
    std::vector<uint8_t> garbage(wire.begin(), wire.begin() + first);
    garbage.push_back('J');
    EXPECT_EQ(decode_next(garbage, used), Decoded(Begin{.xid = 7}));
    std::span<const uint8_t> rest = std::span<const uint8_t>(garbage).subspan(used);
    EXPECT_THROW(decode_next(rest, used), DecodeError);
}

// Every proper prefix of every valid message must be rejected: the format is
// self-delimiting, so a prefix can never be a complete message.
TEST(ProtocolMalformed, EveryTruncationOfEveryMessageIsRejected) {
    size_t checked = 0;
    for (const Decoded &msg : samples()) {
        SCOPED_TRACE(type_of(msg));
        std::string wire = encode_any(msg);
        for (size_t len = 0; len < wire.size(); ++len) {
            // A fresh allocation of exactly `len` bytes, so that ASan flags
            // any read past the end of the prefix.
            std::vector<uint8_t> prefix(wire.begin(), wire.begin() + len);
            EXPECT_THROW(decode(prefix), DecodeError) << "prefix length " << len;
            ++checked;
        }
    }
    EXPECT_GT(checked, 10000u);
}

// Random mutations of valid messages: the decoder may only return or throw
// DecodeError, and whatever it returns must re-encode to the input bytes.
TEST(ProtocolMalformed, RandomCorruptionOnlyEverThrowsDecodeError) {
    std::mt19937 rng(20240601);  // fixed: a failure must reproduce
    const auto &all = samples();
    // Skip the kMaxColumns samples: they are large and slow to mutate, and
    // the small ones already cover every field.
    std::vector<std::string> seeds;
    for (const Decoded &msg : all) {
        std::string wire = encode_any(msg);
        if (wire.size() < 1000) seeds.push_back(std::move(wire));
    }
    auto pick = [&rng](size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
    size_t decoded = 0, rejected = 0;
    for (int iter = 0; iter < 20000; ++iter) {
        std::string wire = seeds[pick(seeds.size())];
        int mutations = 1 + static_cast<int>(pick(3));
        for (int m = 0; m < mutations; ++m) {
            switch (pick(7)) {
                case 0:  // flip one bit
                    if (!wire.empty()) wire[pick(wire.size())] ^= static_cast<char>(1 << pick(8));
                    break;
                case 1:  // overwrite one byte
                    if (!wire.empty()) wire[pick(wire.size())] = static_cast<char>(pick(256));
                    break;
                case 2:  // insert a byte
                    wire.insert(wire.begin() + static_cast<long>(pick(wire.size() + 1)),
                                static_cast<char>(pick(256)));
                    break;
                case 3:  // erase a byte
                    if (!wire.empty()) wire.erase(pick(wire.size()), 1);
                    break;
                case 4:  // truncate
                    wire.resize(pick(wire.size() + 1));
                    break;
                case 5: {  // plant a large length/count where a field may be
                    if (wire.size() < 4) break;
                    size_t at = pick(wire.size() - 3);
                    static const uint32_t kNasty[] = {0xFFFFFFFF, 0x80000000, 0x7FFFFFFF,
                                                      0x00010000, 0x00000641, 0x00000640};
                    uint32_t v = kNasty[pick(std::size(kNasty))];
                    for (int i = 0; i < 4; ++i) wire[at + i] = static_cast<char>(v >> (24 - 8 * i));
                    break;
                }
                default:  // append random bytes
                    for (size_t n = 1 + pick(4); n > 0; --n)
                        wire.push_back(static_cast<char>(pick(256)));
            }
        }
        std::vector<uint8_t> exact(wire.begin(), wire.end());  // exact size for ASan
        try {
            Decoded msg = decode(exact);
            ++decoded;
            ASSERT_EQ(encode_any(msg), wire) << "iteration " << iter;
        } catch (const DecodeError &) {
            ++rejected;
        }
    }
    // Both outcomes must occur, or the mutations are not exercising anything.
    EXPECT_GT(decoded, 1000u);
    EXPECT_GT(rejected, 1000u);
}

}  // namespace
}  // namespace pgmesh::proto
