// The output plugin as a peer sees it, read through
// pg_logical_slot_peek_binary_changes and decoded with the core decoder:
// binary values only where layouts agree, text otherwise; version checks;
// loop prevention by origin.
#include <bit>
#include <list>

#include "cluster_fixture.hpp"
#include "protocol.hpp"

namespace pgmesh::test {
namespace {

std::vector<uint8_t> from_hex(std::string_view text) {
    if (text.starts_with("\\x")) text.remove_prefix(2);
    std::vector<uint8_t> bytes;
    for (size_t i = 0; i + 1 < text.size(); i += 2)
        bytes.push_back(
            static_cast<uint8_t>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16)));
    return bytes;
}

class OutputPluginTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 1}; }

    // The layout string this machine's servers report (see src/pg/layout.cpp).
    std::string own_layout() {
        static_assert(sizeof(void *) == 8 && std::endian::native == std::endian::little,
                      "the expected layout below is for 64-bit little-endian machines");
        return "pg" + std::to_string(std::stoi(query_value(1, "SHOW server_version_num")) / 10000) +
               ",datum8,f8byval1,align8,le";
    }

    // Decoded messages of the slot's pending changes, without consuming them.
    std::vector<proto::Decoded> peek(const std::string &layout) {
        pq::Rows rows =
            query_rows(1,
                       "SELECT data FROM pg_logical_slot_peek_binary_changes('peek', NULL, NULL, "
                       "'proto_version', '2', 'binary_layout', '" +
                           layout + "', 'encoding', 'UTF8')");
        std::vector<proto::Decoded> out;
        frame_sizes_.clear();
        for (const auto &row : rows) {
            // Each row is one frame: a batch of messages back to back.
            buffers_.push_back(from_hex(*row[0]));
            std::span<const uint8_t> rest = buffers_.back();
            size_t frame_size = rest.size();
            std::vector<proto::Decoded> frame;
            while (!rest.empty()) {
                size_t used = 0;
                frame.push_back(proto::decode_next(rest, used));
                rest = rest.subspan(used);
            }
            // The manager's global lock RESET, sent once when it starts
            // (docs/ddl.md), and its clock ticks, every 5 s (docs/conflicts.md),
            // may land in any test's slot: not what these tests look at.
            const auto *lone = frame.size() == 1 ? std::get_if<proto::Message>(&frame[0]) : nullptr;
            if (lone && !lone->transactional &&
                (lone->prefix == "pgmesh_lock" || lone->prefix == "pgmesh_clock"))
                continue;
            frame_sizes_.push_back(frame_size);
            out.insert(out.end(), frame.begin(), frame.end());
        }
        return out;
    }

    std::vector<size_t> frame_sizes_;  // bytes per frame of the last peek()

    // The messages of type T among messages, in order.
    template <typename T>
    static std::vector<T> only(const std::vector<proto::Decoded> &messages) {
        std::vector<T> out;
        for (const auto &m : messages)
            if (auto *one = std::get_if<T>(&m)) out.push_back(*one);
        return out;
    }
    std::vector<proto::Insert> inserts(const std::vector<proto::Decoded> &messages) {
        return only<proto::Insert>(messages);
    }
    std::vector<proto::Update> updates(const std::vector<proto::Decoded> &messages) {
        return only<proto::Update>(messages);
    }
    std::vector<proto::Delete> deletes(const std::vector<proto::Decoded> &messages) {
        return only<proto::Delete>(messages);
    }
    // Names of the relations the messages describe.
    std::vector<std::string> relation_names(const std::vector<proto::Decoded> &messages) {
        std::vector<std::string> names;
        for (const proto::Relation &r : only<proto::Relation>(messages)) names.push_back(r.name);
        return names;
    }

    std::list<std::vector<uint8_t>> buffers_;  // decoded values point into these
};

