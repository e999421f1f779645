// Conflicts provoked deterministically: apply is paused on every node, the
// nodes write, apply resumes. Each test asserts the surviving rows on every
// node and the conflict history. The randomized test at the end checks that
// concurrent writers over a small key space converge.
#include <fstream>
#include <iostream>
#include <list>
#include <random>
#include <thread>

#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

using namespace std::chrono_literals;

class ConflictTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 2}; }

    void pause_all() {
        for (int n = 1; n <= node_count(); n++) exec(n, "SELECT pgmesh.pause_apply()");
    }
    void resume_all_and_sync() {
        for (int n = 1; n <= node_count(); n++) exec(n, "SELECT pgmesh.resume_apply()");
        wait_for_sync_all();
    }
    // "type:resolution" of the node's history, oldest first.
    std::string history(int node) {
        return query_value(node,
                           "SELECT coalesce(string_agg(conflict_type || ':' || resolution, ',' "
                           "ORDER BY id), '') FROM pgmesh.conflict_history");
    }
    std::string rows(int node, const std::string &table = "t") {
        return query_value(node, "SELECT coalesce(string_agg(row(" + table +
                                     ".*)::text, ',' "
                                     "ORDER BY id), '') FROM " +
                                     table);
    }
    void expect_rows_everywhere(const std::string &expected, const std::string &table = "t") {
        for (int n = 1; n <= node_count(); n++) EXPECT_EQ(rows(n, table), expected) << "node" << n;
    }
    // Commit timestamps must differ between the competing writes.
    void tick() { std::this_thread::sleep_for(20ms); }
};

TEST_F(ConflictTest, InsertExistsLastUpdateWins) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    pause_all();
    exec(1, "INSERT INTO t VALUES (1, 'from node1')");
    tick();
    exec(2, "INSERT INTO t VALUES (1, 'from node2')");  // later: wins
    resume_all_and_sync();
    expect_rows_everywhere("(1,\"from node2\")");
    EXPECT_EQ(history(1), "insert_exists:apply_remote");
    EXPECT_EQ(history(2), "insert_exists:keep_local");
    // The history carries both versions and the remote commit facts.
    EXPECT_EQ(query_value(1,
                          "SELECT (local_tuple->>'v') || '|' || (remote_tuple->>'v') || '|' || "
                          "table_name || '|' || (remote_commit_lsn IS NOT NULL) || '|' || "
                          "(local_commit_time < remote_commit_time) FROM "
                          "pgmesh.conflict_history"),
              "from node1|from node2|t|true|true");
    EXPECT_EQ(query_value(1,
                          "SELECT conflicts || ' ' || conflicts_by_type::text FROM "
                          "pgmesh.status"),
              "1 {\"insert_exists\": 1}");
}

TEST_F(ConflictTest, UpdateOriginDiffersLastUpdateWins) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'original')");
    wait_for_sync(1);
    pause_all();
    exec(2, "UPDATE t SET v = 'node2' WHERE id = 1");
    tick();
    exec(1, "UPDATE t SET v = 'node1' WHERE id = 1");  // later: wins
    resume_all_and_sync();
    expect_rows_everywhere("(1,node1)");
    EXPECT_EQ(history(1), "update_origin_differs:keep_local");
    EXPECT_EQ(history(2), "update_origin_differs:apply_remote");
}

TEST_F(ConflictTest, SequentialUpdatesFromOtherOriginsApplyInOrder) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    wait_for_sync(1);
    exec(2, "UPDATE t SET v = 'b' WHERE id = 1");
    wait_for_sync(2);
    exec(1, "UPDATE t SET v = 'c' WHERE id = 1");
    wait_for_sync(1);
    expect_rows_everywhere("(1,c)");
    // Without causal information each node sees an update of a row another
    // node wrote last (as PostgreSQL 18 reports it); the newer one applies.
    EXPECT_EQ(history(1), "update_origin_differs:apply_remote");
    EXPECT_EQ(history(2), "update_origin_differs:apply_remote");
}

