// Node lifecycle on real servers (docs/operations.md): joins that lose
// nothing while every node writes, parting live and dead nodes, fencing a
// parted node, and running a failed join again.
//
// Races are forced with the fault point apply_begin@<origin> (armed in every
// server's configuration): a test holds one origin's stream on one node,
// and join_<step> points hold a join between two steps.
#include <fstream>
#include <list>
#include <set>
#include <thread>

#include "cluster_fixture.hpp"
#include "run_process.hpp"

namespace pgmesh::test {
namespace {

using namespace std::chrono_literals;

class LifecycleTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 4,
                           .form_mesh = false,
                           .settings = {{"pgmesh.fault_points", "apply_begin,manager_round"}}};
    }

    // A group of nodes 1..n (node 1 creates it, the others join through
    // it), each with the table t.
    void form(int n, const std::vector<std::string> &more_schema = {}) {
        for (int i = 1; i <= node_count(); i++) exec(i, "CREATE EXTENSION pgmesh");
        cluster().create_group(1);
        exec(1, "CREATE TABLE t (id int PRIMARY KEY, v text)");
        for (const std::string &sql : more_schema) exec(1, sql);
        for (int i = 2; i <= n; i++) cluster().join_group(i, 1, 60s);
    }

    // Origins on `at` for the node named `name`.
    int origins_for(int at, const std::string &name) {
        return std::stoi(query_value(
            at,
            "SELECT count(*) FROM pg_replication_origin o JOIN pgmesh.node n ON o.roname = "
            "'pgmesh_' || lpad(to_hex(n.node_id), 16, '0') WHERE n.node_name = '" +
                name + "'"));
    }

    std::string join_sql(const std::string &name, int node, int via) {
        return "SELECT pgmesh.join_group('" + name + "', '" + dsn(node) + "', '" + dsn(via) + "')";
    }

    // Holds the stream from node `origin` on node `at` (apply_begin@origin).
    pq::Connection hold(int at, int origin) {
        pq::Connection gate = connect(at);
        gate.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault apply_begin@node" +
                  std::to_string(origin) + "'))");
        return gate;
    }
    // Holds node `at`'s manager before its next round (manager_round), and
    // waits until it is there: it then starts no worker, moves no relay
    // slot and commits nothing until the session ends.
    pq::Connection hold_manager(int at) {
        pq::Connection gate = connect(at);
        gate.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault manager_round'))");
        EXPECT_TRUE(wait_until([&] {
            return query_value(at,
                               "SELECT count(*) FROM pg_stat_activity WHERE backend_type = "
                               "'pgmesh manager' AND wait_event = 'advisory'") == "1";
        })) << "node"
            << at << "'s manager did not reach manager_round";
        return gate;
    }

    // A join of node `node` (named nodeN) through `via`, running in a
    // thread and held before its copy (fault point join_copy_data) until
    // release(). finish() waits for it and returns its error, if any.
    // A test that ends early lets the join go on and stops it.
    class HeldJoin {
    public:
        HeldJoin(LifecycleTest &test, int node, int via) : gate_(test.connect(node)) {
            gate_.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault join_copy_data'))");
            std::string sql = test.join_sql("node" + std::to_string(node), node, via);
            thread_.emplace([&test, node, sql](TestThread &self) {
                pq::Connection &joiner = self.session(test.connect(node));
                joiner.exec("SET pgmesh.fault_points = 'join_copy_data'");
                joiner.exec(sql);
            });
        }
        ~HeldJoin() {
            try {
                release();
            } catch (const pq::Error &) {
                // The node went: so did the hold.
            }
        }
        void release() { gate_.exec("SELECT pg_advisory_unlock_all()"); }
        std::string finish() { return thread_->join(); }

    private:
        pq::Connection gate_;
        std::optional<TestThread> thread_;  // last: stopped first
    };

    // Slots for streams (pgmesh_<provider>_<subscriber>), not the relay slot.
    int slot_count(int node) {
        return std::stoi(query_value(node,
                                     "SELECT count(*) FROM pg_replication_slots "
                                     "WHERE slot_name NOT LIKE 'pgmesh\\_relay\\_%'"));
    }
    // Node `at`'s origin position for the node named `name` (0/0: none).
    std::string applied_from(int at, const std::string &name) {
        return query_value(
            at,
            "SELECT coalesce((SELECT s.remote_lsn FROM pg_replication_origin_status s JOIN "
            "pgmesh.node n ON s.external_id = 'pgmesh_' || lpad(to_hex(n.node_id), 16, '0') "
            "WHERE n.node_name = '" +
                name + "'), '0/0')::text");
    }
    // Stops node `at`'s apply worker for node `origin` (held inside a
    // transaction, it would apply what it has buffered once let go) and
    // waits until its successor, which cannot reach a dead origin, is not
    // connected.
    void stop_stream(int at, int origin) {
        std::string peer = "'node" + std::to_string(origin) + "'";
        exec(at,
             "SELECT pg_terminate_backend(worker_pid) FROM pgmesh.status WHERE peer_node_name = " +
                 peer);
        ASSERT_TRUE(wait_until([&] {
            return query_value(at, "SELECT connected FROM pgmesh.status WHERE peer_node_name = " +
                                       peer) == "f";
        })) << "node"
            << at;
    }
    std::string node_state(int at, const std::string &name) {
        return query_value(at, "SELECT state FROM pgmesh.nodes WHERE node_name = '" + name + "'");
    }
    int conflicts(int node, const std::string &type) {
        return std::stoi(query_value(node,
                                     "SELECT count(*) FROM pgmesh.conflict_history WHERE "
                                     "conflict_type = '" +
                                         type + "'"));
    }
};

