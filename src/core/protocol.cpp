// Encoder and decoder of the pgmesh wire protocol; layout in docs/protocol.md.
//
// The decoder is the trust boundary between nodes: its input comes off the
// network from a peer that may run another build (or be broken), so every
// length is checked against what is left in the buffer before it is used to
// read or to allocate. The decoder is also strict (no unknown bits, no
// trailing bytes), which makes the encoding canonical: whatever decodes,
// re-encodes to the same bytes. The tests and the fuzzer rely on that.
#include "protocol.hpp"

#include "bytes.hpp"

#include <cstddef>
#include <limits>
#include <string>
#include <utility>

#include "cpp_only.hpp"

namespace pgmesh::proto {

std::string format_start_options(std::span<const StartOption> options) {
    std::string out;
    for (const StartOption &option : options) {
        if (!out.empty()) out += ", ";
        out.append(option.name);
        out += " '";
        for (char c : option.value) out += c == '\'' ? std::string("''") : std::string(1, c);
        out += '\'';
    }
    return out;
}

// "0x4a ('J')": the byte as hex, and as a character when printable, since
// type and kind bytes are ASCII letters and a wrong letter is the usual clue.
std::string describe_byte(uint8_t b) {
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "0x";
    out += kHex[b >> 4];
    out += kHex[b & 0x0f];
    if (b >= 0x20 && b < 0x7f) {
        out += " ('";
        out += static_cast<char>(b);
        out += "')";
    }
    return out;
}
namespace {

constexpr uint8_t kColumnFlagKey = 0x01;
constexpr uint8_t kTruncateCascade = 0x01;
constexpr uint8_t kTruncateRestartIdentity = 0x02;
constexpr uint8_t kUpdateOldKey = 'K';
constexpr uint8_t kUpdateNoOldKey = 'N';

// Smallest encoding of one RELATION column: flags, empty name, type oid,
// empty type name, type mod. Used to refuse column counts the rest of the
// buffer could not hold before reserving memory for them.
constexpr size_t kMinColumnBytes = 1 + 4 + 4 + 4 + 4;

const char *message_name(uint8_t type) {
    switch (static_cast<MessageType>(type)) {
        case MessageType::kBegin:
            return "BEGIN";
        case MessageType::kCommit:
            return "COMMIT";
        case MessageType::kRelation:
            return "RELATION";
        case MessageType::kInsert:
            return "INSERT";
        case MessageType::kUpdate:
            return "UPDATE";
        case MessageType::kDelete:
            return "DELETE";
        case MessageType::kTruncate:
            return "TRUNCATE";
        case MessageType::kMessage:
            return "MESSAGE";
    }
    return nullptr;
}

Value read_value(Reader &r) {
    size_t at = r.offset();
    uint8_t kind = r.u8("value kind");
    switch (static_cast<ValueKind>(kind)) {
        case ValueKind::kNull:
        case ValueKind::kUnchanged:
            return Value{static_cast<ValueKind>(kind), {}};
        case ValueKind::kText:
        case ValueKind::kBinary:
            return Value{static_cast<ValueKind>(kind), r.str("value data")};
    }
    r.fail("unknown value kind " + describe_byte(kind) + " at offset " + std::to_string(at));
}

Tuple read_tuple(Reader &r) {
    size_t at = r.offset();
    uint16_t natts = r.u16("natts");
    if (natts > kMaxColumns) {
        r.fail("tuple at offset " + std::to_string(at) + " declares " + std::to_string(natts) +
               " values, more than the maximum " + std::to_string(kMaxColumns));
    }
    // Each value takes at least its kind byte.
    r.need(natts, "tuple values");
    Tuple t;
    t.reserve(natts);
    for (uint16_t i = 0; i < natts; ++i) t.push_back(read_value(r));
    return t;
}

Begin read_begin(Reader &r) {
    Begin m;
    m.origin_node_id = r.u64("origin_node_id");
    m.xid = r.u32("xid");
    m.final_lsn = r.u64("final_lsn");
    m.commit_time = r.i64("commit_time");
    return m;
}

Commit read_commit(Reader &r) {
    Commit m;
    m.commit_lsn = r.u64("commit_lsn");
    m.end_lsn = r.u64("end_lsn");
    m.commit_time = r.i64("commit_time");
    return m;
}

Relation read_relation(Reader &r) {
    Relation m;
    m.relid = r.u32("relid");
    m.schema = r.str("schema");
    m.name = r.str("name");
    size_t at = r.offset();
    uint16_t ncols = r.u16("ncols");
    if (ncols > kMaxColumns) {
        r.fail("ncols " + std::to_string(ncols) + " at offset " + std::to_string(at) +
               " is more than the maximum " + std::to_string(kMaxColumns));
    }
    r.need(ncols * kMinColumnBytes, "columns");
    m.columns.reserve(ncols);
    for (uint16_t i = 0; i < ncols; ++i) {
        Column c;
        size_t flags_at = r.offset();
        uint8_t flags = r.u8("column flags");
        if ((flags & ~kColumnFlagKey) != 0) {
            r.fail("unknown column flag bits " + describe_byte(flags) + " at offset " +
                   std::to_string(flags_at));
        }
        c.is_key = (flags & kColumnFlagKey) != 0;
        c.name = r.str("column name");
        c.type_oid = r.u32("type_oid");
        c.type_name = r.str("type_name");
        c.type_mod = r.i32("type_mod");
        m.columns.push_back(std::move(c));
    }
    return m;
}

Insert read_insert(Reader &r) {
    Insert m;
    m.relid = r.u32("relid");
    m.new_tuple = read_tuple(r);
    return m;
}

Update read_update(Reader &r) {
    Update m;
    m.relid = r.u32("relid");
    size_t at = r.offset();
    uint8_t marker = r.u8("old key marker");
    if (marker == kUpdateOldKey) {
        m.old_key = read_tuple(r);
    } else if (marker != kUpdateNoOldKey) {
        r.fail("old key marker " + describe_byte(marker) + " at offset " + std::to_string(at) +
               " is neither 'K' nor 'N'");
    }
    m.new_tuple = read_tuple(r);
    return m;
}

Delete read_delete(Reader &r) {
    Delete m;
    m.relid = r.u32("relid");
    m.old_key = read_tuple(r);
    return m;
}

Truncate read_truncate(Reader &r) {
    Truncate m;
    size_t at = r.offset();
    uint8_t flags = r.u8("flags");
    if ((flags & ~(kTruncateCascade | kTruncateRestartIdentity)) != 0) {
        r.fail("unknown flag bits " + describe_byte(flags) + " at offset " + std::to_string(at));
    }
    m.cascade = (flags & kTruncateCascade) != 0;
    m.restart_identity = (flags & kTruncateRestartIdentity) != 0;
    uint32_t nrels = r.u32("nrels");
    r.need(size_t{nrels} * 4, "relids");
    m.relids.reserve(nrels);
    for (uint32_t i = 0; i < nrels; ++i) m.relids.push_back(r.u32("relid"));
    return m;
}

Message read_message(Reader &r) {
    Message m;
    size_t at = r.offset();
    uint8_t transactional = r.u8("transactional");
    if (transactional > 1) {
        r.fail("transactional flag " + describe_byte(transactional) + " at offset " +
               std::to_string(at) + " is neither 0 nor 1");
    }
    m.transactional = transactional == 1;
    m.prefix = r.str("prefix");
    m.content = r.str("content");
    return m;
}

// Counts travel as u16 and are capped at kMaxColumns; refusing here keeps the
// encoder from producing a message every decoder would reject.
uint16_t checked_natts(size_t n, const char *what) {
    if (n > kMaxColumns) {
        throw std::length_error(std::string("pgmesh protocol: ") + what + " has " +
                                std::to_string(n) + " values, more than the maximum " +
                                std::to_string(kMaxColumns));
    }
    return static_cast<uint16_t>(n);
}

}  // namespace

namespace {

// The message at the start of `r`'s input; the caller checks what follows.
Decoded read_any(Reader &r, uint8_t type) {
    r.u8("type");
    switch (static_cast<MessageType>(type)) {
        case MessageType::kBegin:
            return read_begin(r);
        case MessageType::kCommit:
            return read_commit(r);
        case MessageType::kRelation:
            return read_relation(r);
        case MessageType::kInsert:
            return read_insert(r);
        case MessageType::kUpdate:
            return read_update(r);
        case MessageType::kDelete:
            return read_delete(r);
        case MessageType::kTruncate:
            return read_truncate(r);
        case MessageType::kMessage:
            return read_message(r);
    }
    // message_name() accepted the byte, so the switch above covered it.
    throw DecodeError("unknown pgmesh message type " + describe_byte(type));
}

const char *checked_name(std::span<const uint8_t> bytes) {
    if (bytes.empty()) throw DecodeError("empty pgmesh message");
    const char *name = message_name(bytes[0]);
    if (name == nullptr) {
        throw DecodeError("unknown pgmesh message type " + describe_byte(bytes[0]));
    }
    return name;
}

}  // namespace

Decoded decode(std::span<const uint8_t> bytes) {
    Reader r(bytes, checked_name(bytes));
    Decoded m = read_any(r, bytes[0]);
    r.expect_end();
    return m;
}

Decoded decode_next(std::span<const uint8_t> bytes, size_t &consumed) {
    Reader r(bytes, checked_name(bytes));
    Decoded m = read_any(r, bytes[0]);
    consumed = r.offset();
    return m;
}

// --- Encoder ---------------------------------------------------------------

void Encoder::u8(uint8_t v) {
    buf_.push_back(static_cast<char>(v));
}

void Encoder::u16(uint16_t v) {
    u8(static_cast<uint8_t>(v >> 8));
    u8(static_cast<uint8_t>(v));
}

void Encoder::u32(uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) u8(static_cast<uint8_t>(v >> shift));
}