TEST_F(ConflictTest, UpdateExistsOnAnotherUniqueIndex) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, u int UNIQUE)");
    exec(1, "INSERT INTO t VALUES (1, 10)");
    wait_for_sync(1);
    pause_all();
    exec(2, "INSERT INTO t VALUES (3, 30)");
    tick();
    exec(1, "UPDATE t SET u = 30 WHERE id = 1");  // later: wins
    resume_all_and_sync();
    expect_rows_everywhere("(1,30)");
    EXPECT_EQ(history(1), "insert_exists:keep_local");
    EXPECT_EQ(history(2), "update_exists:apply_remote");
}

// The mirror of the test above: the update is older, so the inserted row
// keeps the unique value and the updated row goes (as on node1, where the
// insert_exists deletes the older holder of u = 30).
TEST_F(ConflictTest, UpdateExistsOlderUpdateLosesItsRow) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, u int UNIQUE)");
    exec(1, "INSERT INTO t VALUES (1, 10), (2, 20)");
    wait_for_sync(1);
    pause_all();
    exec(1, "UPDATE t SET u = 30 WHERE id = 1");  // earlier: loses
    tick();
    exec(2, "INSERT INTO t VALUES (3, 30)");
    resume_all_and_sync();
    expect_rows_everywhere("(2,20),(3,30)");
    EXPECT_EQ(history(1), "insert_exists:apply_remote");
    EXPECT_EQ(history(2), "update_exists:keep_local");
}

// One rule for deletes too: the newer change wins. An update newer than
// the delete brings the row back where it was deleted (its tombstone is
// older); test_convergence.cpp has the other order.
TEST_F(ConflictTest, NewerUpdateWinsOverAnOlderDelete) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    wait_for_sync(1);
    pause_all();
    exec(1, "DELETE FROM t WHERE id = 1");
    tick();
    exec(2, "UPDATE t SET v = 'later update' WHERE id = 1");  // later: wins
    resume_all_and_sync();
    expect_rows_everywhere("(1,\"later update\"),(2,b)");
    EXPECT_EQ(history(1), "update_deleted:apply_remote");
    EXPECT_EQ(history(2), "delete_origin_differs:keep_local");
}

TEST_F(ConflictTest, DeleteMissing) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY)");
    exec(1, "INSERT INTO t VALUES (1), (2)");
    wait_for_sync(1);
    pause_all();
    exec(1, "DELETE FROM t WHERE id = 1");
    tick();
    exec(2, "DELETE FROM t WHERE id = 1");
    resume_all_and_sync();
    expect_rows_everywhere("(2)");
    // Each node keeps the newer delete's tombstone.
    EXPECT_EQ(history(1), "delete_missing:apply_remote");
    EXPECT_EQ(history(2), "delete_missing:keep_local");
}

// A local transaction commits the same key between apply's probe (no row)
// and its insert. A REPLICA trigger on node2 forces that window: it fires in
// the apply worker just before the insert and commits the competing row from
// another session (dblink). Apply must notice the collision, probe again and
// resolve an insert_exists conflict, not stop on a unique violation.
TEST_F(ConflictTest, LocalInsertRacingApplysInsertIsAConflictNotAnError) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(2, "CREATE EXTENSION dblink");
    exec(2,
         // Apply runs user code with search_path = '': names are qualified.
         "CREATE FUNCTION sneak_in() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
         "PERFORM public.dblink_exec(" +
             conn(2).quote_literal(dsn(2)) +
             ", format('INSERT INTO t VALUES (%s, ''local'') ON CONFLICT DO NOTHING', NEW.id)); "
             "RETURN NEW; END $$");
    exec(2, "CREATE TRIGGER sneak_in BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION sneak_in()");
    exec(2, "ALTER TABLE t ENABLE REPLICA TRIGGER sneak_in");
    exec(1, "INSERT INTO t VALUES (1, 'remote')");
    wait_for_sync(1);
    wait_for_sync(2);
    // node2's local row committed after node1's: it wins everywhere.
    expect_rows_everywhere("(1,local)");
    EXPECT_EQ(history(2), "insert_exists:keep_local");
    EXPECT_EQ(history(1), "insert_exists:apply_remote");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM pgmesh.status WHERE last_error IS NULL"), "1");
    std::ifstream log(log_file(2));
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    EXPECT_EQ(text.find("duplicate key value"), std::string::npos) << "apply stopped on node2";
}

