#include "mesh_message.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmesh::mesh {
namespace {

using ::testing::HasSubstr;

// A toy deterministic keyed MAC: four FNV-1a lanes over key, separator and
// data, 8 bytes each. Not a MAC anyone should use, but every step of FNV-1a
// is a bijection of its state, so any change to one byte of the data changes
// every lane: a flipped bit is always detected. The real MAC is HMAC-SHA256
// in the pg adapter.
Mac toy_mac(std::string key) {
    return [key = std::move(key)](std::string_view data) {
        MacValue out{};
        for (int lane = 0; lane < 4; ++lane) {
            uint64_t h = 0xcbf29ce484222325ULL ^ static_cast<uint64_t>(lane + 1);
            auto feed = [&h](std::string_view s) {
                for (char c : s) {
                    h ^= static_cast<uint8_t>(c);
                    h *= 0x100000001b3ULL;
                }
            };
            feed(key);
            feed(std::string_view("\xff\x00\xff", 3));
            feed(data);
            for (int i = 0; i < 8; ++i) out[lane * 8 + i] = static_cast<uint8_t>(h >> (56 - 8 * i));
        }
        return out;
    };
}

const Mac &group_mac() {
    static const Mac mac = toy_mac("the group's key");
    return mac;
}

// Seals a body built by hand, as mesh_message.cpp does: the MAC is computed
// over prefix + '\0' + body and appended.
std::string seal_by_hand(std::string_view prefix, const std::string &body,
                         const Mac &mac = group_mac()) {
    std::string data(prefix);
    data.push_back('\0');
    data.append(body);
    MacValue m = mac(data);
    return body + std::string(reinterpret_cast<const char *>(m.data()), m.size());
}

// Big-endian fields, written independently of bytes.hpp so that the layout
// of docs is checked, not just the codec against itself.
struct Body {
    std::string bytes;
    Body &u8(uint8_t v) {
        bytes.push_back(static_cast<char>(v));
        return *this;
    }
    Body &u32(uint32_t v) {
        for (int shift = 24; shift >= 0; shift -= 8) u8(static_cast<uint8_t>(v >> shift));
        return *this;
    }
    Body &u64(uint64_t v) {
        for (int shift = 56; shift >= 0; shift -= 8) u8(static_cast<uint8_t>(v >> shift));
        return *this;
    }
    Body &str(std::string_view s) {
        u32(static_cast<uint32_t>(s.size()));
        bytes.append(s);
        return *this;
    }
};

// Strings a statement, role, search_path or table name may hold: quotes,
// backslashes, semicolons, NUL bytes, empty, non-ASCII, long.
std::vector<std::string> hostile_strings() {
    using namespace std::string_literals;
    return {
        ""s,
        "'"s,
        "\""s,
        "\\"s,
        ";"s,
        "\0"s,
        "a\0b"s,
        "\0\0\0\0"s,
        "DROP TABLE t; -- '\" \\ \0 $$ $x$"s,
        "\"weird schema\".\"ta\"\"ble\""s,
        "E'\\x00\\\\'"s,
        "\xff\xfe\x80\x01"s,
        "caf\xc3\xa9 \xe2\x98\x83"s,
        "\n\r\t"s,
        std::string(70000, 'x'),
        std::string(4096, '\0'),
    };
}

DdlStatement sample_ddl() {
    DdlStatement d;
    d.origin_node = 0x0102030405060708ULL;
    d.xid = 0xdeadbeef;
    d.lock_id = 0x1122334455667788ULL;
    d.role = "app_owner";
    d.search_path = "\"$user\", public";
    d.statement = "ALTER TABLE t ADD COLUMN c int";
    return d;
}

LockMessage sample_lock(LockKind kind = LockKind::kRequest) {
    LockMessage m;
    m.kind = kind;
    m.sender = 7;
    m.holder = 3;
    m.lock_id = 0xfedcba9876543210ULL;
    m.seq = 2;
    m.strength = Strength::kWrite;
    m.priority = 1700000000123456;
    m.holder_pid = 4242;
    m.all_tables = false;
    m.tables = {{"public", "t"}, {"s", "u"}};
    return m;
}

const std::vector<LockKind> &all_kinds() {
    static const std::vector<LockKind> kinds = {LockKind::kRequest, LockKind::kGrant,
                                                LockKind::kAcquired, LockKind::kRelease,
                                                LockKind::kReset};
    return kinds;
}

// The body of sample_lock(kind) with the kind, strength and all_tables bytes
// given, as docs/protocol.md lays it out.
Body lock_body(uint8_t kind, uint8_t strength, uint8_t all_tables = 0) {
    LockMessage m = sample_lock();
    Body b;
    b.u8(kMessageVersion).u8(kind).u64(m.sender).u64(m.holder).u64(m.lock_id).u32(m.seq);
    b.u8(strength).u64(static_cast<uint64_t>(m.priority)).u32(static_cast<uint32_t>(m.holder_pid));
    b.u8(all_tables).u32(static_cast<uint32_t>(m.tables.size()));
    for (const auto &[schema, table] : m.tables) b.str(schema).str(table);
    return b;
}

// --- Round trips ---------------------------------------------------------

TEST(MeshMessage, StrengthNames) {
    EXPECT_EQ(name(Strength::kDdl), "ddl");
    EXPECT_EQ(name(Strength::kWrite), "write");
}

TEST(MeshMessage, DdlRoundTrip) {
    DdlStatement d = sample_ddl();
    std::string sealed = seal(d, group_mac());
    EXPECT_EQ(open_ddl(sealed, group_mac()), d);
    // u8 version, u64 origin, u32 xid, u64 lock id, 3 strings, 32-byte MAC.
    EXPECT_EQ(sealed.size(), 1 + 8 + 4 + 8 + (4 + d.role.size()) + (4 + d.search_path.size()) +
                                 (4 + d.statement.size()) + kMacSize);
    EXPECT_EQ(static_cast<uint8_t>(sealed[0]), kMessageVersion);
}

TEST(MeshMessage, ClockTickRoundTripAndLayout) {
    ClockTick tick{0xfedcba9876543210ULL, -1234567890123LL};
    std::string sealed = seal(tick, group_mac());
    EXPECT_EQ(open_clock(sealed, group_mac()), tick);
    Body b;
    b.u8(kMessageVersion).u64(tick.sender).u64(static_cast<uint64_t>(tick.time));
    EXPECT_EQ(sealed, seal_by_hand(kClockPrefix, b.bytes));
    // Sealed under another key, or as another kind of message: refused.
    EXPECT_THROW(open_clock(sealed, toy_mac("another group's key")), BadMessage);
    EXPECT_THROW(open_clock(seal(sample_ddl(), group_mac()), group_mac()), BadMessage);
    std::string flipped = sealed;
    flipped[3] ^= 1;
    EXPECT_THROW(open_clock(flipped, group_mac()), BadMessage);
}

TEST(MeshMessage, DdlLayoutMatchesTheDocumentedOne) {
    DdlStatement d = sample_ddl();
    Body b;
    b.u8(kMessageVersion).u64(d.origin_node).u32(d.xid).u64(d.lock_id);
    b.str(d.role).str(d.search_path).str(d.statement);
    EXPECT_EQ(seal(d, group_mac()), seal_by_hand(kDdlPrefix, b.bytes));
}

TEST(MeshMessage, DdlRoundTripOfExtremeNumbersAndEmptyStrings) {
    DdlStatement d;  // all zero, all empty
    EXPECT_EQ(open_ddl(seal(d, group_mac()), group_mac()), d);
    d.origin_node = UINT64_MAX;
    d.xid = UINT32_MAX;
    d.lock_id = UINT64_MAX;
    EXPECT_EQ(open_ddl(seal(d, group_mac()), group_mac()), d);
}

TEST(MeshMessage, DdlRoundTripOfHostileStrings) {
    for (const std::string &s : hostile_strings()) {
        SCOPED_TRACE("string of " + std::to_string(s.size()) + " bytes");
        for (int field = 0; field < 3; ++field) {
            DdlStatement d = sample_ddl();
            (field == 0 ? d.role : field == 1 ? d.search_path : d.statement) = s;
            DdlStatement back = open_ddl(seal(d, group_mac()), group_mac());
            EXPECT_EQ(back, d);
            EXPECT_EQ(back.statement.size(), d.statement.size());  // NULs kept
        }
        DdlStatement all = sample_ddl();
        all.role = all.search_path = all.statement = s;
        EXPECT_EQ(open_ddl(seal(all, group_mac()), group_mac()), all);
    }
}

TEST(MeshMessage, DdlRoundTripOfAVeryLongStatement) {
    DdlStatement d = sample_ddl();
    d.statement.clear();
    for (int i = 0; i < 200000; ++i) d.statement += "CREATE TABLE t" + std::to_string(i) + " ();";
    EXPECT_EQ(open_ddl(seal(d, group_mac()), group_mac()), d);
}

TEST(MeshMessage, LockRoundTripOfEveryKindAndStrength) {
    for (LockKind kind : all_kinds()) {
        for (Strength strength : {Strength::kDdl, Strength::kWrite}) {
            for (bool all_tables : {false, true}) {
                SCOPED_TRACE(std::string(1, static_cast<char>(kind)) + " " +
                             std::string(name(strength)) + (all_tables ? " all" : ""));
                LockMessage m = sample_lock(kind);
                m.strength = strength;
                m.all_tables = all_tables;
                EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
                m.tables.clear();
                EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
            }
        }
    }
}

TEST(MeshMessage, LockLayoutMatchesTheDocumentedOne) {
    for (LockKind kind : all_kinds()) {
        LockMessage m = sample_lock(kind);
        EXPECT_EQ(seal(m, group_mac()),
                  seal_by_hand(kLockPrefix, lock_body(static_cast<uint8_t>(kind),
                                                      static_cast<uint8_t>(Strength::kWrite))
                                                .bytes));
    }
}

TEST(MeshMessage, LockRoundTripOfExtremeNumbers) {
    LockMessage m = sample_lock();
    m.sender = m.holder = m.lock_id = UINT64_MAX;
    m.seq = UINT32_MAX;
    m.priority = INT64_MIN;
    m.holder_pid = INT32_MIN;
    EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
    m.priority = INT64_MAX;
    m.holder_pid = -1;
    EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
    m = LockMessage{};
    EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
}

TEST(MeshMessage, LockRoundTripOfHostileTableNames) {
    std::vector<std::string> strings = hostile_strings();
    LockMessage m = sample_lock();
    m.tables.clear();
    for (size_t i = 0; i < strings.size(); ++i)
        m.tables.emplace_back(strings[i], strings[strings.size() - 1 - i]);
    EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
    for (const std::string &s : strings) {
        m.tables = {{s, s}};
        EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
    }
}

TEST(MeshMessage, LockRoundTripOfTheMostTablesAccepted) {
    LockMessage m = sample_lock();
    m.tables.clear();
    for (int i = 0; i < 10000; ++i)
        m.tables.emplace_back("s" + std::to_string(i % 7), "t" + std::to_string(i));
    EXPECT_EQ(open_lock(seal(m, group_mac()), group_mac()), m);
}

// open_lock refuses more than 10000 tables (kMaxTables in mesh_message.cpp),
// but seal writes them: a write lock over 10001 tables would be a message
// that every peer refuses. The encoder should refuse what the decoder
// rejects (as proto::Encoder does, docs/protocol.md).
TEST(MeshMessage, SealRefusesMoreTablesThanOpenAccepts) {
    LockMessage m = sample_lock();
    m.tables.assign(10001, {"s", "t"});
    std::string sealed;
    EXPECT_ANY_THROW(sealed = seal(m, group_mac()))
        << "seal wrote " << m.tables.size() << " tables, which open_lock refuses";
    if (!sealed.empty()) {
        EXPECT_THROW(open_lock(sealed, group_mac()), BadMessage);
    }
}

// --- Seal ----------------------------------------------------------------

// Every single-bit flip of `sealed` (body or MAC) must be refused.
template <typename Open>
void expect_every_bit_flip_refused(const std::string &sealed, Open open) {
    int refused = 0;
    for (size_t i = 0; i < sealed.size(); ++i) {
        for (int bit = 0; bit < 8; ++bit) {
            std::string bad = sealed;
            bad[i] = static_cast<char>(static_cast<uint8_t>(bad[i]) ^ (1u << bit));
            try {
                open(bad);
                ADD_FAILURE() << "flip of bit " << bit << " of byte " << i << " of "
                              << sealed.size() << " accepted";
            } catch (const BadMessage &e) {
                EXPECT_THAT(e.what(), HasSubstr("not sealed with this group's key"));
                ++refused;
            }
        }
    }
    EXPECT_EQ(refused, static_cast<int>(sealed.size() * 8));
}

TEST(MeshMessage, EveryFlippedBitOfADdlMessageIsRefused) {
    DdlStatement d = sample_ddl();
    d.statement = std::string("x\0;'\\", 5);
    expect_every_bit_flip_refused(seal(d, group_mac()),
                                  [](const std::string &s) { open_ddl(s, group_mac()); });
}

TEST(MeshMessage, EveryFlippedBitOfALockMessageIsRefused) {
    for (LockKind kind : all_kinds()) {
        expect_every_bit_flip_refused(seal(sample_lock(kind), group_mac()),
                                      [](const std::string &s) { open_lock(s, group_mac()); });
    }
}

TEST(MeshMessage, AMessageSealedWithAnotherKeyIsRefused) {
    Mac other = toy_mac("another group's key");
    Mac close = toy_mac("the group's kez");
    for (const Mac *mac : {&other, &close}) {
        try {
            open_ddl(seal(sample_ddl(), *mac), group_mac());
            ADD_FAILURE() << "DDL sealed with another key accepted";
        } catch (const BadMessage &e) {
            EXPECT_THAT(e.what(), HasSubstr("not sealed with this group's key"));
            EXPECT_THAT(e.what(), HasSubstr("pgmesh_ddl"));
        }
        for (LockKind kind : all_kinds())
            EXPECT_THROW(open_lock(seal(sample_lock(kind), *mac), group_mac()), BadMessage);
    }
    // And the key does matter to the toy MAC itself.
    EXPECT_NE(seal(sample_ddl(), other), seal(sample_ddl(), group_mac()));
}

TEST(MeshMessage, AnUnsealedBodyIsRefused) {
    // What pg_logical_emit_message('pgmesh_lock', <bare body>) would give:
    // the body with its last 32 bytes taken for a MAC.
    std::string body = lock_body('Q', 1).bytes;
    EXPECT_THROW(open_lock(body, group_mac()), BadMessage);
    // The body and 32 zero bytes.
    EXPECT_THROW(open_lock(body + std::string(kMacSize, '\0'), group_mac()), BadMessage);
}

TEST(MeshMessage, TheSealCoversThePrefix) {
    // A sealed DDL message presented as a lock message, and the other way.
    std::string ddl = seal(sample_ddl(), group_mac());
    try {
        open_lock(ddl, group_mac());
        ADD_FAILURE() << "a DDL message opened as a lock message";
    } catch (const BadMessage &e) {
        EXPECT_THAT(e.what(), HasSubstr("not sealed with this group's key"));
        EXPECT_THAT(e.what(), HasSubstr("pgmesh_lock"));
    }
    for (LockKind kind : all_kinds())
        EXPECT_THROW(open_ddl(seal(sample_lock(kind), group_mac()), group_mac()), BadMessage);

    // The same body sealed under another prefix does not open as a lock
    // message: the prefix is part of what the MAC covers.
    std::string body = lock_body('G', 2).bytes;
    EXPECT_NO_THROW(open_lock(seal_by_hand(kLockPrefix, body), group_mac()));
    EXPECT_THROW(open_lock(seal_by_hand(kDdlPrefix, body), group_mac()), BadMessage);
    EXPECT_THROW(open_lock(seal_by_hand("pgmesh_lock2", body), group_mac()), BadMessage);
    EXPECT_THROW(open_lock(seal_by_hand("", body), group_mac()), BadMessage);
}

// --- Truncation and malformed (but sealed) bodies ---------------------------

TEST(MeshMessage, TruncatedContentIsRefusedAtEveryLength) {
    std::string ddl = seal(sample_ddl(), group_mac());
    for (size_t len = 0; len < ddl.size(); ++len) {
        SCOPED_TRACE("DDL cut to " + std::to_string(len));
        EXPECT_THROW(open_ddl(std::string_view(ddl).substr(0, len), group_mac()), BadMessage);
        // Cut at the front too.
        EXPECT_THROW(open_ddl(std::string_view(ddl).substr(ddl.size() - len), group_mac()),
                     BadMessage);
    }
    std::string lock = seal(sample_lock(), group_mac());
    for (size_t len = 0; len < lock.size(); ++len) {
        SCOPED_TRACE("lock cut to " + std::to_string(len));
        EXPECT_THROW(open_lock(std::string_view(lock).substr(0, len), group_mac()), BadMessage);
        EXPECT_THROW(open_lock(std::string_view(lock).substr(lock.size() - len), group_mac()),
                     BadMessage);
    }
}

TEST(MeshMessage, TooShortToBeSealed) {
    for (size_t len = 0; len <= kMacSize; ++len) {
        try {
            open_lock(std::string(len, 'x'), group_mac());
            ADD_FAILURE() << len << " bytes accepted";
        } catch (const BadMessage &e) {
            EXPECT_THAT(e.what(), HasSubstr("too short to be sealed"));
        }
        EXPECT_THROW(open_ddl(std::string(len, '\0'), group_mac()), BadMessage);
    }
}

// Bodies cut at every length and then sealed correctly: the seal checks, the
// decoder must refuse (never read past the end, never crash).
TEST(MeshMessage, SealedTruncatedBodiesAreRefusedAtEveryLength) {
    DdlStatement d = sample_ddl();
    d.statement = std::string("a;'\0\\", 5);
    std::string ddl = seal(d, group_mac());
    std::string ddl_body = ddl.substr(0, ddl.size() - kMacSize);
    for (size_t len = 0; len < ddl_body.size(); ++len) {
        SCOPED_TRACE("DDL body cut to " + std::to_string(len));
        EXPECT_THROW(open_ddl(seal_by_hand(kDdlPrefix, ddl_body.substr(0, len)), group_mac()),
                     BadMessage);
    }
    std::string lock = seal(sample_lock(), group_mac());
    std::string lock_body_bytes = lock.substr(0, lock.size() - kMacSize);
    for (size_t len = 0; len < lock_body_bytes.size(); ++len) {
        SCOPED_TRACE("lock body cut to " + std::to_string(len));
        EXPECT_THROW(
            open_lock(seal_by_hand(kLockPrefix, lock_body_bytes.substr(0, len)), group_mac()),
            BadMessage);
    }
}

TEST(MeshMessage, SealedBodiesWithTrailingBytesAreRefused) {
    std::string ddl = seal(sample_ddl(), group_mac());
    std::string ddl_body = ddl.substr(0, ddl.size() - kMacSize);
    EXPECT_NO_THROW(open_ddl(seal_by_hand(kDdlPrefix, ddl_body), group_mac()));
    for (std::string extra : {std::string(1, '\0'), std::string("x"), std::string(100, 'y')}) {
        EXPECT_THROW(open_ddl(seal_by_hand(kDdlPrefix, ddl_body + extra), group_mac()), BadMessage);
        EXPECT_THROW(
            open_lock(seal_by_hand(kLockPrefix, lock_body('R', 1).bytes + extra), group_mac()),
            BadMessage);
    }
}

TEST(MeshMessage, AnotherLayoutVersionIsRefusedEvenWhenSealed) {
    for (int version : {0, 2, 255}) {
        std::string body = lock_body('Q', 1).bytes;
        body[0] = static_cast<char>(version);
        try {
            open_lock(seal_by_hand(kLockPrefix, body), group_mac());
            ADD_FAILURE() << "version " << version << " accepted";
        } catch (const BadMessage &e) {
            EXPECT_THAT(e.what(), HasSubstr("layout version " + std::to_string(version)));
        }
        std::string ddl = seal(sample_ddl(), group_mac());
        std::string ddl_body = ddl.substr(0, ddl.size() - kMacSize);
        ddl_body[0] = static_cast<char>(version);
        EXPECT_THROW(open_ddl(seal_by_hand(kDdlPrefix, ddl_body), group_mac()), BadMessage);
    }
}

TEST(MeshMessage, UnknownKindBytesAreRefusedEvenWhenSealed) {
    int accepted = 0;
    for (int kind = 0; kind < 256; ++kind) {
        std::string sealed = seal_by_hand(kLockPrefix, lock_body(kind, 1).bytes);
        bool known = kind == 'Q' || kind == 'G' || kind == 'A' || kind == 'R' || kind == 'X';
        if (known) {
            EXPECT_EQ(static_cast<int>(open_lock(sealed, group_mac()).kind), kind);
            ++accepted;
        } else {
            try {
                open_lock(sealed, group_mac());
                ADD_FAILURE() << "kind " << kind << " accepted";
            } catch (const BadMessage &e) {
                EXPECT_THAT(e.what(), HasSubstr("unknown kind"));
            }
        }
    }
    EXPECT_EQ(accepted, 5);
}

TEST(MeshMessage, UnknownStrengthBytesAreRefusedEvenWhenSealed) {
    for (int strength = 0; strength < 256; ++strength) {
        std::string sealed = seal_by_hand(kLockPrefix, lock_body('G', strength).bytes);
        if (strength == 1 || strength == 2) {
            EXPECT_EQ(static_cast<int>(open_lock(sealed, group_mac()).strength), strength);
        } else {
            try {
                open_lock(sealed, group_mac());
                ADD_FAILURE() << "strength " << strength << " accepted";
            } catch (const BadMessage &e) {
                EXPECT_THAT(e.what(), HasSubstr("unknown strength"));
            }
        }
    }
}

TEST(MeshMessage, AllTablesFlagOtherThanZeroOrOneIsRefused) {
    EXPECT_FALSE(
        open_lock(seal_by_hand(kLockPrefix, lock_body('Q', 2, 0).bytes), group_mac()).all_tables);
    EXPECT_TRUE(
        open_lock(seal_by_hand(kLockPrefix, lock_body('Q', 2, 1).bytes), group_mac()).all_tables);
    for (int flag : {2, 3, 0x80, 0xff})
        EXPECT_THROW(
            open_lock(seal_by_hand(kLockPrefix, lock_body('Q', 2, flag).bytes), group_mac()),
            BadMessage);
}

TEST(MeshMessage, TableCountsTheBytesCannotHoldAreRefused) {
    LockMessage m = sample_lock();
    auto body_with_count = [&](uint32_t count, int tables_present) {
        Body b;
        b.u8(kMessageVersion).u8('Q').u64(m.sender).u64(m.holder).u64(m.lock_id).u32(m.seq);
        b.u8(2).u64(static_cast<uint64_t>(m.priority)).u32(static_cast<uint32_t>(m.holder_pid));
        b.u8(0).u32(count);
        for (int i = 0; i < tables_present; ++i) b.str("s").str("t");
        return seal_by_hand(kLockPrefix, b.bytes);
    };
    EXPECT_EQ(open_lock(body_with_count(2, 2), group_mac()).tables.size(), 2u);
    EXPECT_THROW(open_lock(body_with_count(3, 2), group_mac()), BadMessage);
    EXPECT_THROW(open_lock(body_with_count(1, 2), group_mac()), BadMessage);  // trailing
    EXPECT_THROW(open_lock(body_with_count(10001, 0), group_mac()), BadMessage);
    EXPECT_THROW(open_lock(body_with_count(UINT32_MAX, 0), group_mac()), BadMessage);
    EXPECT_THROW(open_lock(body_with_count(0x7fffffff, 1), group_mac()), BadMessage);
}

TEST(MeshMessage, StringLengthsPastTheEndAreRefused) {
    DdlStatement d = sample_ddl();
    for (uint32_t bad : {7u, 1000u, 0x7fffffffu, 0xffffffffu}) {
        Body b;
        b.u8(kMessageVersion).u64(d.origin_node).u32(d.xid).u64(d.lock_id);
        b.str(d.role).str(d.search_path).u32(bad).bytes.append("abc");
        try {
            open_ddl(seal_by_hand(kDdlPrefix, b.bytes), group_mac());
            ADD_FAILURE() << "length " << bad << " accepted";
        } catch (const BadMessage &e) {
            EXPECT_THAT(e.what(), HasSubstr("statement"));
        }
    }
}

}  // namespace
}  // namespace pgmesh::mesh