// The race a join used to lose: node3 commits a row that the join target
// (node1) has not received yet when node4's slot on node3 is made (node1's
// apply is paused at a transaction boundary, as a slow link would leave
// it). The join now commits a barrier on node3 and waits until node1 has
// applied node3's stream past it, so the row is in node1's snapshot or in
// node4's stream.
TEST_F(LifecycleTest, AThirdNodesChangeTheTargetHasNotAppliedYetReachesTheNewNode) {
    form(3);
    exec(1, "SELECT pgmesh.pause_apply()");
    exec(3, "INSERT INTO t VALUES (1, 'from node3')");
    ASSERT_TRUE(wait_until([&] { return query_value(2, "SELECT count(*) FROM t") == "1"; }));
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "0");

    TestThread join(
        [&](TestThread &self) { self.session(connect(4)).exec(join_sql("node4", 4, 1)); });
    // node4's slot on node3 is made, then the join waits for node1.
    ASSERT_TRUE(wait_until([&] { return slot_count(3) == 3; }));
    std::this_thread::sleep_for(2s);
    EXPECT_FALSE(join.finished()) << "the join went on while the target lacked node3's row";
    EXPECT_EQ(node_state(1, "node4"), "joining");
    exec(1, "SELECT pgmesh.resume_apply()");
    ASSERT_EQ(join.join(), "");
    ASSERT_EQ(query_value(4, "SELECT pgmesh.wait_for_ready(60)"), "t");
    EXPECT_EQ(query_value(4, "SELECT string_agg(v, ',') FROM t"), "from node3");
    exec(4, "INSERT INTO t VALUES (2, 'from node4')");
    wait_for_sync_all();
    verify_all();
    EXPECT_EQ(conflicts(4, "insert_exists"), 0);
    expect_no_apply_errors();
}