// A key change onto a key the other node inserted meanwhile: the newer
// version keeps the key, the older row goes, on both nodes.
TEST_F(ConflictTest, KeyChangeOntoAnExistingKeyIsUpdateExists) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'a'), (5, 'e')");
    wait_for_sync(1);
    pause_all();
    // Key 2: the key change is older and loses. Key 6: it is newer and wins.
    exec(1, "UPDATE t SET id = 2 WHERE id = 1");
    tick();
    exec(2, "INSERT INTO t VALUES (2, 'b')");
    tick();
    exec(2, "INSERT INTO t VALUES (6, 'f')");
    tick();
    exec(1, "UPDATE t SET id = 6 WHERE id = 5");
    resume_all_and_sync();
    expect_rows_everywhere("(2,b),(6,e)");
    EXPECT_EQ(history(1), "insert_exists:apply_remote,insert_exists:keep_local");
    EXPECT_EQ(history(2), "update_exists:keep_local,update_exists:apply_remote");
}

TEST_F(ConflictTest, MultipleUniqueConflictsStopApplyUntilTheDataIsFixed) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, a int UNIQUE, b int UNIQUE)");
    pause_all();
    exec(1, "INSERT INTO t VALUES (10, 5, 100), (11, 200, 6)");
    tick();
    exec(2, "INSERT INTO t VALUES (12, 5, 6)");  // collides with both rows on node1
    for (int n = 1; n <= node_count(); n++) exec(n, "SELECT pgmesh.resume_apply()");
    // node1 cannot apply node2's row: its apply stops with the error shown.
    ASSERT_TRUE(wait_until(
        [&] {
            auto e = query_nullable(1, "SELECT last_error FROM pgmesh.status");
            return e && e->find("multiple_unique_conflicts") != std::string::npos;
        },
        60s));
    EXPECT_NE(query_value(1, "SELECT last_error FROM pgmesh.status").find("commit LSN"),
              std::string::npos);
    EXPECT_NE(history(1).find("multiple_unique_conflicts:error"), std::string::npos);
    // The operator fixes the data on node1; apply resumes by itself.
    exec(1, "DELETE FROM t WHERE id = 11");
    wait_for_sync(2, 120);
    wait_for_sync(1, 120);
    expect_rows_everywhere("(12,5,6)");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.status WHERE connected"), "1");
}

TEST_F(ConflictTest, ApplyErrorStopsApplyUntilFixed) {
    // The table exists on node1 only: node2 cannot apply node1's insert.
    exec(1, "CREATE TABLE only_on_1 (id int PRIMARY KEY)");
    exec(1, "INSERT INTO only_on_1 VALUES (1)");
    ASSERT_TRUE(wait_until(
        [&] {
            auto e = query_nullable(2, "SELECT last_error FROM pgmesh.status");
            return e && e->find("does not exist on this node") != std::string::npos;
        },
        60s));
    EXPECT_EQ(query_value(2,
                          "SELECT conflict_type || ':' || resolution || ':' || "
                          "(message LIKE '%only_on_1%') FROM pgmesh.conflict_history"),
              "apply_error:error:true");
    EXPECT_NE(
        query_value(2, "SELECT conflicts_by_type::text FROM pgmesh.status").find("apply_error"),
        std::string::npos);
    // Fixing it (creating the table) lets apply continue from that transaction.
    exec(2, "CREATE TABLE only_on_1 (id int PRIMARY KEY)");
    wait_for_sync(1, 120);
    EXPECT_EQ(rows(2, "only_on_1"), "(1)");
}

