#include "mesh_message.hpp"

#include <span>

#include "bytes.hpp"
#include "cpp_only.hpp"

namespace pgmesh::mesh {

namespace {

constexpr size_t kMaxTables = 10000;

MacValue mac_of(std::string_view prefix, std::string_view body, const Mac &mac) {
    // The prefix is part of what is sealed: a DDL body cannot pass as a lock
    // message.
    std::string data(prefix);
    data.push_back('\0');
    data.append(body);
    return mac(data);
}

std::string finish(std::string_view prefix, proto::Writer &w, const Mac &mac) {
    MacValue m = mac_of(prefix, w.bytes(), mac);
    w.raw(std::string_view(reinterpret_cast<const char *>(m.data()), m.size()));
    return w.take();
}

// The body of a sealed message, once its MAC checks.
std::string_view checked_body(std::string_view prefix, std::string_view content, const Mac &mac) {
    if (content.size() < kMacSize + 1)
        throw BadMessage("pgmesh message \"" + std::string(prefix) + "\" of " +
                         std::to_string(content.size()) + " bytes is too short to be sealed");
    std::string_view body = content.substr(0, content.size() - kMacSize);
    std::string_view given = content.substr(content.size() - kMacSize);
    MacValue expected = mac_of(prefix, body, mac);
    // Constant time: how much of a forged MAC matched must not show.
    uint8_t diff = 0;
    for (size_t i = 0; i < kMacSize; ++i)
        diff |= static_cast<uint8_t>(expected[i] ^ static_cast<uint8_t>(given[i]));
    if (diff != 0)
        throw BadMessage("pgmesh message \"" + std::string(prefix) +
                         "\" is not sealed with this group's key");
    if (static_cast<uint8_t>(body[0]) != kMessageVersion)
        throw BadMessage("pgmesh message \"" + std::string(prefix) + "\" has layout version " +
                         std::to_string(static_cast<uint8_t>(body[0])) + ", this node reads " +
                         std::to_string(kMessageVersion));
    return body.substr(1);
}

std::span<const uint8_t> as_bytes(std::string_view s) {
    return {reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

template <typename F>
auto decode_guarded(const char *what, F &&f) {
    try {
        return f();
    } catch (const proto::DecodeError &e) {
        throw BadMessage(std::string("pgmesh ") + what + ": " + e.what());
    }
}

}  // namespace

std::string_view name(Strength strength) {
    return strength == Strength::kWrite ? "write" : "ddl";
}

std::string seal(const DdlStatement &m, const Mac &mac) {
    proto::Writer w;
    w.u8(kMessageVersion);
    w.u64(m.origin_node);
    w.u32(m.xid);
    w.u64(m.lock_id);
    w.str(m.role);
    w.str(m.search_path);
    w.str(m.statement);
    return finish(kDdlPrefix, w, mac);
}

DdlStatement open_ddl(std::string_view content, const Mac &mac) {
    std::string_view body = checked_body(kDdlPrefix, content, mac);
    return decode_guarded("DDL message", [&] {
        proto::Reader r(as_bytes(body), "DDL message");
        DdlStatement m;
        m.origin_node = r.u64("origin node");
        m.xid = r.u32("xid");
        m.lock_id = r.u64("lock id");
        m.role = r.str("role");
        m.search_path = r.str("search_path");
        m.statement = r.str("statement");
        r.expect_end();
        return m;
    });
}

std::string seal(const ClockTick &m, const Mac &mac) {
    proto::Writer w;
    w.u8(kMessageVersion);
    w.u64(m.sender);
    w.u64(static_cast<uint64_t>(m.time));
    return finish(kClockPrefix, w, mac);
}

ClockTick open_clock(std::string_view content, const Mac &mac) {
    std::string_view body = checked_body(kClockPrefix, content, mac);
    return decode_guarded("clock tick", [&] {
        proto::Reader r(as_bytes(body), "clock tick");
        ClockTick m;
        m.sender = r.u64("sender");
        m.time = static_cast<int64_t>(r.u64("time"));
        r.expect_end();
        return m;
    });
}

std::string seal(const LockMessage &m, const Mac &mac) {
    proto::Writer w;
    w.u8(kMessageVersion);
    w.u8(static_cast<uint8_t>(m.kind));
    w.u64(m.sender);
    w.u64(m.holder);
    w.u64(m.lock_id);
    w.u32(m.seq);
    w.u8(static_cast<uint8_t>(m.strength));
    w.i64(m.priority);
    w.u32(static_cast<uint32_t>(m.holder_pid));
    w.u8(m.all_tables ? 1 : 0);
    if (m.tables.size() > kMaxTables)
        throw std::length_error("pgmesh lock message: " + std::to_string(m.tables.size()) +
                                " tables, at most " + std::to_string(kMaxTables));
    w.u32(static_cast<uint32_t>(m.tables.size()));
    for (const auto &[schema, table] : m.tables) {
        w.str(schema);
        w.str(table);
    }
    return finish(kLockPrefix, w, mac);
}

LockMessage open_lock(std::string_view content, const Mac &mac) {
    std::string_view body = checked_body(kLockPrefix, content, mac);
    return decode_guarded("lock message", [&] {
        proto::Reader r(as_bytes(body), "lock message");
        LockMessage m;
        uint8_t kind = r.u8("kind");
        switch (static_cast<LockKind>(kind)) {
            case LockKind::kRequest:
            case LockKind::kGrant:
            case LockKind::kAcquired:
            case LockKind::kRelease:
            case LockKind::kReset:
                m.kind = static_cast<LockKind>(kind);
                break;
            default:
                r.fail("unknown kind " + proto::describe_byte(kind));
        }
        m.sender = r.u64("sender");
        m.holder = r.u64("holder");
        m.lock_id = r.u64("lock id");
        m.seq = r.u32("seq");
        uint8_t strength = r.u8("strength");
        if (strength != static_cast<uint8_t>(Strength::kDdl) &&
            strength != static_cast<uint8_t>(Strength::kWrite))
            r.fail("unknown strength " + proto::describe_byte(strength));
        m.strength = static_cast<Strength>(strength);
        m.priority = r.i64("priority");
        m.holder_pid = r.i32("holder pid");
        uint8_t all = r.u8("all tables");
        if (all > 1) r.fail("all tables flag " + proto::describe_byte(all));
        m.all_tables = all == 1;
        uint32_t n = r.u32("table count");
        if (n > kMaxTables) r.fail("table count " + std::to_string(n));
        for (uint32_t i = 0; i < n; ++i) {
            std::string schema(r.str("table schema"));
            std::string table(r.str("table name"));
            m.tables.emplace_back(std::move(schema), std::move(table));
        }
        r.expect_end();
        return m;
    });
}

}  // namespace pgmesh::mesh