// pgbench writes on every member (an UPDATE of a random account and an
// INSERT into history per transaction) while node4 joins, five times, each
// time through another target: the copy and the streams meet exactly (no
// change twice: 0 insert_exists on the new node; none missing: verify).
// Between rounds node4 parts while the others keep writing, after writing
// itself up to the moment of the part: every row it wrote reaches them.
TEST_F(LifecycleTest, JoinAndPartUnderWriteLoad) {
    form(3, {"CREATE TABLE accounts (aid int PRIMARY KEY, abalance int NOT NULL)",
             "CREATE TABLE history (hid uuid PRIMARY KEY DEFAULT gen_random_uuid(), aid int, "
             "delta int, origin int, mtime timestamptz DEFAULT now())",
             "INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 10000) g"});
    std::filesystem::path script = temp_dir() / "load.sql";
    std::ofstream(script) << "\\set aid random(1, 10000)\n"
                             "\\set delta random(-5000, 5000)\n"
                             "BEGIN;\n"
                             "UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid;\n"
                             "INSERT INTO history (aid, delta, origin) VALUES (:aid, :delta, "
                             ":origin);\n"
                             "END;\n";
    std::filesystem::permissions(script, std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
    std::string pgbench = (cluster().pg_bindir() / "pgbench").string();
    auto dsns = [&](std::initializer_list<int> nodes) {
        std::vector<std::pair<int, std::string>> out;
        for (int n : nodes) out.emplace_back(n, dsn(n));
        return out;
    };

    // pgbench on the given nodes, in 1-second runs until stopped.
    class Load {
    public:
        Load(const std::string &pgbench, const std::string &script,
             const std::vector<std::pair<int, std::string>> &nodes) {
            for (const auto &[n, node_dsn] : nodes) {
                threads_.emplace_back([pgbench, script, node_dsn, n](TestThread &self) {
                    while (!self.stopping()) {
                        ProcessResult r =
                            run_process({pgbench, "-n", "-c", "2", "-R", "100", "-T", "1", "-D",
                                         "origin=" + std::to_string(n), "-f", script, node_dsn});
                        if (!r.ok()) throw std::runtime_error(r.describe());
                    }
                });
            }
        }
        // What failed, one line per pgbench that did.
        std::string stop() {
            std::string failures;
            for (TestThread &t : threads_) {
                std::string failure = t.stop();
                if (!failure.empty()) failures += failure + "\n";
            }
            return failures;
        }

    private:
        std::list<TestThread> threads_;
    };

    for (int round = 1; round <= 5; round++) {
        SCOPED_TRACE("round " + std::to_string(round));
        std::string name = "node4_" + std::to_string(round);
        int target = (round - 1) % 3 + 1;
        {
            Load load(pgbench, script.string(), dsns({1, 2, 3}));
            std::this_thread::sleep_for(1s);
            exec(4, join_sql(name, 4, target));
            ASSERT_EQ(query_value(4, "SELECT pgmesh.wait_for_ready(60)"), "t");
            std::this_thread::sleep_for(1s);
            EXPECT_EQ(load.stop(), "");
        }
        wait_for_sync_all();
        EXPECT_TRUE(verify_all());
        EXPECT_EQ(conflicts(4, "insert_exists"), 0);
        EXPECT_EQ(query_value(4, "SELECT count(*) > 0 FROM history"), "t");

        // Part node4 from another node while all write; node4 stops
        // writing just before (what it writes after its part stays on it).
        int survivor = round % 3 + 1;
        {
            Load survivors(pgbench, script.string(), dsns({1, 2, 3}));
            {
                Load own(pgbench, script.string(), dsns({4}));
                std::this_thread::sleep_for(2s);
                EXPECT_EQ(own.stop(), "");
            }
            exec(survivor, "SELECT pgmesh.part_node('" + name + "')");
            EXPECT_EQ(survivors.stop(), "");
        }
        std::string written_on_4 = query_value(4, "SELECT count(*) FROM history WHERE origin = 4");
        EXPECT_NE(written_on_4, "0");
        for (int n = 1; n <= 3; n++) {
            EXPECT_EQ(node_state(n, name), "parted") << "node" << n;
            EXPECT_EQ(query_value(n, "SELECT count(*) FROM history WHERE origin = 4"), written_on_4)
                << "node" << n;
        }
        // Its slots and origins go everywhere.
        for (int n = 1; n <= 3; n++)
            EXPECT_TRUE(wait_until([&] { return slot_count(n) == 2; })) << "node" << n;
        // node4 drops all of its own, its relay slot too: else its
        // database could not be dropped.
        EXPECT_TRUE(wait_until(
            [&] { return query_value(4, "SELECT count(*) FROM pg_replication_slots") == "0"; }));
        for (int n = 1; n <= 3; n++)
            EXPECT_TRUE(wait_until([&] { return origins_for(n, name) == 0; })) << "node" << n;
        // A fresh database for the next round.
        pq::Connection admin = connect(4, "postgres");
        admin.exec("DROP DATABASE pgmesh WITH (FORCE)");
        admin.exec("CREATE DATABASE pgmesh");
        // The fixture's session on node4 was ended by the drop: its next
        // use fails once and reconnects.
        try {
            exec(4, "SELECT 1");
        } catch (const pq::Error &) {
        }
        exec(4, "CREATE EXTENSION pgmesh");
    }
    wait_for_sync(1);
    expect_no_apply_errors();
}

// The join target dies between the snapshot and the copy: the join fails,
// and running it again (same name) clears what the dead attempt left on
// the target (its slot, its 'joining' row) and joins.
TEST_F(LifecycleTest, AJoinWhoseTargetDiedMidCopyRunsAgain) {
    form(3);
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    wait_for_sync(1);
    HeldJoin held(*this, 4, 1);
    ASSERT_TRUE(wait_until([&] { return advisory_waiters(4) == 1; }));
    EXPECT_EQ(node_state(1, "node4"), "joining");
    EXPECT_EQ(slot_count(1), 3);  // node2's, node3's and node4's
    kill9(1);
    held.release();
    EXPECT_NE(held.finish(), "");
    EXPECT_EQ(slot_count(2), 2);  // undone where it could be
    EXPECT_EQ(slot_count(3), 2);
    EXPECT_EQ(slot_count(4), 0);
    start(1);
    EXPECT_EQ(slot_count(1), 3);  // left by the dead attempt
    exec(4, join_sql("node4", 4, 1));
    ASSERT_EQ(query_value(4, "SELECT pgmesh.wait_for_ready(60)"), "t");
    for (int n = 1; n <= 3; n++) EXPECT_EQ(slot_count(n), 3) << "node" << n;
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.node"), "4");
    exec(4, "INSERT INTO t VALUES (2, 'b')");
    wait_for_sync_all();
    EXPECT_EQ(query_value(2, "SELECT string_agg(v, ',' ORDER BY id) FROM t"), "a,b");
    verify_all();
}

// One join at a time: a second join through the same target while the
// first is held is refused (55006), as is a join through another member
// once the first's 'joining' row reached it.
TEST_F(LifecycleTest, JoinsRunOneAtATime) {
    form(2);
    HeldJoin held(*this, 3, 1);
    ASSERT_TRUE(wait_until([&] { return advisory_waiters(3) == 1; }));
    expect_error(4, join_sql("node4", 4, 1), "55006", "another node is joining through");
    ASSERT_TRUE(wait_until([&] { return node_state(2, "node3") == "joining"; }));
    pq::Error error = expect_error(4, join_sql("node4", 4, 2), "55006", "\"node3\" is joining");
    held.release();
    EXPECT_EQ(held.finish(), "");
    EXPECT_EQ(query_value(3, "SELECT pgmesh.wait_for_ready(60)"), "t");
    exec(4, join_sql("node4", 4, 2));
    EXPECT_EQ(query_value(4, "SELECT pgmesh.wait_for_ready(60)"), "t");
    // Each node has its own number, given by the target.
    EXPECT_EQ(query_value(4,
                          "SELECT string_agg(node_number::text, ',' ORDER BY node_number) "
                          "FROM pgmesh.nodes"),
              "1,2,3,4");
    // The interleaved sequences of docs/operations.md never share a value.
    std::set<std::string> values;
    for (int n = 1; n <= 4; n++) {
        exec(n, "SET pgmesh.replicate_ddl = off");
        exec(n, "CREATE SEQUENCE s");
        exec(n, query_value(n,
                            "SELECT format('ALTER SEQUENCE %s INCREMENT BY 1024 RESTART WITH %s', "
                            "'public.s'::regclass, node_number) FROM pgmesh.nodes WHERE is_local"));
        for (int i = 0; i < 3; i++) values.insert(query_value(n, "SELECT nextval('s')"));
        exec(n, "RESET pgmesh.replicate_ddl");
    }
    EXPECT_EQ(values.size(), 12u);
    EXPECT_EQ(values.count("2052"), 1u);  // node4's third: 4 + 2 * 1024
}

// A node parted while it was down (or cut off) is fenced: when it runs
// again, the survivors refuse its streams and it cannot stream from them,
// and its data stays on it.
TEST_F(LifecycleTest, ANodePartedWhileDownIsRefusedWhenItComesBack) {
    form(3);
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    wait_for_sync(1);
    stop(3);
    exec(1, "SELECT pgmesh.part_node('node3')");
    ASSERT_TRUE(wait_until([&] { return node_state(2, "node3") == "parted"; }));
    for (int n = 1; n <= 2; n++)
        EXPECT_TRUE(wait_until([&] { return slot_count(n) == 1; })) << "node" << n;
    start(3);
    std::string error = wait_for_last_error(3, "has parted from the group");
    EXPECT_NE(error.find("node3"), std::string::npos) << error;
    exec(3, "INSERT INTO t VALUES (3, 'cut off')");
    exec(1, "INSERT INTO t VALUES (2, 'b')");
    ASSERT_TRUE(wait_until([&] { return query_value(2, "SELECT count(*) FROM t") == "2"; }));
    EXPECT_EQ(query_value(2, "SELECT string_agg(v, ',' ORDER BY id) FROM t"), "a,b");
    EXPECT_EQ(query_value(3, "SELECT string_agg(v, ',' ORDER BY id) FROM t"), "a,cut off");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.status"), "1");
    // Parting again, or parting oneself, is refused.
    expect_error(1, "SELECT pgmesh.part_node('node3')", "55000", "already parted");
    expect_error(1, "SELECT pgmesh.part_node('node1')", "55000", "cannot part itself");
    expect_error(1, "SELECT pgmesh.part_node('nobody')", "42704", "does not exist");
}

// The relay slot keeps WAL only until every member has what it holds: once
// the group is in sync, each node's relay slot moves past what was written
// before (relay.hpp: a checkpoint every 5 s, then every member asked).
TEST_F(LifecycleTest, RelaySlotsMoveOnOnceEveryMemberHasWhatTheyHold) {
    form(3);
    for (int n = 1; n <= 3; n++) exec(n, "INSERT INTO t VALUES (" + std::to_string(n) + ", 'x')");
    wait_for_sync(1);
    wait_for_sync(2);
    wait_for_sync(3);
    for (int n = 1; n <= 3; n++) {
        std::string written = query_value(n, "SELECT pg_current_wal_lsn()::text");
        EXPECT_TRUE(wait_until([&] {
            return query_value(n, "SELECT confirmed_flush_lsn >= '" + written +
                                      "'::pg_lsn FROM pg_replication_slots WHERE slot_name LIKE "
                                      "'pgmesh\\_relay\\_%'") == "t";
        })) << "node"
            << n << ": relay slot still before " << written;
        EXPECT_EQ(query_value(n,
                              "SELECT count(*) FROM pgmesh.relay_coverage WHERE covered_after > "
                              "'0/0'"),
                  "2")
            << "node" << n;
    }
}

// A dead node whose transactions reached the survivors in different
// amounts: node1 got none of the last 41, node2 the first 20, node3 all.
// part_node (run on node3, the one that got most) forwards what each lacks
// from the relay slot of one that has it, as node4 sent it: every survivor
// ends with the same rows, each row with node4's commit time, and no
// conflict anywhere (nothing applied twice).
TEST_F(LifecycleTest, ADeadNodesMissingTransactionsAreForwardedToEverySurvivor) {
    form(4);
    pq::Connection gate1 = hold(1, 4);
    pq::Connection gate2 = hold(2, 4);
    for (int i = 1; i <= 20; i++) exec(4, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'a')");
    ASSERT_TRUE(wait_until([&] { return query_value(3, "SELECT count(*) FROM t") == "20"; }));
    gate2.exec("SELECT pg_advisory_unlock_all()");
    ASSERT_TRUE(wait_until([&] { return query_value(2, "SELECT count(*) FROM t") == "20"; }));
    gate2.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault apply_begin@node4'))");
    for (int i = 21; i <= 39; i++) exec(4, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'b')");
    exec(4, "UPDATE t SET v = 'updated' WHERE id = 1");
    exec(4, "DELETE FROM t WHERE id = 2");
    ASSERT_TRUE(wait_until([&] { return query_value(3, "SELECT count(*) FROM t") == "38"; }));
    ASSERT_TRUE(
        wait_until([&] { return query_value(3, "SELECT v FROM t WHERE id = 1") == "updated"; }));
    kill9(4);
    stop_stream(1, 4);
    stop_stream(2, 4);
    // Forwarding applies node4's transactions too: apply_begin@node4 would
    // hold it.
    gate1.exec("SELECT pg_advisory_unlock_all()");
    gate2.exec("SELECT pg_advisory_unlock_all()");
    std::string at1 = applied_from(1, "node4");
    std::string at2 = applied_from(2, "node4");
    std::string at3 = applied_from(3, "node4");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "0");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "20");
    EXPECT_EQ(query_value(1, "SELECT '" + at1 + "'::pg_lsn < '" + at2 + "'::pg_lsn AND '" + at2 +
                                 "'::pg_lsn < '" + at3 + "'::pg_lsn"),
              "t")
        << at1 << " " << at2 << " " << at3;

    exec(3, "SELECT pgmesh.part_node('node4')");
    std::string rows_sql = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t";
    std::string times_sql =
        "SELECT string_agg(pg_xact_commit_timestamp(xmin)::text, ',' ORDER BY id) FROM t";
    std::string rows = query_value(3, rows_sql);
    std::string times = query_value(3, times_sql);
    for (int n = 1; n <= 3; n++) {
        EXPECT_EQ(query_value(n, rows_sql), rows) << "node" << n;
        EXPECT_EQ(query_value(n, times_sql), times) << "node" << n << ": not node4's commit times";
        EXPECT_EQ(query_value(n,
                              "SELECT count(*) FROM pgmesh.conflict_history WHERE table_name = "
                              "'t'"),
                  "0")
            << "node" << n;
    }
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "38");
    EXPECT_EQ(query_value(1, "SELECT v FROM t WHERE id = 1"), "updated");
    for (int n = 1; n <= 3; n++)
        EXPECT_TRUE(wait_until([&] { return node_state(n, "node4") == "parted"; })) << "node" << n;
    // The group goes on without node4.
    exec(1, "INSERT INTO t VALUES (100, 'after')");
    wait_for_sync(1);
    for (int n = 2; n <= 3; n++) EXPECT_EQ(query_value(n, rows_sql), query_value(1, rows_sql));
}