TEST_F(ConflictTest, SkipTransactionIsTheOtherWayOut) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, a int UNIQUE, b int UNIQUE)");
    pause_all();
    exec(1, "INSERT INTO t VALUES (10, 5, 100), (11, 200, 6)");
    tick();
    // The WAL positions around node2's transaction, to recognize its commit.
    // (The insert position: the write position may lag behind a commit.)
    std::string before = query_value(2, "SELECT pg_current_wal_insert_lsn()");
    exec(2, "INSERT INTO t VALUES (12, 5, 6)");
    std::string after = query_value(2, "SELECT pg_current_wal_insert_lsn()");
    for (int n = 1; n <= node_count(); n++) exec(n, "SELECT pgmesh.resume_apply()");
    ASSERT_TRUE(wait_until(
        [&] {
            return query_value(1,
                               "SELECT count(*) FROM pgmesh.conflict_history WHERE "
                               "conflict_type = 'multiple_unique_conflicts'") != "0";
        },
        60s));
    std::string commit_lsn =
        query_value(1,
                    "SELECT remote_commit_lsn FROM pgmesh.conflict_history WHERE conflict_type = "
                    "'multiple_unique_conflicts' LIMIT 1");
    // The history names the commit of exactly that transaction.
    EXPECT_EQ(query_value(2, "SELECT '" + commit_lsn + "'::pg_lsn BETWEEN '" + before + "' AND '" +
                                 after + "'"),
              "t")
        << commit_lsn << " is not between " << before << " and " << after;
    expect_error(1, "SELECT pgmesh.skip_transaction('nosuchnode', '0/1')", "42704");
    exec(1, "SELECT pgmesh.skip_transaction('node2', '" + commit_lsn + "')");
    wait_for_sync(2, 60);
    wait_for_sync(1, 60);
    // The skipped transaction is not applied on node1; later ones are.
    EXPECT_EQ(rows(1), "(10,5,100),(11,200,6)");
    exec(2, "INSERT INTO t VALUES (20, 20, 20)");
    wait_for_sync(2);
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM t WHERE id = 20"), "1");
    EXPECT_EQ(query_value(1, "SELECT coalesce(last_error, '') FROM pgmesh.status"), "");
}

TEST_F(ConflictTest, PerTableResolvers) {
    exec_all("CREATE TABLE fuw (id int PRIMARY KEY, v text)");
    exec_all("CREATE TABLE kl (id int PRIMARY KEY, v text)");
    exec_all("CREATE TABLE fn (id int PRIMARY KEY, v int)");
    exec_all("CREATE TABLE err (id int PRIMARY KEY, v int)");
    exec_all("CREATE TABLE ar (id int PRIMARY KEY, v text)");
    exec_all(
        "CREATE FUNCTION larger_v(kind text, l fn, r fn) RETURNS fn LANGUAGE sql AS "
        "$$ SELECT CASE WHEN (l).v >= (r).v THEN l ELSE r END $$");
    // Set on node1 only: the settings replicate.
    exec(1, "SELECT pgmesh.set_conflict_resolver('fuw', 'insert_exists', 'first_update_wins')");
    exec(1, "SELECT pgmesh.set_conflict_resolver('kl', 'insert_exists', 'keep_local')");
    exec(1,
         "SELECT pgmesh.set_conflict_resolver('fn', 'insert_exists', "
         "'larger_v(text, fn, fn)')");
    exec(1, "SELECT pgmesh.set_conflict_resolver('err', 'insert_exists', 'error')");
    exec(1, "SELECT pgmesh.set_conflict_resolver('ar', 'insert_exists', 'apply_remote')");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM pgmesh.conflict_resolver"), "5");
    pause_all();
    exec(1, "INSERT INTO fuw VALUES (1, 'first')");
    exec(1, "INSERT INTO kl VALUES (1, 'node1')");
    exec(1, "INSERT INTO fn VALUES (1, 500)");
    tick();
    exec(2, "INSERT INTO fuw VALUES (1, 'second')");
    exec(2, "INSERT INTO kl VALUES (1, 'node2')");
    exec(2, "INSERT INTO fn VALUES (1, 7)");
    exec(1, "INSERT INTO ar VALUES (1, 'node1')");
    exec(2, "INSERT INTO ar VALUES (1, 'node2')");
    resume_all_and_sync();
    EXPECT_EQ(rows(1, "ar"), "(1,node2)");  // apply_remote: each takes the other's
    EXPECT_EQ(rows(2, "ar"), "(1,node1)");
    expect_rows_everywhere("(1,first)", "fuw");  // converges
    expect_rows_everywhere("(1,500)", "fn");     // converges (a symmetric function)
    EXPECT_EQ(rows(1, "kl"), "(1,node1)");       // keep_local: each keeps its own
    EXPECT_EQ(rows(2, "kl"), "(1,node2)");
    // error: the conflict stops apply.
    pause_all();
    exec(1, "INSERT INTO err VALUES (1, 1)");
    exec(2, "INSERT INTO err VALUES (1, 2)");
    for (int n = 1; n <= node_count(); n++) exec(n, "SELECT pgmesh.resume_apply()");
    ASSERT_TRUE(wait_until(
        [&] {
            auto e = query_nullable(2, "SELECT last_error FROM pgmesh.status");
            return e &&
                   e->find("conflict insert_exists on table \"public.err\"") != std::string::npos;
        },
        60s));
}

