// Nothing lost, nothing applied twice, when nodes restart, workers die or a
// server is killed in the middle of a large remote transaction.
//
// Duplicates are caught by a table without a primary key (an INSERT applied
// twice shows as an extra row), losses by comparing with the rows each writer
// saw committed.
#include <algorithm>
#include <iterator>
#include <list>
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

        size_t committed_count(int node) {
            std::lock_guard lock(mutex);
            return committed[node].size();
        }
        int last_committed(int node) {
            std::lock_guard lock(mutex);
            return committed[node].empty() ? 0 : *committed[node].rbegin();
        }
    };

    // Writes small transactions on `node` until stopped; survives the node
    // going away and coming back.
    void writer(int node, TestThread &self, Written &written) {
        int seq = 0;
        pq::Connection *c = nullptr;
        while (!self.stopping()) {
            try {
                if (!c) c = &self.session(connect(node));
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
                c = nullptr;
                std::this_thread::sleep_for(100ms);
            }
        }
    }

    // writer() on each of the nodes, until stop() or the end of the scope.
    class Writers {
    public:
        Writers(FaultTest &test, Written &written, const std::vector<int> &nodes) {
            for (int n : nodes)
                threads_.emplace_back(
                    [&test, &written, n](TestThread &self) { test.writer(n, self, written); });
        }
        void stop() {
            for (TestThread &t : threads_) t.stop();
        }

    private:
        std::list<TestThread> threads_;
    };

    // Waits until each of the nodes' writers has committed `more` transactions
    // beyond what it had committed when called.
    bool wait_for_writes(Written &written, const std::vector<int> &nodes, size_t more) {
        std::map<int, size_t> target;
        for (int n : nodes) target[n] = written.committed_count(n) + more;
        return wait_until(
            [&] {
                for (int n : nodes)
                    if (written.committed_count(n) < target[n]) return false;
                return true;
            },
            60s, 20ms);
    }

    // "3 (1, 2, 17)": how many, and the first few.
    static std::string describe(const std::vector<int> &seqs) {
        std::string text = std::to_string(seqs.size()) + " (";
        for (size_t i = 0; i < seqs.size() && i < 10; i++)
            text += (i ? ", " : "") + std::to_string(seqs[i]);
        return text + (seqs.size() > 10 ? ", ...)" : ")");
    }

    // Every node holds exactly the rows that their origin node holds: no row
    // lost, none twice; and the origin holds every acknowledged commit and no
    // row whose COMMIT was never sent.
    void expect_exactly_once(Written &written) {
        wait_for_sync_all(120);
        for (int origin = 1; origin <= node_count(); origin++) {
            std::string where = " WHERE node = " + std::to_string(origin);
            std::string at_origin = query_value(origin, "SELECT count(*) FROM events" + where);
            const std::set<int> &committed = written.committed[origin];
            const std::set<int> &uncertain = written.uncertain[origin];
            EXPECT_GE(std::stoul(at_origin), committed.size()) << "node" << origin;
            EXPECT_LE(std::stoul(at_origin), committed.size() + uncertain.size())
                << "node" << origin;
            for (int n = 1; n <= node_count(); n++) {
                EXPECT_EQ(query_value(n, "SELECT count(*) FROM events" + where), at_origin)
                    << "node" << n << " vs origin node" << origin;
                EXPECT_EQ(query_value(n, "SELECT count(DISTINCT seq) FROM events" + where),
                          at_origin)
                    << "duplicates on node" << n;
                EXPECT_EQ(query_value(n, "SELECT count(*) FROM keyed" + where), at_origin);
            }
            // Acknowledged commits are all there; uncertain ones may be; no
            // others.
            pq::Rows rows = query_rows(origin, "SELECT seq FROM events" + where);
            std::set<int> present;
            for (const auto &row : rows) present.insert(std::stoi(*row[0]));
            std::vector<int> lost, unexpected;
            std::set_difference(committed.begin(), committed.end(), present.begin(), present.end(),
                                std::back_inserter(lost));
            for (int seq : present)
                if (!committed.contains(seq) && !uncertain.contains(seq)) unexpected.push_back(seq);
            EXPECT_TRUE(lost.empty())
                << "node" << origin << " lost acknowledged commits: " << describe(lost);
            EXPECT_TRUE(unexpected.empty())
                << "node" << origin << " holds rows never committed: " << describe(unexpected);
        }
        EXPECT_TRUE(verify_all());
    }
};