// The survivor that forwards dies midway (after node1 committed the first
// forwarded transaction, held there by the fault point forward_commit):
// part_node fails and says why, node4 stays a member, and node1 keeps what
// it got. Run again once the source is back, the forwarding goes on from
// there: node1 ends with every row exactly once.
TEST_F(LifecycleTest, ForwardingGoesOnWhereItStoppedWhenTheSourceDiedMidway) {
    form(4);
    exec(1, "ALTER DATABASE pgmesh SET pgmesh.fault_points = 'apply_begin,forward_commit'");
    pq::Connection gate1 = hold(1, 4);
    for (int i = 1; i <= 30; i++) exec(4, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'x')");
    for (int n = 2; n <= 3; n++)
        ASSERT_TRUE(wait_until([&] { return query_value(n, "SELECT count(*) FROM t") == "30"; }));
    kill9(4);
    stop_stream(1, 4);
    gate1.exec("SELECT pg_advisory_unlock_all()");
    pq::Connection forward_gate = connect(1);
    forward_gate.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault forward_commit'))");
    // On node1, which lacks what is forwarded: never the source.
    TestThread part([&](TestThread &self) {
        self.session(connect(1)).exec("SELECT pgmesh.part_node('node4')");
    });
    ASSERT_TRUE(wait_until([&] { return query_value(1, "SELECT count(*) FROM t") == "1"; }));
    // The source: the survivor whose walsender serves the forwarding.
    int source = 0;
    for (int n = 2; n <= 3; n++)
        if (query_value(n,
                        "SELECT count(*) FROM pg_stat_replication WHERE application_name "
                        "LIKE 'pgmesh forward %'") == "1")
            source = n;
    ASSERT_NE(source, 0);
    kill9(source);
    // The source's walsender sent all 29 others into node1's socket before
    // it died; the forwarding worker would apply them from there once let
    // go. Stopping it too leaves node1 with exactly what it committed.
    exec(1,
         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = "
         "'pgmesh forward'");
    forward_gate.exec("SELECT pg_advisory_unlock_all()");
    std::string part_error = part.join();
    EXPECT_NE(part_error.find("55000"), std::string::npos) << part_error;
    EXPECT_NE(part_error.find("forwarding node \"node4\"'s transactions from node \"node" +
                              std::to_string(source) + "\""),
              std::string::npos)
        << part_error;
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "1");
    EXPECT_EQ(node_state(1, "node4"), "ready");

    start(source);
    exec(1, "SELECT pgmesh.part_node('node4')");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "30");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.conflict_history WHERE table_name = 't'"),
              "0");
    for (int n = 1; n <= 3; n++)
        EXPECT_TRUE(wait_until([&] { return node_state(n, "node4") == "parted"; })) << "node" << n;
    std::string rows_sql = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t";
    for (int n = 2; n <= 3; n++) EXPECT_EQ(query_value(n, rows_sql), query_value(1, rows_sql));
}

