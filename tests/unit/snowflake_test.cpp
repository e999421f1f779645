#include "snowflake.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

namespace pgmesh::snowflake {
namespace {

// 2026-03-01 00:00:00 UTC: some time well inside the range.
constexpr int64_t kNow = 1772323200000 - kEpochUnixMs;

TEST(SnowflakeLayout, BitsAreTimeNodeCounter) {
    EXPECT_EQ(compose(0, 0, 0), 0);
    EXPECT_EQ(compose(0, 0, 1), 1);
    EXPECT_EQ(compose(0, 1, 0), int64_t{1} << 12);
    EXPECT_EQ(compose(1, 0, 0), int64_t{1} << 22);
    EXPECT_EQ(compose(3, 5, 7), (int64_t{3} << 22) | (int64_t{5} << 12) | 7);
    // The largest id is the largest bigint: bit 63 stays 0.
    EXPECT_EQ(compose(kMaxTime, kMaxNode, kMaxCounter), INT64_MAX);
    EXPECT_EQ(kTimeBits + kNodeBits + kCounterBits, 63);
}

TEST(SnowflakeLayout, DecomposeInvertsCompose) {
    for (int64_t ms : {int64_t{0}, int64_t{1}, kNow, kMaxTime})
        for (int node : {0, 1, 2, 512, kMaxNode})
            for (int counter : {0, 1, 4094, kMaxCounter}) {
                Parts p = decompose(compose(ms, node, counter));
                EXPECT_EQ(p.ms, ms);
                EXPECT_EQ(p.node, node);
                EXPECT_EQ(p.counter, counter);
            }
}

TEST(SnowflakeLayout, EpochIs2025) {
    EXPECT_EQ(ms_since_epoch(1735689600000), 0);  // 2025-01-01 00:00:00 UTC
    EXPECT_EQ(ms_since_epoch(1735689601000), 1000);
    EXPECT_LT(ms_since_epoch(0), 0);
}

TEST(SnowflakeLayout, RefusesPartsThatDoNotFit) {
    EXPECT_THROW(compose(0, kMaxNode + 1, 0), std::invalid_argument);
    EXPECT_THROW(compose(0, -1, 0), std::invalid_argument);
    EXPECT_THROW(compose(0, 1, kMaxCounter + 1), std::invalid_argument);
    EXPECT_THROW(compose(0, 1, -1), std::invalid_argument);
    EXPECT_THROW(compose(-1, 1, 0), std::invalid_argument);
    EXPECT_THROW(compose(kMaxTime + 1, 1, 0), OutOfRange);
    EXPECT_THROW(decompose(-1), std::invalid_argument);
    EXPECT_THROW(next(0, kNow, kMaxNode + 1), std::invalid_argument);
}

TEST(SnowflakeNext, FirstIdIsTheClocksWithCounterZero) {
    EXPECT_EQ(next(0, kNow, 7), compose(kNow, 7, 0));
    EXPECT_EQ(next(-5, kNow, 7), compose(kNow, 7, 0));  // a sequence below 0: nothing issued
    // A fresh sequence holds 1.
    EXPECT_EQ(next(1, kNow, 7), compose(kNow, 7, 0));
}

TEST(SnowflakeNext, SameMillisecondCountsUp) {
    int64_t id = next(0, kNow, 3);
    for (int i = 1; i <= 100; i++) {
        int64_t after = next(id, kNow, 3);
        EXPECT_EQ(after, id + 1);
        EXPECT_EQ(decompose(after).counter, i);
        id = after;
    }
}

TEST(SnowflakeNext, ANewMillisecondStartsTheCounterAgain) {
    int64_t id = compose(kNow, 3, 17);
    EXPECT_EQ(next(id, kNow + 1, 3), compose(kNow + 1, 3, 0));
    EXPECT_EQ(next(id, kNow + 50, 3), compose(kNow + 50, 3, 0));
}

TEST(SnowflakeNext, AFullCounterBorrowsTheNextMillisecond) {
    int64_t full = compose(kNow, 3, kMaxCounter);
    int64_t borrowed = next(full, kNow, 3);
    EXPECT_EQ(borrowed, compose(kNow + 1, 3, 0));
    // The counter never carries into the node bits.
    EXPECT_NE(borrowed, full + 1);
    EXPECT_EQ(decompose(full + 1).node, 4);
    // When the clock reaches the borrowed millisecond, counting goes on
    // above what was borrowed.
    EXPECT_EQ(next(borrowed, kNow + 1, 3), compose(kNow + 1, 3, 1));
    // Many ids in one millisecond run ahead of the clock, one millisecond
    // per 4096 ids, and stay strictly increasing.
    int64_t id = next(0, kNow, 3);
    for (int i = 1; i < 3 * (kMaxCounter + 1); i++) {
        int64_t after = next(id, kNow, 3);
        ASSERT_GT(after, id);
        ASSERT_EQ(decompose(after).node, 3);
        id = after;
    }
    EXPECT_EQ(id, compose(kNow + 2, 3, kMaxCounter));
}

TEST(SnowflakeNext, ClockGoingBackKeepsCountingUp) {
    int64_t id = compose(kNow, 9, 5);
    EXPECT_EQ(next(id, kNow - 1, 9), compose(kNow, 9, 6));
    EXPECT_EQ(next(id, kNow - 3600 * 1000, 9), compose(kNow, 9, 6));
    EXPECT_EQ(next(compose(kNow, 9, kMaxCounter), kNow - 10, 9), compose(kNow + 1, 9, 0));
    // A clock before 2025 counts as 2025-01-01.
    EXPECT_EQ(next(0, -1000, 9), compose(0, 9, 0));
    EXPECT_EQ(next(id, -1000, 9), compose(kNow, 9, 6));
}

TEST(SnowflakeNext, AnotherNodesLastIdStillGivesOursAboveIt) {
    // A sequence copied from another node (join) holds that node's ids.
    EXPECT_EQ(next(compose(kNow, 2, 100), kNow - 5, 9), compose(kNow, 9, 0));
    EXPECT_EQ(next(compose(kNow, 12, 100), kNow - 5, 9), compose(kNow + 1, 9, 0));
    EXPECT_EQ(next(compose(kNow, 12, 100), kNow + 7, 9), compose(kNow + 7, 9, 0));
}

TEST(SnowflakeNext, StrictlyIncreasingAndOnlyOurNodeBitsUnderAnyClock) {
    std::mt19937_64 random(42);
    for (int node : {1, 2, 511, kMaxNode}) {
        int64_t last = 0;
        int64_t clock = kNow;
        std::set<int64_t> seen;
        for (int i = 0; i < 20000; i++) {
            // Mostly the same millisecond, sometimes forward, sometimes
            // back (NTP steps), sometimes a foreign last value.
            switch (random() % 8) {
                case 0:
                    clock += random() % 5;
                    break;
                case 1:
                    clock -= random() % 2000;
                    break;
                default:
                    break;
            }
            // Now and then the sequence holds another node's id (as the
            // pg layer sees one copied by a join): the floor is the larger.
            int64_t from = last;
            if (random() % 500 == 0)
                from = std::max(last, compose(clock + 10, (node + 1) % (kMaxNode + 1), 9));
            int64_t id = next(from, clock, node);
            ASSERT_GT(id, from);
            ASSERT_EQ(decompose(id).node, node) << id;
            ASSERT_GE(decompose(id).ms, std::max<int64_t>(clock, 0));
            ASSERT_TRUE(seen.insert(id).second);
            last = id;
        }
    }
}

TEST(SnowflakeNext, TwoNodesNeverMeet) {
    std::set<int64_t> ids;
    int64_t last[3] = {0, 0, 0};
    for (int i = 0; i < 10000; i++)
        for (int node = 1; node <= 2; node++) {
            last[node] = next(last[node], kNow + i / 3000, node);
            ASSERT_TRUE(ids.insert(last[node]).second);
        }
}

TEST(SnowflakeNext, EndOfTheRangeIsAnError) {
    EXPECT_EQ(next(0, kMaxTime, 5), compose(kMaxTime, 5, 0));
    EXPECT_EQ(next(compose(kMaxTime, 5, 10), kMaxTime, 5), compose(kMaxTime, 5, 11));
    // The clock past the last millisecond.
    EXPECT_THROW(next(0, kMaxTime + 1, 5), OutOfRange);
    // Borrowing past the last millisecond.
    EXPECT_THROW(next(compose(kMaxTime, 5, kMaxCounter), kMaxTime, 5), OutOfRange);
    EXPECT_THROW(next(compose(kMaxTime, 6, 0), kMaxTime, 5), OutOfRange);
    // A smaller node number's last id still fits in the millisecond.
    EXPECT_EQ(next(compose(kMaxTime, 4, kMaxCounter), kMaxTime, 5), compose(kMaxTime, 5, 0));
    try {
        next(INT64_MAX, kNow, 5);
        ADD_FAILURE() << "no error";
    } catch (const OutOfRange &e) {
        EXPECT_NE(std::string(e.what()).find("2094"), std::string::npos) << e.what();
    }
}

TEST(SnowflakeReservation, ReachesAboutOneSecondAhead) {
    int64_t id = next(0, kNow, 4);
    EXPECT_EQ(reservation(id, kNow, 4), compose(kNow + 1000, 4, 0));
    EXPECT_EQ(reservation(id, kNow, 4, 50), compose(kNow + 50, 4, 0));
    // Ids ahead of the clock (borrowed, or the clock went back) reserve a
    // second past their own time, not one id at a time.
    int64_t ahead = compose(kNow + 5000, 4, 3);
    EXPECT_EQ(reservation(ahead, kNow, 4), compose(kNow + 6000, 4, 0));
    EXPECT_EQ(reservation(ahead, kNow, 4, 0), ahead);  // never below the id itself
    // Capped at the last millisecond; a clock before 2025 counts as 2025.
    EXPECT_EQ(reservation(compose(kMaxTime, 4, 0), kMaxTime, 4), compose(kMaxTime, 4, 0));
    EXPECT_EQ(reservation(compose(0, 4, 0), -5000, 4), compose(1000, 4, 0));
}

TEST(SnowflakeReservation, RestartingFromTheReservationNeverRepeats) {
    // Ids handed out in memory up to a reservation, then a crash: the
    // sequence holds the reservation, and the next id is above all of them.
    int64_t last = 0;
    int64_t reserved = 0;
    std::vector<int64_t> issued;
    for (int i = 0; i < 50000; i++) {
        int64_t clock = kNow + i / 40;
        int64_t id = next(last, clock, 8);
        if (id > reserved) reserved = reservation(id, clock, 8);
        ASSERT_LE(id, reserved);
        issued.push_back(id);
        last = id;
    }
    // The clock went back an hour meanwhile.
    int64_t after_restart = next(reserved, kNow - 3600 * 1000, 8);
    EXPECT_GT(after_restart, issued.back());
    EXPECT_EQ(decompose(after_restart).node, 8);
}

}  // namespace
}  // namespace pgmesh::snowflake