TEST_F(ConflictTest, ResolverSettingsAreChecked) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v int)");
    exec(1, "CREATE FUNCTION wrong(a int) RETURNS int LANGUAGE sql AS 'SELECT a'");
    expect_error(1, "SELECT pgmesh.set_conflict_resolver('t', 'insert_clash', 'keep_local')",
                 "22023", "unknown conflict type");
    expect_error(1, "SELECT pgmesh.set_conflict_resolver('t', 'insert_exists', 'coin_flip')",
                 "22023", "unknown resolver");
    // Against a tombstone there is no local row to hand to a function.
    exec(1, "CREATE FUNCTION newest(c text, l t, r t) RETURNS t LANGUAGE sql AS 'SELECT r'");
    expect_error(1,
                 "SELECT pgmesh.set_conflict_resolver('t', 'update_deleted', 'newest(text,t,t)')",
                 "22023", "cannot resolve update_deleted");
    expect_error(1, "SELECT pgmesh.set_conflict_resolver('t', 'apply_error', 'keep_local')",
                 "22023", "cannot resolve apply_error");
    expect_error(1, "SELECT pgmesh.set_conflict_resolver('t', 'insert_exists', 'wrong(int)')",
                 "42P13", "cannot resolve conflicts");
    expect_error(1, "SELECT pgmesh.set_conflict_resolver('nosuch', 'insert_exists', 'error')",
                 "42P01");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.conflict_resolver"), "0");
}

TEST_F(ConflictTest, HistoryCanBeSwitchedOffAndIsNotPublic) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "ALTER SYSTEM SET pgmesh.conflict_history = off");
    exec(1, "SELECT pg_reload_conf()");
    pause_all();
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    tick();
    exec(2, "INSERT INTO t VALUES (1, 'b')");
    resume_all_and_sync();
    expect_rows_everywhere("(1,b)");
    EXPECT_EQ(history(1), "");                                              // off on node1
    EXPECT_EQ(history(2), "insert_exists:keep_local");                      // on by default
    EXPECT_EQ(query_value(1, "SELECT conflicts FROM pgmesh.status"), "1");  // still counted
    exec(1, "CREATE ROLE app LOGIN");
    exec(1, "CREATE ROLE watcher LOGIN IN ROLE pgmesh_monitor");
    exec(1, "SET ROLE app");
    expect_error(1, "SELECT * FROM pgmesh.conflict_history", "42501");
    exec(1, "RESET ROLE");
    exec(1, "SET ROLE watcher");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.conflict_history"), "0");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.status"), "1");
    exec(1, "RESET ROLE");
}

class RandomizedConflictTest : public ConflictTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 3}; }
};

