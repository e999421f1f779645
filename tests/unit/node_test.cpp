#include "node.hpp"

#include <gtest/gtest.h>

#include "protocol.hpp"

namespace pgmesh {
namespace {

TEST(NodeState, NamesRoundTrip) {
    for (node::State s : {node::State::kJoining, node::State::kReady, node::State::kParted})
        EXPECT_EQ(node::parse_state(node::name(s)), s);
    EXPECT_EQ(node::name(node::State::kJoining), "joining");
    EXPECT_EQ(node::name(node::State::kReady), "ready");
    EXPECT_EQ(node::name(node::State::kParted), "parted");
}

TEST(NodeState, UnknownTextIsNoState) {
    EXPECT_EQ(node::parse_state(""), std::nullopt);
    EXPECT_EQ(node::parse_state("Ready"), std::nullopt);
    EXPECT_EQ(node::parse_state("ready "), std::nullopt);
}

TEST(NodeNames, SlotAndOriginNamesCarryHexIds) {
    EXPECT_EQ(node::hex_id(0x1f), "000000000000001f");
    EXPECT_EQ(node::hex_id(UINT64_MAX), "ffffffffffffffff");
    EXPECT_EQ(node::slot_name(0xab, 0x7fffffffffffffff),
              "pgmesh_00000000000000ab_7fffffffffffffff");
    EXPECT_EQ(node::origin_name(0x0123456789abcdef), "pgmesh_0123456789abcdef");
}

TEST(NodeNames, OriginNamesParseBackToTheirNode) {
    for (uint64_t id : {uint64_t{1}, uint64_t{0x0123456789abcdef}, uint64_t{INT64_MAX}})
        EXPECT_EQ(node::node_of_origin(node::origin_name(id)), id);
}

TEST(NodeNames, OtherOriginsStandForNoNode) {
    EXPECT_EQ(node::node_of_origin(node::kCopyOrigin), std::nullopt);
    EXPECT_EQ(node::node_of_origin("pg_16395"), std::nullopt);
    EXPECT_EQ(node::node_of_origin("pgmesh_0123456789abcde"), std::nullopt);    // 15 digits
    EXPECT_EQ(node::node_of_origin("pgmesh_0123456789abcdef0"), std::nullopt);  // 17
    EXPECT_EQ(node::node_of_origin("pgmesh_0123456789ABCDEF"), std::nullopt);   // not ours
    EXPECT_EQ(node::node_of_origin("pgmesh_0123456789abcdeg"), std::nullopt);
    EXPECT_EQ(node::node_of_origin("PGMESH_0123456789abcdef"), std::nullopt);
    // A slot name is not an origin name.
    EXPECT_EQ(node::node_of_origin(node::slot_name(1, 2)), std::nullopt);
}

TEST(StartOptions, QuotedAsTheReplicationGrammarReadsThem) {
    std::vector<proto::StartOption> options = {
        {proto::start_option::kProtoVersion, "2"},
        {proto::start_option::kSkipCommitLsn, "0/16B3748"},
        {proto::start_option::kEncoding, "it's"},
    };
    EXPECT_EQ(proto::format_start_options(options),
              "proto_version '2', skip_commit_lsn '0/16B3748', encoding 'it''s'");
    EXPECT_EQ(proto::format_start_options({}), "");
}

}  // namespace
}  // namespace pgmesh
