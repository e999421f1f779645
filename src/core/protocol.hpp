// pgmesh wire protocol: what the output plugin sends and the apply worker reads.
//
// Pure C++ (no PostgreSQL headers). The byte layout is documented in
// docs/protocol.md; this header is its single implementation, used by both
// ends. All integers are big-endian. A string is a u32 length then that many
// bytes (no terminator). Decoding never trusts a length: anything truncated,
// oversized, unknown or trailing is a DecodeError, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace pgmesh::proto {

// Bumped on any incompatible change of the layout below.
inline constexpr uint32_t kProtocolVersion = 2;

// Largest column count a RELATION or tuple may declare (PostgreSQL's limit).
inline constexpr uint32_t kMaxColumns = 1600;

// Options of START_REPLICATION ... LOGICAL (...) that the apply worker gives
// and the output plugin reads (docs/protocol.md).
namespace start_option {
inline constexpr std::string_view kProtoVersion = "proto_version";  // must be kProtocolVersion
// The node id (decimal) of the node that streams: the plugin refuses a
// parted node and a slot that belongs to another node.
inline constexpr std::string_view kSubscriberNodeId = "subscriber_node_id";
// binary_layout() of the subscriber: binary values only between equal ones.
inline constexpr std::string_view kBinaryLayout = "binary_layout";
inline constexpr std::string_view kEncoding = "encoding";  // must equal the provider's
// The commit LSN of a transaction to send empty (pgmesh.skip_transaction).
inline constexpr std::string_view kSkipCommitLsn = "skip_commit_lsn";
// Forwarding (relay slot only): the node id (decimal) of a dead node whose
// transactions this node applied; the stream then carries those, and only
// those, as that node sent them (its id, commit LSN and time).
inline constexpr std::string_view kForwardOrigin = "forward_origin_node_id";
// Forwarding: the origin's commit LSN the subscriber has applied up to;
// transactions up to it are not sent.
inline constexpr std::string_view kForwardAfterLsn = "forward_after_lsn";
}  // namespace start_option

struct StartOption {
    std::string_view name;
    std::string value;
};

// The option list of START_REPLICATION, "name 'value', ...", quoted as the
// replication grammar reads it (a quote inside a value doubled).
std::string format_start_options(std::span<const StartOption> options);

class DecodeError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

enum class MessageType : uint8_t {
    kBegin = 'B',
    kCommit = 'C',
    kRelation = 'R',
    kInsert = 'I',
    kUpdate = 'U',
    kDelete = 'D',
    kTruncate = 'T',
    kMessage = 'M',
};

// First change of a remote transaction. Times are PostgreSQL TimestampTz
// (microseconds since 2000-01-01 UTC).
struct Begin {
    uint64_t origin_node_id = 0;  // node the transaction was written on
    uint32_t xid = 0;
    uint64_t final_lsn = 0;  // LSN of the commit record on the origin
    int64_t commit_time = 0;
    bool operator==(const Begin &) const = default;
};

struct Commit {
    uint64_t commit_lsn = 0;
    uint64_t end_lsn = 0;  // end of the commit record: where to resume after it
    int64_t commit_time = 0;
    bool operator==(const Commit &) const = default;
};

struct Column {
    std::string name;
    uint32_t type_oid = 0;
    std::string type_name;  // format_type() of the column, schema-qualified when needed
    int32_t type_mod = -1;
    bool is_key = false;  // part of the primary key (replica identity)
    bool operator==(const Column &) const = default;
};

// Describes a relation once per stream, before its first change, and again
// whenever its definition changed. Later changes refer to it by relid.
struct Relation {
    uint32_t relid = 0;  // the origin's OID; only an identifier on the wire
    std::string schema;
    std::string name;
    std::vector<Column> columns;  // non-dropped, non-generated columns in attnum order
    bool operator==(const Relation &) const = default;
};

enum class ValueKind : uint8_t {
    kNull = 'n',
    kUnchanged = 'u',  // TOASTed value an UPDATE left alone: keep the local one
    kText = 't',       // type output function text, in the server encoding
    kBinary = 'b',     // type send function bytes
};

// A column value. `data` points into the buffer the message was decoded from
// (or, when encoding, into the caller's storage): it lives as long as that.
struct Value {
    ValueKind kind = ValueKind::kNull;
    std::string_view data;
    bool operator==(const Value &) const = default;
};