// Three writers over 100 keys (inserts, updates, deletes: keys are deleted
// and inserted again all the time), while each node holds one other
// node's stream for random stretches (fault point apply_begin@<origin>):
// deletes, re-inserts and updates of a key arrive in different orders on
// different nodes. Every node must end the same.
TEST_F(RandomizedConflictTest, ConcurrentWritersOnFewKeysConverge) {
    exec_all("CREATE TABLE hot (id int PRIMARY KEY, v text, n int)");
    std::mt19937 seed_rng(4242);
    std::vector<pq::Connection> gates;
    for (int n = 1; n <= node_count(); n++) {
        int origin = 1 + static_cast<int>((n + seed_rng() % 2) % node_count());  // not n itself
        gates.push_back(connect(n));
        arm_workers(n, "apply_begin@node" + std::to_string(origin));
        std::cout << "[measure] node" << n << " holds node" << origin << "'s stream at times\n";
    }
    // Holds for 0.1-1.5 s, then lets go for 0.1-1 s, per node.
    TestThread delays([&](TestThread &self) {
        std::mt19937 rng(77);
        std::vector<bool> held(gates.size(), false);
        while (!self.stopping()) {
            size_t i = rng() % gates.size();
            gates[i].exec(held[i]
                              ? "SELECT pg_advisory_unlock_all()"
                              : "SELECT pg_advisory_lock(hashtext('pgmesh fault apply_begin'))");
            held[i] = !held[i];
            std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 900));
        }
        for (auto &g : gates) g.exec("SELECT pg_advisory_unlock_all()");
    });
    std::vector<long> ops(node_count() + 1, 0);
    std::list<TestThread> writers;
    for (int n = 1; n <= node_count(); n++) {
        writers.emplace_back([&, n](TestThread &self) {
            std::mt19937 rng(1000 + n);
            pq::Connection &c = self.session(connect(n));
            while (!self.stopping()) {
                int key = static_cast<int>(rng() % 100);
                std::string k = std::to_string(key);
                std::string v = "'node" + std::to_string(n) + "-" + std::to_string(ops[n]) + "'";
                try {
                    switch (rng() % 3) {
                        case 0:
                            c.exec("INSERT INTO hot VALUES (" + k + ", " + v +
                                   ", 0) "
                                   "ON CONFLICT (id) DO UPDATE SET v = excluded.v");
                            break;
                        case 1:
                            c.exec("UPDATE hot SET v = " + v + ", n = n + 1 WHERE id = " + k);
                            break;
                        default:
                            c.exec("DELETE FROM hot WHERE id = " + k);
                    }
                    ops[n]++;
                } catch (const pq::Error &) {
                    // A local error (e.g. a serialization hiccup) is fine here.
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 5));
            }
        });
    }
    std::this_thread::sleep_for(30s);
    for (TestThread &w : writers) EXPECT_EQ(w.stop(), "");
    EXPECT_EQ(delays.stop(), "");
    wait_for_sync_all(120);
    EXPECT_TRUE(verify_all());
    long total_ops = 0;
    for (int n = 1; n <= node_count(); n++) {
        EXPECT_GT(ops[n], 100) << "node" << n << " wrote too little to provoke conflicts";
        total_ops += ops[n];
    }
    std::cout << "[measure] randomized: " << total_ops << " writes in 30 s on 3 nodes\n";
    for (int n = 1; n <= node_count(); n++) {
        std::cout << "[measure] node" << n << " conflicts by type: "
                  << query_value(n,
                                 "SELECT coalesce(string_agg(conflict_type || '=' || c, ', ' "
                                 "ORDER BY conflict_type), 'none') FROM (SELECT conflict_type, "
                                 "count(*) c FROM pgmesh.conflict_history GROUP BY 1) s")
                  << "\n";
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM pgmesh.status WHERE connected"), "2");
    }
    // No apply worker stopped, not even for a while.
    expect_no_apply_errors();
    EXPECT_NE(query_value(1, "SELECT count(*) FROM pgmesh.conflict_history"), "0");
}

}  // namespace
}  // namespace pgmesh::test