void Encoder::u64(uint64_t v) {
    for (int shift = 56; shift >= 0; shift -= 8) u8(static_cast<uint8_t>(v >> shift));
}

void Encoder::str(std::string_view s) {
    if (s.size() > std::numeric_limits<uint32_t>::max()) {
        throw std::length_error("pgmesh protocol: string of " + std::to_string(s.size()) +
                                " bytes does not fit a u32 length");
    }
    u32(static_cast<uint32_t>(s.size()));
    buf_.append(s);
}

void Encoder::expect_idle(const char *what) const {
    if (pending_values_ != 0 || awaiting_new_tuple_) {
        throw std::logic_error(
            std::string("pgmesh Encoder::") + what + " called while a tuple is incomplete (" +
            std::to_string(pending_values_) + " values still owed" +
            (awaiting_new_tuple_ ? ", UPDATE's new tuple not started" : "") + ")");
    }
}

void Encoder::begin(const Begin &m) {
    expect_idle("begin");
    u8(static_cast<uint8_t>(MessageType::kBegin));
    u64(m.origin_node_id);
    u32(m.xid);
    u64(m.final_lsn);
    u64(static_cast<uint64_t>(m.commit_time));
}

void Encoder::commit(const Commit &m) {
    expect_idle("commit");
    u8(static_cast<uint8_t>(MessageType::kCommit));
    u64(m.commit_lsn);
    u64(m.end_lsn);
    u64(static_cast<uint64_t>(m.commit_time));
}