TEST_F(OutputPluginTest, BinaryOnlyWhereLayoutsAgreeAndForBuiltinTypes) {
    exec(1, "CREATE TYPE color AS ENUM ('red', 'green')");
    exec(1, "CREATE TABLE t (id int PRIMARY KEY, label text, c color, tags text[], n numeric)");
    exec(1, "SELECT pg_create_logical_replication_slot('peek', 'pgmesh')");
    exec(1, "INSERT INTO t VALUES (1, 'one', 'green', '{a,b}', NULL)");

    auto same = peek(own_layout());
    auto same_inserts = inserts(same);
    ASSERT_EQ(same_inserts.size(), 1u);
    const proto::Tuple &bin = same_inserts[0].new_tuple;
    ASSERT_EQ(bin.size(), 5u);
    EXPECT_EQ(bin[0].kind, proto::ValueKind::kBinary);  // int
    EXPECT_EQ(bin[1].kind, proto::ValueKind::kBinary);  // text
    EXPECT_EQ(bin[2].kind, proto::ValueKind::kText);    // user-defined enum
    EXPECT_EQ(bin[2].data, "green");
    EXPECT_EQ(bin[3].kind, proto::ValueKind::kBinary);  // built-in array
    EXPECT_EQ(bin[4].kind, proto::ValueKind::kNull);
    // BEGIN names this node as the origin; RELATION precedes the change.
    ASSERT_TRUE(std::holds_alternative<proto::Begin>(same.front()));
    EXPECT_EQ(std::to_string(std::get<proto::Begin>(same.front()).origin_node_id),
              query_value(1, "SELECT node_id FROM pgmesh.nodes WHERE is_local"));
    ASSERT_TRUE(std::holds_alternative<proto::Relation>(same[1]));
    const auto &rel = std::get<proto::Relation>(same[1]);
    EXPECT_EQ(rel.name, "t");
    EXPECT_TRUE(rel.columns[0].is_key);
    EXPECT_FALSE(rel.columns[1].is_key);
    EXPECT_TRUE(std::holds_alternative<proto::Commit>(same.back()));

    auto other = inserts(peek("pg99,datum4,f8byval0,align4,be"));
    ASSERT_EQ(other.size(), 1u);
    for (size_t i = 0; i < 4; i++)
        EXPECT_EQ(other[0].new_tuple[i].kind, proto::ValueKind::kText) << "column " << i;
    EXPECT_EQ(other[0].new_tuple[0].data, "1");
    EXPECT_EQ(other[0].new_tuple[3].data, "{a,b}");
}

TEST_F(OutputPluginTest, RefusesOtherProtocolVersionsAndEncodings) {
    exec(1, "SELECT pg_create_logical_replication_slot('peek', 'pgmesh')");
    expect_error(1,
                 "SELECT * FROM pg_logical_slot_peek_binary_changes('peek', NULL, NULL, "
                 "'proto_version', '1')",
                 "0A000", "protocol version 1 is not supported");
    expect_error(1,
                 "SELECT * FROM pg_logical_slot_peek_binary_changes('peek', NULL, NULL, "
                 "'proto_version', '2', 'encoding', 'LATIN1')",
                 "0A000", "encoding");
    expect_error(1,
                 "SELECT * FROM pg_logical_slot_peek_binary_changes('peek', NULL, NULL, "
                 "'proto_version', '2', 'bogus', 'x')",
                 "22023", "unknown pgmesh output plugin option");
    expect_error(1, "SELECT * FROM pg_logical_slot_peek_binary_changes('peek', NULL, NULL)",
                 "22023", "proto_version");
}

// A small transaction leaves as one frame (one send() for the walsender); a
// large one in frames of about 64 kB, so that it streams instead of piling up.
TEST_F(OutputPluginTest, SmallTransactionsAreOneFrameLargeOnesArePieces) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY, pad text)");
    exec(1, "SELECT pg_create_logical_replication_slot('peek', 'pgmesh')");
    exec(1,
         "BEGIN; INSERT INTO t VALUES (1, 'a'); UPDATE t SET pad = 'b' WHERE id = 1; "
         "DELETE FROM t WHERE id = 1; COMMIT");
    auto small = peek(own_layout());
    ASSERT_EQ(frame_sizes_.size(), 1u);
    ASSERT_EQ(small.size(), 6u);  // BEGIN, RELATION, INSERT, UPDATE, DELETE, COMMIT
    EXPECT_TRUE(std::holds_alternative<proto::Begin>(small.front()));
    EXPECT_TRUE(std::holds_alternative<proto::Commit>(small.back()));
    exec(1, "SELECT pg_replication_slot_advance('peek', pg_current_wal_lsn())");

    exec(1, "INSERT INTO t SELECT i, repeat('x', 100) FROM generate_series(1, 5000) i");
    auto large = peek(own_layout());
    EXPECT_EQ(inserts(large).size(), 5000u);
    EXPECT_TRUE(std::holds_alternative<proto::Commit>(large.back()));
    // About 600 kB of inserts: ten frames or so, none far above 64 kB.
    EXPECT_GE(frame_sizes_.size(), 5u);
    for (size_t size : frame_sizes_) EXPECT_LT(size, 70u * 1024) << "frame of " << size << " bytes";
}

