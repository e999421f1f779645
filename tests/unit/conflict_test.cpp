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
                              Type::kApplyError};

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
    EXPECT_EQ(default_resolver(Type::kInsertExists), Resolver::kLastUpdateWins);
    EXPECT_EQ(default_resolver(Type::kUpdateOriginDiffers), Resolver::kLastUpdateWins);
    EXPECT_EQ(default_resolver(Type::kUpdateExists), Resolver::kLastUpdateWins);
    // Delete wins over a concurrent update, from either side.
    EXPECT_EQ(resolve(Type::kUpdateMissing, default_resolver(Type::kUpdateMissing), {}, {9, 9}),
              Resolution::kSkip);
    EXPECT_EQ(resolve(Type::kDeleteOriginDiffers, default_resolver(Type::kDeleteOriginDiffers),
                      {900, 1}, {100, 2}),
              Resolution::kApplyRemote);
    EXPECT_EQ(resolve(Type::kDeleteMissing, default_resolver(Type::kDeleteMissing), {}, {1, 1}),
              Resolution::kSkip);
    EXPECT_EQ(default_resolver(Type::kMultipleUniqueConflicts), Resolver::kError);
    EXPECT_EQ(default_resolver(Type::kApplyError), Resolver::kError);
    for (Type t : kAllTypes) EXPECT_TRUE(allowed(t, default_resolver(t))) << name(t);
}

TEST(Conflict, AllowedCombinations) {
    EXPECT_FALSE(allowed(Type::kUpdateMissing, Resolver::kLastUpdateWins));
    EXPECT_TRUE(allowed(Type::kUpdateMissing, Resolver::kApplyRemote));
    EXPECT_FALSE(allowed(Type::kDeleteMissing, Resolver::kUserFunction));
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
