#include "conflict.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace pgmesh::conflict {
namespace {

constexpr Type kAllTypes[] = {Type::kInsertExists,
                              Type::kUpdateOriginDiffers,
                              Type::kUpdateExists,
                              Type::kUpdateMissing,
                              Type::kDeleteOriginDiffers,
                              Type::kDeleteMissing,
                              Type::kMultipleUniqueConflicts,
                              Type::kApplyError,
                              Type::kInsertDeleted,
                              Type::kUpdateDeleted};

TEST(Conflict, NewerComparesTimeThenNodeId) {
    EXPECT_TRUE(newer({200, 1}, {100, 9}));
    EXPECT_FALSE(newer({100, 9}, {200, 1}));
    EXPECT_TRUE(newer({100, 9}, {100, 1}));
    EXPECT_FALSE(newer({100, 1}, {100, 9}));
    EXPECT_FALSE(newer({100, 5}, {100, 5}));  // a version is not newer than itself
}

TEST(Conflict, LastUpdateWinsIsTheSameDecisionSeenFromBothSides) {
    // Node A holds version a and receives b; node B holds b and receives a.
    // Both must keep the same version.
    const Version versions[] = {{0, 1}, {100, 1}, {100, 2}, {200, 1}, {-5, 7}};
    for (const Version &a : versions)
        for (const Version &b : versions) {
            if (a.commit_time == b.commit_time && a.node_id == b.node_id) continue;
            Resolution at_a = resolve(Type::kInsertExists, Resolver::kLastUpdateWins, a, b);
            Resolution at_b = resolve(Type::kInsertExists, Resolver::kLastUpdateWins, b, a);
            Version kept_at_a = at_a == Resolution::kApplyRemote ? b : a;
            Version kept_at_b = at_b == Resolution::kApplyRemote ? a : b;
            EXPECT_EQ(kept_at_a.commit_time, kept_at_b.commit_time);
            EXPECT_EQ(kept_at_a.node_id, kept_at_b.node_id);
        }
}

TEST(Conflict, FirstUpdateWinsKeepsTheOlder) {
    EXPECT_EQ(resolve(Type::kUpdateOriginDiffers, Resolver::kFirstUpdateWins, {100, 1}, {200, 2}),
              Resolution::kKeepLocal);
    EXPECT_EQ(resolve(Type::kUpdateOriginDiffers, Resolver::kFirstUpdateWins, {300, 1}, {200, 2}),
              Resolution::kApplyRemote);
}

TEST(Conflict, Defaults) {
    // Last update wins for every change that meets a row, a tombstone or
    // nothing; errors stop apply.
    for (Type t : {Type::kInsertExists, Type::kUpdateOriginDiffers, Type::kUpdateExists,
                   Type::kUpdateMissing, Type::kDeleteOriginDiffers, Type::kDeleteMissing,
                   Type::kInsertDeleted, Type::kUpdateDeleted})
        EXPECT_EQ(default_resolver(t), Resolver::kLastUpdateWins) << name(t);
    // Against nothing, the change wins: an update re-creates its row, a
    // delete leaves its tombstone.
    EXPECT_EQ(resolve(Type::kUpdateMissing, default_resolver(Type::kUpdateMissing), {}, {9, 9}),
              Resolution::kApplyRemote);
    EXPECT_EQ(resolve(Type::kDeleteMissing, default_resolver(Type::kDeleteMissing), {}, {1, 1}),
              Resolution::kApplyRemote);
    // A delete no longer wins over a newer row.
    EXPECT_EQ(resolve(Type::kDeleteOriginDiffers, default_resolver(Type::kDeleteOriginDiffers),
                      {900, 1}, {100, 2}),
              Resolution::kKeepLocal);
    EXPECT_EQ(default_resolver(Type::kMultipleUniqueConflicts), Resolver::kError);
    EXPECT_EQ(default_resolver(Type::kApplyError), Resolver::kError);
    for (Type t : kAllTypes) EXPECT_TRUE(allowed(t, default_resolver(t))) << name(t);
}

TEST(Conflict, ClassifyByWhatTheKeyHolds) {
    using Kind = KeyState::Kind;
    const uint64_t peer = 2;
    KeyState nothing{Kind::kNothing, {}};
    KeyState row_of_other{Kind::kRow, {100, 3}};
    KeyState row_of_peer{Kind::kRow, {100, peer}};
    KeyState frozen_row{Kind::kRow, {0, 0}};
    KeyState tombstone_of_other{Kind::kTombstone, {100, 3}};
    KeyState tombstone_of_peer{Kind::kTombstone, {100, peer}};
    EXPECT_EQ(classify(Change::kInsert, nothing, peer), std::nullopt);
    EXPECT_EQ(classify(Change::kUpdate, nothing, peer), Type::kUpdateMissing);
    EXPECT_EQ(classify(Change::kDelete, nothing, peer), Type::kDeleteMissing);
    EXPECT_EQ(classify(Change::kInsert, row_of_other, peer), Type::kInsertExists);
    EXPECT_EQ(classify(Change::kUpdate, row_of_other, peer), Type::kUpdateOriginDiffers);
    EXPECT_EQ(classify(Change::kDelete, row_of_other, peer), Type::kDeleteOriginDiffers);
    EXPECT_EQ(classify(Change::kInsert, tombstone_of_other, peer), Type::kInsertDeleted);
    EXPECT_EQ(classify(Change::kUpdate, tombstone_of_other, peer), Type::kUpdateDeleted);
    EXPECT_EQ(classify(Change::kDelete, tombstone_of_other, peer), Type::kDeleteMissing);
    // The peer's own writes and frozen rows: its stream is in order.
    for (const KeyState &own : {row_of_peer, tombstone_of_peer, frozen_row})
        for (Change c : {Change::kInsert, Change::kUpdate, Change::kDelete})
            EXPECT_EQ(classify(c, own, peer), std::nullopt);
}

TEST(Conflict, OutcomeFollowsTheResolution) {
    EXPECT_EQ(outcome(Change::kInsert, std::nullopt), Outcome::kRemoteRow);
    EXPECT_EQ(outcome(Change::kUpdate, Resolution::kApplyRemote), Outcome::kRemoteRow);
    EXPECT_EQ(outcome(Change::kDelete, std::nullopt), Outcome::kRemoteDelete);
    EXPECT_EQ(outcome(Change::kDelete, Resolution::kApplyRemote), Outcome::kRemoteDelete);
    for (Change c : {Change::kInsert, Change::kUpdate, Change::kDelete}) {
        EXPECT_EQ(outcome(c, Resolution::kKeepLocal), Outcome::kUnchanged);
        EXPECT_EQ(outcome(c, Resolution::kSkip), Outcome::kUnchanged);
    }
}

TEST(Conflict, AllowedCombinations) {
    EXPECT_TRUE(allowed(Type::kUpdateMissing, Resolver::kLastUpdateWins));
    EXPECT_TRUE(allowed(Type::kUpdateMissing, Resolver::kApplyRemote));
    // No local row to hand a function.
    for (Type t :
         {Type::kDeleteMissing, Type::kUpdateMissing, Type::kInsertDeleted, Type::kUpdateDeleted})
        EXPECT_FALSE(allowed(t, Resolver::kUserFunction)) << name(t);
    EXPECT_FALSE(allowed(Type::kApplyError, Resolver::kKeepLocal));
    EXPECT_FALSE(allowed(Type::kMultipleUniqueConflicts, Resolver::kLastUpdateWins));
    EXPECT_TRUE(allowed(Type::kDeleteOriginDiffers, Resolver::kKeepLocal));
    EXPECT_TRUE(allowed(Type::kInsertExists, Resolver::kUserFunction));
    EXPECT_THROW(resolve(Type::kApplyError, Resolver::kApplyRemote, {}, {}), std::logic_error);
    EXPECT_THROW(resolve(Type::kInsertExists, Resolver::kUserFunction, {}, {}), std::logic_error);
}

TEST(Conflict, SimpleResolvers) {
    for (Type t : {Type::kInsertExists, Type::kUpdateOriginDiffers, Type::kDeleteOriginDiffers}) {
        EXPECT_EQ(resolve(t, Resolver::kApplyRemote, {500, 1}, {100, 2}), Resolution::kApplyRemote);
        EXPECT_EQ(resolve(t, Resolver::kKeepLocal, {100, 1}, {500, 2}), Resolution::kKeepLocal);
        EXPECT_EQ(resolve(t, Resolver::kError, {100, 1}, {500, 2}), Resolution::kError);
    }
    EXPECT_EQ(resolve(Type::kUpdateMissing, Resolver::kKeepLocal, {}, {1, 2}), Resolution::kSkip);
    EXPECT_EQ(resolve(Type::kUpdateDeleted, Resolver::kKeepLocal, {5, 1}, {1, 2}),
              Resolution::kSkip);
}

TEST(Conflict, NamesRoundTrip) {
    for (Type t : kAllTypes) EXPECT_EQ(parse_type(name(t)), t);
    for (Resolver r : {Resolver::kLastUpdateWins, Resolver::kFirstUpdateWins,
                       Resolver::kApplyRemote, Resolver::kKeepLocal, Resolver::kError})
        EXPECT_EQ(parse_resolver(name(r)), r);
    EXPECT_EQ(parse_resolver("user_function"), std::nullopt);
    EXPECT_EQ(parse_type("insert_exist"), std::nullopt);
    EXPECT_EQ(parse_resolver(""), std::nullopt);
    EXPECT_EQ(name(Resolution::kSkip), "skip");
}

}  // namespace
}  // namespace pgmesh::conflict