TEST_F(FaultTest, RestartEachNodeWhileOthersWrite) {
    Written written;
    const std::vector<int> nodes = {1, 2, 3};
    Writers writers(*this, written, nodes);
    // Each node restarts while all write; all write again after each restart.
    for (int n : nodes) {
        ASSERT_TRUE(wait_for_writes(written, nodes, 10)) << "before restarting node" << n;
        restart(n);
    }
    ASSERT_TRUE(wait_for_writes(written, nodes, 10)) << "after the last restart";
    writers.stop();
    for (int n : nodes)
        EXPECT_GT(written.committed[n].size(), 20u) << "node" << n << " wrote too little";
    expect_exactly_once(written);
}

TEST_F(FaultTest, KilledApplyWorkerResumesExactlyOnce) {
    Written written;
    Writers writers(*this, written, {1});
    const std::string applied_on_2 = "SELECT count(*) FROM events WHERE node = 1 AND seq > ";
    // node 2 applies node 1's writes before the kill ...
    ASSERT_TRUE(wait_until([&] { return query_value(2, applied_on_2 + "0") != "0"; }, 60s));
    // SIGKILL of a backend makes the postmaster restart all of node 2.
    std::string pid = query_value(2,
                                  "SELECT worker_pid FROM pgmesh.status "
                                  "WHERE peer_node_name = 'node1'");
    const int last_before_kill = written.last_committed(1);
    kill_child9(2, std::stoi(pid));
    ASSERT_TRUE(wait_until(
        [&] {
            auto p = query_nullable(2,
                                    "SELECT worker_pid FROM pgmesh.status "
                                    "WHERE peer_node_name = 'node1' AND connected");
            return p && *p != pid;
        },
        60s));
    // ... and a new worker applies those committed after it.
    ASSERT_TRUE(wait_until(
        [&] { return query_value(2, applied_on_2 + std::to_string(last_before_kill)) != "0"; },
        60s));
    writers.stop();
    expect_exactly_once(written);
}

TEST_F(FaultTest, ServerKilledInTheMiddleOfALargeRemoteTransaction) {
    Written written;
    // Node 2's apply holds before each commit while the test holds the
    // fault point's lock (src/pg/fault.hpp): the kill is sure to land in the
    // middle of the large transaction, applied but not committed. The
    // workers read the setting when they start.
    pq::Connection holder = connect(2);
    holder.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault apply_before_commit'))");
    exec(2, "ALTER DATABASE pgmesh SET pgmesh.fault_points = 'apply_before_commit'");
    std::string old_pid = query_value(2,
                                      "SELECT worker_pid FROM pgmesh.status "
                                      "WHERE peer_node_name = 'node1'");
    exec(2, "SELECT pg_terminate_backend(" + old_pid + ")");
    ASSERT_TRUE(wait_until([&] {
        auto row = query_rows(2,
                              "SELECT worker_pid, connected FROM pgmesh.status "
                              "WHERE peer_node_name = 'node1'");
        return row.at(0).at(0) && *row.at(0).at(0) != old_pid && row.at(0).at(1) == "t";
    }));
    // One large transaction on node 1 (sent when it commits); node 2 dies
    // while applying it.
    exec(1,
         "BEGIN; "
         "INSERT INTO events SELECT 1, g FROM generate_series(1, 300000) g; "
         "INSERT INTO keyed SELECT 100000000 + g, 1, g FROM generate_series(1, 300000) g; "
         "COMMIT");
    for (int seq = 1; seq <= 300000; seq++) written.committed[1].insert(seq);
    ASSERT_TRUE(wait_until(
        [&] {
            return query_value(2,
                               "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                               "AND NOT granted") == "1";
        },
        120s));
    // Applied whole, committed not: the kill lands in the transaction.
    ASSERT_EQ(query_value(2, "SELECT count(*) FROM events"), "0");
    kill9(2);
    // The others carry on: node 3 gets the large transaction, node 1 gets
    // node 3's writes.
    exec(3, "INSERT INTO events VALUES (3, 1); INSERT INTO keyed VALUES (300000001, 3, 1)");
    written.committed[3].insert(1);
    EXPECT_TRUE(wait_until(
        [&] {
            return query_value(3, "SELECT count(*) FROM keyed WHERE node = 1") == "300000" &&
                   query_value(1, "SELECT count(*) FROM keyed WHERE node = 3") == "1";
        },
        120s));
    // The holder died with node 2: the point no longer holds anyone.
    start(2);
    expect_exactly_once(written);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM events"), "300001");
    exec(2, "ALTER DATABASE pgmesh RESET pgmesh.fault_points");
}

}  // namespace
}  // namespace pgmesh::test