// Issue 22: the survivor that got all of a dead node's transactions
// (node2) applied the last of them with asynchronous commits that its WAL
// writer had not flushed yet when the forwarding connected. Forwarding took
// the source's flushed WAL end for the end of what it held, passed it, and
// gave up with the rest on its way: "node2 has no more transactions of
// node3 to forward". Here the order is forced: node2's WAL writer is
// stopped and its manager held (whose commits would flush), so nothing of
// node3's ten transactions is flushed on node2 until the forwarding
// streams; then node2 flushes, and node1 must get all ten.
TEST_F(LifecycleTest, ForwardingWaitsForTheSourcesUnflushedCommits) {
    form(3);
    pq::Connection gate1 = hold(1, 3);
    // Nothing on node2 flushes its WAL from here on.
    pq::Connection manager_gate = hold_manager(2);
    FrozenProcess wal_writer(server_process(2, "walwriter"));
    for (int i = 1; i <= 10; i++) exec(3, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'x')");
    ASSERT_TRUE(wait_until([&] { return query_value(2, "SELECT count(*) FROM t") == "10"; }));
    kill9(3);
    stop_stream(1, 3);
    stop_stream(2, 3);
    gate1.exec("SELECT pg_advisory_unlock_all()");
    std::string origin3 =
        "(SELECT 'pgmesh_' || lpad(to_hex(node_id), 16, '0') FROM pgmesh.nodes WHERE node_name = "
        "'node3')";
    ASSERT_EQ(query_value(2,
                          "SELECT pg_current_wal_flush_lsn() < local_lsn FROM "
                          "pg_replication_origin_status WHERE external_id = " +
                              origin3),
              "t")
        << "node2 flushed its last commits of node3's transactions before the forwarding began";

    TestThread part([&](TestThread &self) {
        self.session(connect(1)).exec("SELECT pgmesh.part_node('node3')");
    });
    // The forwarding streams from node2 (or has failed already).
    EXPECT_TRUE(wait_until([&] {
        return part.finished() ||
               query_value(2,
                           "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE "
                           "'pgmesh forward %' AND state <> 'startup'") == "1";
    }));
    wal_writer.thaw();
    manager_gate.exec("SELECT pg_advisory_unlock_all()");
    EXPECT_EQ(part.join(), "");
    std::string rows_sql = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t";
    std::string times_sql =
        "SELECT string_agg(pg_xact_commit_timestamp(xmin)::text, ',' ORDER BY id) FROM t";
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "10");
    EXPECT_EQ(query_value(1, rows_sql), query_value(2, rows_sql));
    EXPECT_EQ(query_value(1, times_sql), query_value(2, times_sql));
    for (int n = 1; n <= 2; n++) {
        EXPECT_EQ(conflicts(n, "insert_exists"), 0) << "node" << n;
        EXPECT_TRUE(wait_until([&] { return node_state(n, "node3") == "parted"; })) << "node" << n;
    }
}