void Encoder::relation(const Relation &m) {
    expect_idle("relation");
    uint16_t ncols = checked_natts(m.columns.size(), "RELATION");
    u8(static_cast<uint8_t>(MessageType::kRelation));
    u32(m.relid);
    str(m.schema);
    str(m.name);
    u16(ncols);
    for (const Column &c : m.columns) {
        u8(c.is_key ? kColumnFlagKey : 0);
        str(c.name);
        u32(c.type_oid);
        str(c.type_name);
        u32(static_cast<uint32_t>(c.type_mod));
    }
}

void Encoder::insert(const Insert &m) {
    start_insert(m.relid, checked_natts(m.new_tuple.size(), "INSERT tuple"));
    tuple(m.new_tuple);
}

void Encoder::update(const Update &m) {
    std::optional<uint16_t> old_natts;
    if (m.old_key) old_natts = checked_natts(m.old_key->size(), "UPDATE old key");
    uint16_t new_natts = checked_natts(m.new_tuple.size(), "UPDATE new tuple");
    start_update(m.relid, old_natts);
    if (m.old_key) tuple(*m.old_key);
    start_tuple(new_natts);
    tuple(m.new_tuple);
}

void Encoder::delete_(const Delete &m) {
    start_delete(m.relid, checked_natts(m.old_key.size(), "DELETE old key"));
    tuple(m.old_key);
}

