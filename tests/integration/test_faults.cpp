// Nothing lost, nothing applied twice, when nodes restart, workers die or a
// server is killed in the middle of a large remote transaction.
//
// Duplicates are caught by a table without a primary key (an INSERT applied
// twice shows as an extra row), losses by comparing with the rows each writer
// saw committed.
#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

using namespace std::chrono_literals;

class FaultTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 3}; }

    void SetUp() override {
        MeshTest::SetUp();
        for (int n = 1; n <= node_count(); n++) {
            exec(n, "CREATE TABLE events (node int NOT NULL, seq int NOT NULL)");  // no key
            exec(n, "CREATE TABLE keyed (id bigint PRIMARY KEY, node int, seq int)");
        }
    }

    // Rows each node wrote whose COMMIT was acknowledged, and those whose
    // outcome is unknown (the connection broke during COMMIT).
    struct Written {
        std::mutex mutex;
        std::map<int, std::set<int>> committed;
        std::map<int, std::set<int>> uncertain;
    };

    // Writes small transactions on `node` until stop; survives the node
    // going away and coming back.
    void writer(int node, std::atomic<bool> &stop, Written &written) {
        int seq = 0;
        std::optional<pq::Connection> c;
        while (!stop) {
            try {
                if (!c) c.emplace(connect(node));
                seq++;
                c->exec("BEGIN");
                c->exec("INSERT INTO events VALUES (" + std::to_string(node) + ", " +
                        std::to_string(seq) + ")");
                c->exec("INSERT INTO keyed VALUES (" + std::to_string(node * 100000000L + seq) +
                        ", " + std::to_string(node) + ", " + std::to_string(seq) + ")");
                try {
                    c->exec("COMMIT");
                } catch (const pq::Error &) {
                    std::lock_guard lock(written.mutex);
                    written.uncertain[node].insert(seq);
                    throw;
                }
                std::lock_guard lock(written.mutex);
                written.committed[node].insert(seq);
            } catch (const std::exception &) {
                c.reset();
                std::this_thread::sleep_for(100ms);
            }
        }
    }

    // Every node holds exactly the rows that their origin node holds: no row
    // lost, none twice; and every acknowledged commit is there.
    void expect_exactly_once(Written &written) {
        wait_for_sync_all(120);
        for (int origin = 1; origin <= node_count(); origin++) {
            std::string where = " WHERE node = " + std::to_string(origin);
            std::string at_origin = query_value(origin, "SELECT count(*) FROM events" + where);
            EXPECT_EQ(std::stoul(at_origin) >= written.committed[origin].size(), true);
            for (int n = 1; n <= node_count(); n++) {
                EXPECT_EQ(query_value(n, "SELECT count(*) FROM events" + where), at_origin)
                    << "node" << n << " vs origin node" << origin;
                EXPECT_EQ(query_value(n, "SELECT count(DISTINCT seq) FROM events" + where),
                          at_origin)
                    << "duplicates on node" << n;
                EXPECT_EQ(query_value(n, "SELECT count(*) FROM keyed" + where), at_origin);
            }
            // Acknowledged commits are all there (uncertain ones may be).
            pq::Rows rows = query_rows(origin, "SELECT seq FROM events" + where);
            std::set<int> present;
            for (const auto &row : rows) present.insert(std::stoi(*row[0]));
            for (int seq : written.committed[origin])
                EXPECT_TRUE(present.count(seq)) << "lost node" << origin << " seq " << seq;
        }
        EXPECT_TRUE(verify_all());
    }
};

TEST_F(FaultTest, RestartEachNodeWhileOthersWrite) {
    Written written;
    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int n = 1; n <= node_count(); n++)
        writers.emplace_back([&, n] { writer(n, stop, written); });
    for (int n = 1; n <= node_count(); n++) {
        std::this_thread::sleep_for(1500ms);
        restart(n);
    }
    std::this_thread::sleep_for(1500ms);
    stop = true;
    for (auto &w : writers) w.join();
    for (int n = 1; n <= node_count(); n++)
        EXPECT_GT(written.committed[n].size(), 20u) << "node" << n << " wrote too little";
    expect_exactly_once(written);
}

TEST_F(FaultTest, KilledApplyWorkerResumesExactlyOnce) {
    Written written;
    std::atomic<bool> stop{false};
    std::thread w([&] { writer(1, stop, written); });
    std::this_thread::sleep_for(1500ms);
    // SIGKILL of a backend makes the postmaster restart all of node 2.
    std::string pid = query_value(2,
                                  "SELECT worker_pid FROM pgmesh.status "
                                  "WHERE peer_node_name = 'node1'");
    kill_child9(2, std::stoi(pid));
    ASSERT_TRUE(wait_until(
        [&] {
            auto p = query_nullable(2,
                                    "SELECT worker_pid FROM pgmesh.status "
                                    "WHERE peer_node_name = 'node1' AND connected");
            return p && *p != pid;
        },
        60s));
    std::this_thread::sleep_for(1500ms);
    stop = true;
    w.join();
    expect_exactly_once(written);
}

TEST_F(FaultTest, ServerKilledInTheMiddleOfALargeRemoteTransaction) {
    Written written;
    // One large transaction on node 1; node 2 dies while applying it.
    std::thread big([&] {
        pq::Connection c = connect(1);
        c.exec("INSERT INTO events SELECT 1, g FROM generate_series(1, 300000) g");
        c.exec("INSERT INTO keyed SELECT 100000000 + g, 1, g FROM generate_series(1, 300000) g");
    });
    big.join();
    for (int seq = 1; seq <= 300000; seq++) written.committed[1].insert(seq);
    ASSERT_TRUE(wait_until(
        [&] {
            return query_value(2,
                               "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                               "'pgmesh apply' AND query = 'applying remote transaction' "
                               "AND state = 'active'") != "0";
        },
        60s, 20ms));
    kill9(2);
    EXPECT_EQ(query_value(3, "SELECT 1"), "1");  // the others carry on
    start(2);
    expect_exactly_once(written);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM events"), "300000");
}

}  // namespace
}  // namespace pgmesh::test