// A restart keeps an origin's remote_lsn but not its local_lsn (where in
// this node's WAL its last commit from that origin ends). node2 restarted
// after it applied the dead node3's transactions, so its origin cannot say
// where they end in its WAL; they all lie in WAL flushed before the
// restart, and forwarding must take that end rather than give up at once.
TEST_F(LifecycleTest, ASourceThatRestartedSinceItsLastApplyForwardsAll) {
    form(3);
    pq::Connection gate1 = hold(1, 3);
    for (int i = 1; i <= 10; i++) exec(3, "INSERT INTO t VALUES (" + std::to_string(i) + ", 'x')");
    ASSERT_TRUE(wait_until([&] { return query_value(2, "SELECT count(*) FROM t") == "10"; }));
    kill9(3);
    stop_stream(1, 3);
    restart(2);
    stop_stream(2, 3);
    gate1.exec("SELECT pg_advisory_unlock_all()");
    ASSERT_EQ(query_value(2,
                          "SELECT local_lsn::text FROM pg_replication_origin_status WHERE "
                          "external_id = (SELECT 'pgmesh_' || lpad(to_hex(node_id), 16, '0') FROM "
                          "pgmesh.nodes WHERE node_name = 'node3')"),
              "0/0");

    exec(1, "SELECT pgmesh.part_node('node3')");
    std::string rows_sql = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM t";
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "10");
    EXPECT_EQ(query_value(1, rows_sql), query_value(2, rows_sql));
    EXPECT_EQ(conflicts(1, "insert_exists"), 0);
    EXPECT_TRUE(wait_until([&] { return node_state(2, "node3") == "parted"; }));
}