using Tuple = std::vector<Value>;

struct Insert {
    uint32_t relid = 0;
    Tuple new_tuple;
    bool operator==(const Insert &) const = default;
};

struct Update {
    uint32_t relid = 0;
    std::optional<Tuple> old_key;  // present when the origin logged it: key columns changed
    Tuple new_tuple;
    bool operator==(const Update &) const = default;
};

struct Delete {
    uint32_t relid = 0;
    Tuple old_key;  // key columns set, the others kNull
    bool operator==(const Delete &) const = default;
};

struct Truncate {
    std::vector<uint32_t> relids;
    bool cascade = false;
    bool restart_identity = false;
    bool operator==(const Truncate &) const = default;
};

// Every prefix of pgmesh's logical messages starts with this; the output
// plugin sends no other (pg_logical_emit_message by users stays local).
inline constexpr std::string_view kMessagePrefix = "pgmesh";

// pgmesh's own logical messages (DDL, lock protocol): prefix says which.
struct Message {
    bool transactional = true;
    std::string prefix;
    std::string content;
    bool operator==(const Message &) const = default;
};

using Decoded = std::variant<Begin, Commit, Relation, Insert, Update, Delete, Truncate, Message>;

// "0x4a ('J')": a byte as hex, and as a character when printable, for error
// messages about unexpected type and kind bytes.
std::string describe_byte(uint8_t b);

// Decodes exactly one message occupying all of `bytes`. Values in the result
// point into `bytes`. Throws DecodeError on anything malformed.
Decoded decode(std::span<const uint8_t> bytes);

// Decodes the message at the start of `bytes` and sets `consumed` to its
// length; what follows it is left to the next call. A data frame's payload
// is a batch of one or more messages back to back (protocol version 2): the
// output plugin sends a whole small transaction in one frame. Throws
// DecodeError on anything malformed, including an empty input.
Decoded decode_next(std::span<const uint8_t> bytes, size_t &consumed);

// Appends encoded messages to a byte buffer. Each message call (begin(),
// insert(), ...) writes one complete message; clear() between messages when
// each goes out separately.
//
// The encoder refuses to write what no decoder would accept: more than
// kMaxColumns values or columns, or a string longer than a u32 can describe,
// throw std::length_error; misuse of the streaming calls (too few or too many
// value() calls, start_tuple() outside an UPDATE) throws std::logic_error.
// After any exception the buffer holds a partial message: clear() it.
class Encoder {
public:
    void begin(const Begin &m);
    void commit(const Commit &m);
    void relation(const Relation &m);
    void insert(const Insert &m);
    void update(const Update &m);
    void delete_(const Delete &m);
    void truncate(const Truncate &m);
    void message(const Message &m);

    // Streaming tuple encoding for callers that produce values one at a time
    // (the output plugin) without first building a Tuple.
    void start_insert(uint32_t relid, uint16_t natts);
    void start_update(uint32_t relid, std::optional<uint16_t> old_key_natts);
    void start_delete(uint32_t relid, uint16_t natts);
    void start_tuple(uint16_t natts);  // the new tuple of an update after its old key
    // data only for kText/kBinary; a null or unchanged value given data throws
    // std::invalid_argument (the bytes would be lost on the wire).
    void value(ValueKind kind, std::string_view data = {});

    std::span<const uint8_t> bytes() const {
        return {reinterpret_cast<const uint8_t *>(buf_.data()), buf_.size()};
    }
    size_t size() const { return buf_.size(); }
    void clear() {
        buf_.clear();
        pending_values_ = 0;
        awaiting_new_tuple_ = false;
    }

private:
    void u8(uint8_t v);
    void u16(uint16_t v);
    void u32(uint32_t v);
    void u64(uint64_t v);
    void str(std::string_view s);
    void tuple(const Tuple &t);  // the values only: start_* wrote the count
    void expect_idle(const char *what) const;

    std::string buf_;
    // Streaming state, so that a miscounted tuple fails at the sender instead
    // of as a DecodeError on every peer.
    uint32_t pending_values_ = 0;      // value() calls the current tuple still needs
    bool awaiting_new_tuple_ = false;  // start_update() done, start_tuple() not yet
};

}  // namespace pgmesh::proto