TEST_F(OutputPluginTest, ChangesWrittenUnderAnOriginDoNotLeave) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "SELECT pg_create_logical_replication_slot('peek', 'pgmesh')");
    exec(1, "SELECT pg_replication_origin_create('some_peer')");
    pq::Connection applier = connect(1);
    applier.exec("SELECT pg_replication_origin_session_setup('some_peer')");
    // As an apply worker would: an insert, an update and a delete.
    applier.exec(
        "INSERT INTO t VALUES (1, 'remote'); UPDATE t SET v = 'remote too' WHERE id = 1; "
        "INSERT INTO t VALUES (3, 'remote'); DELETE FROM t WHERE id = 3");
    exec(1, "INSERT INTO t VALUES (2, 'local')");  // a local change
    auto messages = peek(own_layout());
    // Only the local transaction leaves.
    EXPECT_EQ(only<proto::Begin>(messages).size(), 1u);
    auto ins = inserts(messages);
    ASSERT_EQ(ins.size(), 1u);
    ASSERT_EQ(ins[0].new_tuple.size(), 2u);
    EXPECT_EQ(ins[0].new_tuple[0].kind, proto::ValueKind::kBinary);
    EXPECT_EQ(ins[0].new_tuple[0].data, std::string_view("\0\0\0\2", 4));  // int4send(2)
    EXPECT_EQ(ins[0].new_tuple[1].data, "local");
    EXPECT_TRUE(updates(messages).empty());
    EXPECT_TRUE(deletes(messages).empty());
}

// Only what replicates leaves: neither the rows of an UNLOGGED table nor the
// node-local catalog pgmesh.local_node, alone or next to a replicated change.
TEST_F(OutputPluginTest, UnloggedTablesAndTheLocalNodeCatalogDoNotLeave) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "CREATE UNLOGGED TABLE unlogged_t (id int PRIMARY KEY, v text)");
    ASSERT_EQ(query_value(1, "SELECT relpersistence FROM pg_class WHERE relname = 'unlogged_t'"),
              "u");
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    exec(1, "SELECT pg_create_logical_replication_slot('peek', 'pgmesh')");
    exec(1,
         "BEGIN; INSERT INTO unlogged_t VALUES (1, 'a'), (2, 'b'); "
         "UPDATE unlogged_t SET v = 'c' WHERE id = 1; DELETE FROM unlogged_t WHERE id = 2; "
         "UPDATE pgmesh.local_node SET node_id = node_id; COMMIT");
    EXPECT_TRUE(peek(own_layout()).empty()) << "a transaction with nothing replicated left";

    exec(1,
         "BEGIN; UPDATE unlogged_t SET v = 'd' WHERE id = 1; UPDATE t SET v = 'b' WHERE id = 1; "
         "UPDATE pgmesh.local_node SET node_id = node_id; COMMIT");
    auto messages = peek(own_layout());
    EXPECT_EQ(relation_names(messages), std::vector<std::string>{"t"});
    auto upd = updates(messages);
    ASSERT_EQ(upd.size(), 1u);  // t's, not unlogged_t's or local_node's
    ASSERT_EQ(upd[0].new_tuple.size(), 2u);
    EXPECT_EQ(upd[0].new_tuple[1].data, "b");
    EXPECT_TRUE(inserts(messages).empty());
    EXPECT_TRUE(deletes(messages).empty());
}

}  // namespace
}  // namespace pgmesh::test