// When the relay slots no longer hold what a survivor lacks (here: dropped
// on node2 and node3, and made anew by their managers, covering only what
// comes after), part_node refuses, says so, and leaves the node a member.
TEST_F(LifecycleTest, ADeadNodeIsNotPartedWhenTheRelayNoLongerHoldsWhatASurvivorLacks) {
    form(4);
    pq::Connection gate1 = hold(1, 4);
    exec(4, "INSERT INTO t VALUES (1, 'last words')");
    for (int n = 2; n <= 3; n++) {
        ASSERT_TRUE(wait_until([&] { return query_value(n, "SELECT count(*) FROM t") == "1"; }));
        std::string relay =
            "(SELECT 'pgmesh_relay_' || lpad(to_hex(node_id), 16, '0') FROM pgmesh.nodes WHERE "
            "is_local)";
        ASSERT_TRUE(wait_until([&] {
            try {
                exec(n, "SELECT pg_drop_replication_slot(" + relay + ")");
                return true;
            } catch (const pq::Error &) {
                return false;  // in use by the manager's advance this moment
            }
        }));
        ASSERT_TRUE(wait_until([&] {
            return query_value(n, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = " +
                                      relay) == "1";
        }));
    }
    kill9(4);
    stop_stream(1, 4);
    gate1.exec("SELECT pg_advisory_unlock_all()");
    pq::Error error = expect_error(3, "SELECT pgmesh.part_node('node4')", "55000",
                                   "no longer holds the transactions of node \"node4\"");
    EXPECT_NE(error.detail().find("node1\" applied up to"), std::string::npos) << error.detail();
    EXPECT_EQ(node_state(3, "node4"), "ready");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t"), "0");
}

// hold_apply, part_node and forwarding are for superusers only.
TEST_F(LifecycleTest, OrdinaryRolesCannotHoldApplyOrPart) {
    form(2);
    exec(1, "CREATE ROLE mallory LOGIN");
    pq::Connection mallory = connect_as(1, "mallory");
    expect_error(mallory, "SELECT pgmesh.part_node('node2')", "42501");
    expect_error(mallory, "SELECT pgmesh.forward_missing(1, 2, '0/1')", "42501");
    expect_error(mallory, "SELECT * FROM pgmesh.forward_progress(1)", "42501");
    expect_error(mallory, "BEGIN; SELECT pgmesh.hold_apply(1)", "42501");
    expect_error(1, "SELECT pgmesh.hold_apply(1)", "25001", "until its transaction ends");
}

}  // namespace
}  // namespace pgmesh::test