void Encoder::truncate(const Truncate &m) {
    expect_idle("truncate");
    if (m.relids.size() > std::numeric_limits<uint32_t>::max()) {
        throw std::length_error("pgmesh protocol: TRUNCATE of too many relations");
    }
    u8(static_cast<uint8_t>(MessageType::kTruncate));
    u8(static_cast<uint8_t>((m.cascade ? kTruncateCascade : 0) |
                            (m.restart_identity ? kTruncateRestartIdentity : 0)));
    u32(static_cast<uint32_t>(m.relids.size()));
    for (uint32_t relid : m.relids) u32(relid);
}

void Encoder::message(const Message &m) {
    expect_idle("message");
    u8(static_cast<uint8_t>(MessageType::kMessage));
    u8(m.transactional ? 1 : 0);
    str(m.prefix);
    str(m.content);
}

void Encoder::start_insert(uint32_t relid, uint16_t natts) {
    expect_idle("start_insert");
    checked_natts(natts, "INSERT tuple");
    u8(static_cast<uint8_t>(MessageType::kInsert));
    u32(relid);
    u16(natts);
    pending_values_ = natts;
}

void Encoder::start_update(uint32_t relid, std::optional<uint16_t> old_key_natts) {
    expect_idle("start_update");
    if (old_key_natts) checked_natts(*old_key_natts, "UPDATE old key");
    u8(static_cast<uint8_t>(MessageType::kUpdate));
    u32(relid);
    if (old_key_natts) {
        u8(kUpdateOldKey);
        u16(*old_key_natts);
        pending_values_ = *old_key_natts;
    } else {
        u8(kUpdateNoOldKey);
    }
    awaiting_new_tuple_ = true;
}

void Encoder::start_delete(uint32_t relid, uint16_t natts) {
    expect_idle("start_delete");
    checked_natts(natts, "DELETE old key");
    u8(static_cast<uint8_t>(MessageType::kDelete));
    u32(relid);
    u16(natts);
    pending_values_ = natts;
}

void Encoder::start_tuple(uint16_t natts) {
    if (!awaiting_new_tuple_ || pending_values_ != 0) {
        throw std::logic_error(
            "pgmesh Encoder::start_tuple called outside an UPDATE or before its old key "
            "was complete");
    }
    checked_natts(natts, "UPDATE new tuple");
    u16(natts);
    awaiting_new_tuple_ = false;
    pending_values_ = natts;
}

void Encoder::value(ValueKind kind, std::string_view data) {
    if (pending_values_ == 0) {
        throw std::logic_error("pgmesh Encoder::value called with no tuple value owed");
    }
    switch (kind) {
        case ValueKind::kNull:
        case ValueKind::kUnchanged:
            // These kinds carry no bytes; data here would be silently lost.
            if (!data.empty()) {
                throw std::invalid_argument(
                    "pgmesh Encoder::value: null/unchanged value given data");
            }
            u8(static_cast<uint8_t>(kind));
            break;
        case ValueKind::kText:
        case ValueKind::kBinary:
            u8(static_cast<uint8_t>(kind));
            str(data);
            break;
        default:
            throw std::invalid_argument("pgmesh Encoder::value: unknown value kind " +
                                        describe_byte(static_cast<uint8_t>(kind)));
    }
    --pending_values_;
}

void Encoder::tuple(const Tuple &t) {
    for (const Value &v : t) value(v.kind, v.data);
}

}  // namespace pgmesh::proto
