#include "relay_plan.hpp"

#include <gtest/gtest.h>

namespace pgmesh::relay {
namespace {

constexpr uint64_t kA = 1, kB = 2, kD = 4;

bool none_gone(uint64_t) {
    return false;
}

TEST(RelayPlan, PassedWhenEveryMemberHasAppliedAsMuchOfEveryOrigin) {
    Checkpoint c{100, {{kA, 50}, {kD, 70}}};
    EXPECT_TRUE(passed(c, {{kB, {{kA, 50}, {kD, 80}}}}, none_gone));
    EXPECT_FALSE(passed(c, {{kB, {{kA, 50}, {kD, 69}}}}, none_gone));
}

TEST(RelayPlan, AMemberIsNotAskedForItsOwnOrigin) {
    // A has no origin for itself; the checkpoint's position for A is what
    // this node applied from A.
    Checkpoint c{100, {{kA, 50}, {kD, 70}}};
    EXPECT_TRUE(passed(c, {{kA, {{kD, 70}}}, {kB, {{kA, 60}, {kD, 70}}}}, none_gone));
}

TEST(RelayPlan, AMemberWithoutAnOriginHasAppliedNothingOfIt) {
    Checkpoint c{100, {{kD, 70}}};
    EXPECT_FALSE(passed(c, {{kB, {}}}, none_gone));
    // Nothing applied here either: nothing to wait for.
    EXPECT_TRUE(passed(Checkpoint{100, {{kD, 0}}}, {{kB, {}}}, none_gone));
}

TEST(RelayPlan, PartedOriginsNeedNoRelay) {
    Checkpoint c{100, {{kD, 70}}};
    EXPECT_TRUE(passed(c, {{kB, {}}}, [](uint64_t id) { return id == kD; }));
}

TEST(RelayPlan, TakesTheNewestPassedCheckpointAndStopsAtTheFirstThatIsNot) {
    std::deque<Checkpoint> cps = {
        {100, {{kD, 10}}}, {200, {{kD, 20}}}, {300, {{kD, 30}}}, {400, {{kD, 20}}}};
    std::optional<Checkpoint> c = take_passed(cps, {{kB, {{kD, 25}}}}, none_gone);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->local_lsn, 200u);
    ASSERT_EQ(cps.size(), 2u);  // 300 waits, and 400 behind it
    EXPECT_EQ(cps.front().local_lsn, 300u);
    EXPECT_FALSE(take_passed(cps, {{kB, {{kD, 25}}}}, none_gone));
    EXPECT_EQ(cps.size(), 2u);
}

TEST(RelayPlan, NoMembersPassEverything) {
    std::deque<Checkpoint> cps = {{100, {{kD, 10}}}, {200, {{kD, 20}}}};
    std::optional<Checkpoint> c = take_passed(cps, {}, none_gone);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->local_lsn, 200u);
    EXPECT_TRUE(cps.empty());
}

}  // namespace
}  // namespace pgmesh::relay
