// Convergence under any delivery order (docs/conflicts.md): every change on
// a key, deletes included, carries (commit time, origin node), and every
// node keeps the greatest. Each test forces one arrival order with the fault
// point apply_begin@<origin>, which holds one origin's stream on one node
// while the others flow, then checks the rows on every node, the tombstones
// and the conflict history.
#include <thread>

#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

using namespace std::chrono_literals;

// apply_begin armed in every server's configuration: it costs an advisory
// lock round trip per remote transaction, and spares each hold a restart of
// the apply workers.
MeshOptions armed_mesh(bool form_mesh) {
    return MeshOptions{
        .nodes = 3, .form_mesh = form_mesh, .settings = {{"pgmesh.fault_points", "apply_begin"}}};
}

class ConvergenceTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return armed_mesh(true); }

    std::string rows(int node, const std::string &table) {
        return query_value(node, "SELECT coalesce(string_agg(row(" + table +
                                     ".*)::text, ',' ORDER BY id), '') FROM " + table);
    }
    void expect_rows_everywhere(const std::string &table, const std::string &expected) {
        for (int n = 1; n <= node_count(); n++)
            EXPECT_EQ(rows(n, table), expected) << table << " on node" << n;
    }
    bool rows_are(int node, const std::string &table, const std::string &expected) {
        return rows(node, table) == expected;
    }
    // "type:resolution" of the node's history for one table, oldest first.
    std::string history(int node, const std::string &table) {
        return query_value(node,
                           "SELECT coalesce(string_agg(conflict_type || ':' || resolution, ',' "
                           "ORDER BY id), '') FROM pgmesh.conflict_history WHERE table_name = '" +
                               table + "'");
    }
    int tombstones(int node) {
        return std::stoi(query_value(node, "SELECT count(*) FROM pgmesh.tombstone"));
    }
    // Commit timestamps must differ between the competing writes.
    void tick() { std::this_thread::sleep_for(20ms); }

    // Holds the stream from node `origin` on node `at`: its apply worker
    // waits at the next remote transaction's BEGIN until release(). Every
    // worker starts with apply_begin armed (see cluster_options), and waits
    // there while the lock of its peer is held.
    void hold(int at, int origin) {
        pq::Connection gate = connect(at);
        gate.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault apply_begin@node" +
                  std::to_string(origin) + "'))");
        gates_.emplace(at, std::move(gate));
    }
    void release() {
        for (auto &[node, gate] : gates_) gate.exec("SELECT pg_advisory_unlock_all()");
        gates_.clear();
    }

private:
    std::multimap<int, pq::Connection> gates_;
};

// Node3 receives node2's DELETE of a row before node1's INSERT of it. The
// delete leaves a tombstone on node3, and the older insert loses to it.
TEST_F(ConvergenceTest, DeleteArrivesBeforeTheInsert) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    hold(3, 1);
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    ASSERT_TRUE(wait_until([&] { return rows_are(2, "t", "(1,a)"); }));
    exec(2, "DELETE FROM t WHERE id = 1");
    EXPECT_EQ(tombstones(2), 1);  // written by the deleting transaction
    ASSERT_TRUE(wait_until([&] { return rows_are(1, "t", ""); }));
    ASSERT_TRUE(wait_until([&] { return tombstones(3) == 1; }));  // before the row came
    release();
    wait_for_sync_all();
    expect_rows_everywhere("t", "");
    EXPECT_EQ(history(3, "t"), "delete_missing:apply_remote,insert_deleted:keep_local");
    for (int n = 1; n <= node_count(); n++) EXPECT_EQ(tombstones(n), 1) << "node" << n;
    expect_no_apply_errors();
}

// Node1 deletes key 1 and inserts it again while node2, which saw neither,
// updates the old row: in one table the update is the newest change, in the
// other the re-insert is. Node3 receives node2's stream last.
TEST_F(ConvergenceTest, ReinsertRacingAnUpdateOfTheOldRow) {
    exec_all("CREATE TABLE newest_update (id int PRIMARY KEY, v text)");
    exec_all("CREATE TABLE newest_reinsert (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO newest_update VALUES (1, 'old')");
    exec(1, "INSERT INTO newest_reinsert VALUES (1, 'old')");
    wait_for_sync_all();
    hold(2, 1);
    hold(3, 2);
    exec(1, "DELETE FROM newest_update WHERE id = 1");
    tick();
    exec(1, "INSERT INTO newest_update VALUES (1, 'reinserted')");
    tick();
    exec(2, "UPDATE newest_update SET v = 'updated' WHERE id = 1");
    tick();
    exec(2, "UPDATE newest_reinsert SET v = 'updated' WHERE id = 1");
    tick();
    exec(1, "DELETE FROM newest_reinsert WHERE id = 1");
    tick();
    exec(1, "INSERT INTO newest_reinsert VALUES (1, 'reinserted')");
    release();
    wait_for_sync_all();
    expect_rows_everywhere("newest_update", "(1,updated)");
    expect_rows_everywhere("newest_reinsert", "(1,reinserted)");
    // Node2 keeps its newer row against node1's older delete and insert.
    EXPECT_EQ(history(2, "newest_update"),
              "delete_origin_differs:keep_local,insert_exists:keep_local");
    expect_no_apply_errors();
}

// A delete and an update of the same row, each node not having seen the
// other's change: the newer one wins everywhere, in both orders. An update
// newer than the delete brings the row back where it was deleted.
TEST_F(ConvergenceTest, DeleteRacingAnUpdateInBothOrders) {
    exec_all("CREATE TABLE delete_newer (id int PRIMARY KEY, v text)");
    exec_all("CREATE TABLE update_newer (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO delete_newer VALUES (1, 'old'), (2, 'kept')");
    exec(1, "INSERT INTO update_newer VALUES (1, 'old'), (2, 'kept')");
    wait_for_sync_all();
    hold(1, 2);
    hold(2, 1);
    exec(1, "UPDATE delete_newer SET v = 'updated' WHERE id = 1");
    tick();
    exec(2, "DELETE FROM delete_newer WHERE id = 1");
    exec(2, "DELETE FROM update_newer WHERE id = 1");
    tick();
    exec(1, "UPDATE update_newer SET v = 'updated' WHERE id = 1");
    release();
    wait_for_sync_all();
    expect_rows_everywhere("delete_newer", "(2,kept)");
    expect_rows_everywhere("update_newer", "(1,updated),(2,kept)");
    EXPECT_EQ(history(1, "delete_newer"), "delete_origin_differs:apply_remote");
    EXPECT_EQ(history(2, "delete_newer"), "update_deleted:keep_local");
    EXPECT_EQ(history(1, "update_newer"), "delete_origin_differs:keep_local");
    EXPECT_EQ(history(2, "update_newer"), "update_deleted:apply_remote");
    expect_no_apply_errors();
}

// Two nodes delete the same row at once: every node ends with no row and a
// tombstone of the same (the newer) version.
TEST_F(ConvergenceTest, TwoDeletesLeaveTheSameTombstoneEverywhere) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    wait_for_sync_all();
    hold(1, 2);
    hold(2, 1);
    exec(1, "DELETE FROM t WHERE id = 1");
    tick();
    exec(2, "DELETE FROM t WHERE id = 1");
    release();
    wait_for_sync_all();
    expect_rows_everywhere("t", "");
    std::string version = "SELECT pg_xact_commit_timestamp(xmin)::text FROM pgmesh.tombstone";
    std::string newest = query_value(2, version);
    for (int n = 1; n <= node_count(); n++)
        EXPECT_EQ(query_value(n, version), newest) << "node" << n;
    EXPECT_EQ(history(1, "t"), "delete_missing:apply_remote");
    EXPECT_EQ(history(2, "t"), "delete_missing:keep_local");
    expect_no_apply_errors();
}

// Node1 truncates the table while node2, which has not seen the TRUNCATE,
// inserts one row before it and one after it. The TRUNCATE deletes what is
// older than it, on every node; the newer row stays everywhere.
TEST_F(ConvergenceTest, TruncateRacingInserts) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'a'), (2, 'b')");
    wait_for_sync_all();
    hold(1, 2);
    hold(2, 1);
    hold(3, 1);
    exec(2, "INSERT INTO t VALUES (3, 'older')");
    tick();
    exec(1, "TRUNCATE t");
    tick();
    exec(2, "INSERT INTO t VALUES (4, 'newer')");
    release();
    wait_for_sync_all();
    expect_rows_everywhere("t", "(4,newer)");
    EXPECT_EQ(history(1, "t"), "insert_deleted:keep_local,insert_deleted:apply_remote");
    EXPECT_EQ(history(2, "t"), "delete_origin_differs:keep_local");
    expect_no_apply_errors();
    // With no newer row, a replicated TRUNCATE empties the table whole.
    exec(2, "TRUNCATE t");
    wait_for_sync_all();
    expect_rows_everywhere("t", "");
}

// An UPDATE that leaves a TOASTed value unchanged and is newer than a
// delete re-creates the row where it was deleted: under REPLICA IDENTITY
// FULL the origin sends the whole row. Without it the value is not in the
// stream, and apply stops with an error that says so rather than guess it.
TEST_F(ConvergenceTest, NewerUpdateLeavingAToastedValueUnchanged) {
    for (const char *table : {"full_identity", "default_identity"}) {
        exec_all(std::string("CREATE TABLE ") + table + " (id int PRIMARY KEY, doc text, n int)");
        exec(1, std::string("INSERT INTO ") + table +
                    " SELECT 1, string_agg(md5(i::text), ''), 0 FROM generate_series(1, 400) i");
    }
    exec_all("ALTER TABLE full_identity REPLICA IDENTITY FULL");
    wait_for_sync_all();
    hold(1, 2);
    hold(2, 1);
    exec(2, "DELETE FROM full_identity");
    exec(2, "DELETE FROM default_identity");
    tick();
    exec(1, "UPDATE full_identity SET n = 1");
    exec(1, "UPDATE default_identity SET n = 1");
    release();
    std::string expected = "1|12800|1";
    std::string row = "SELECT id || '|' || length(doc) || '|' || n FROM full_identity";
    ASSERT_TRUE(wait_until([&] { return query_nullable(2, row) == expected; }));
    EXPECT_EQ(query_value(1, row), expected);
    EXPECT_EQ(query_value(3, row), expected);
    std::string error = wait_for_last_error(2, "cannot re-create a deleted row");
    EXPECT_NE(error.find("default_identity"), std::string::npos) << error;
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM default_identity"), "0");
}

// A tombstone is collected once every peer has applied everything older
// than it (each node's clock ticks say how far), and no sooner: a node that
// is down holds collection back, and pgmesh.status says which one.
TEST_F(ConvergenceTest, TombstonesAreCollectedOnceEveryPeerHasCaughtUp) {
    exec(1, "ALTER SYSTEM SET pgmesh.max_clock_skew = 0");
    exec(1, "SELECT pg_reload_conf()");
    exec_all("CREATE TABLE t (id int PRIMARY KEY)");
    exec(1, "INSERT INTO t VALUES (1), (2)");
    wait_for_sync_all();
    exec(1, "DELETE FROM t WHERE id = 1");
    ASSERT_EQ(tombstones(1), 1);
    std::string peers_past_it =
        "SELECT count(*) FROM pgmesh.status WHERE caught_up_to > (SELECT "
        "max(pg_xact_commit_timestamp(xmin)) FROM pgmesh.tombstone)";
    ASSERT_TRUE(wait_until([&] { return query_value(1, peers_past_it) == "2"; }, 30s));
    EXPECT_EQ(query_value(1, "SELECT pgmesh.collect_tombstones()"), "1");
    EXPECT_EQ(tombstones(1), 0);

    stop(3);
    exec(1, "DELETE FROM t WHERE id = 2");
    std::string held_back_by =
        "SELECT coalesce(string_agg(peer_node_name, ','), '') FROM pgmesh.status WHERE "
        "holds_back_tombstones";
    ASSERT_TRUE(wait_until([&] { return query_value(1, held_back_by) == "node3"; }, 40s))
        << query_value(1, held_back_by);
    EXPECT_EQ(query_value(1, "SELECT pgmesh.collect_tombstones()"), "0");
    EXPECT_EQ(tombstones(1), 1);
    start(3);
    ASSERT_TRUE(wait_until([&] { return query_value(1, peers_past_it) == "2"; }, 60s));
    EXPECT_EQ(query_value(1, held_back_by), "");
    EXPECT_EQ(query_value(1, "SELECT pgmesh.collect_tombstones()"), "1");
    wait_for_sync_all();
    expect_rows_everywhere("t", "");

    // A DELETE that rewrites a tombstone the collection is removing waits
    // for the collection to commit, then writes a new one.
    exec(1, "INSERT INTO t VALUES (3)");
    exec(1, "DELETE FROM t WHERE id = 3");
    exec(1, "INSERT INTO t VALUES (3)");
    ASSERT_TRUE(wait_until([&] { return query_value(1, peers_past_it) == "2"; }, 30s));
    pq::Connection collector = connect(1);
    collector.exec("BEGIN");
    EXPECT_EQ(collector.query_value("SELECT pgmesh.collect_tombstones()").value_or(""), "1");
    TestThread deleter(
        [&](TestThread &self) { self.session(connect(1)).exec("DELETE FROM t WHERE id = 3"); });
    ASSERT_TRUE(wait_until(
        [&] { return query_value(1, "SELECT count(*) FROM pg_locks WHERE NOT granted") != "0"; },
        10s));
    collector.exec("COMMIT");
    EXPECT_EQ(deleter.join(), "");
    EXPECT_EQ(tombstones(1), 1);
}

// Tables with hostile names get their triggers and tombstones like any
// other; a table an ordinary role creates and deletes from too (the trigger
// records what the role itself may not write). Ordinary roles read no
// tombstones and call neither the collection nor the join's copy of
// versions.
TEST_F(ConvergenceTest, HostileNamesAndOrdinaryRoles) {
    const std::string hostile = "\"we\"\"ird; \\name\"";
    exec_all("CREATE TABLE " + hostile + " (id text PRIMARY KEY)");
    exec_all("CREATE ROLE app LOGIN");
    exec_all("GRANT CREATE ON SCHEMA public TO app");
    for (int n = 1; n <= node_count(); n++) {
        pq::Connection as_app = connect_as(n, "app");
        as_app.exec("CREATE TABLE mine (id int PRIMARY KEY)");
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM pg_trigger WHERE tgrelid IN ('" + hostile +
                                     "'::regclass, 'mine'::regclass) AND tgname IN "
                                     "('pgmesh_tombstone', 'pgmesh_truncate')"),
                  "4")
            << "node" << n;
    }
    exec(1, "INSERT INTO " + hostile + " VALUES ('it''s; a \\key')");
    pq::Connection app = connect_as(1, "app");
    app.exec("INSERT INTO mine VALUES (1)");
    wait_for_sync_all();
    exec(1, "DELETE FROM " + hostile);
    app.exec("DELETE FROM mine");
    wait_for_sync_all();
    std::string keys =
        "SELECT string_agg(relid::regclass || ' ' || key::text, ', ' ORDER BY relid) FROM "
        "pgmesh.tombstone";
    for (int n = 1; n <= node_count(); n++)
        EXPECT_EQ(query_value(n, keys), hostile + " {\"it's; a \\\\key\"}, mine {1}")
            << "node" << n;
    expect_error(app, "SELECT * FROM pgmesh.tombstone", "42501");
    expect_error(app, "DELETE FROM pgmesh.tombstone", "42501");
    expect_error(app, "SELECT * FROM pgmesh.row_version", "42501");
    expect_error(app, "SELECT pgmesh.collect_tombstones()", "42501");
    expect_error(app, "SELECT * FROM pgmesh.versions_for_copy()", "42501");
    expect_error(app, "SELECT pgmesh.record_tombstone()", "39P01");
    expect_no_apply_errors();
}

class JoinConvergenceTest : public ConvergenceTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return armed_mesh(false); }
};

// Node3 joins by copying node1. The copy keeps every row's version (commit
// time and origin node) and every tombstone with its version, as node1 has
// them: pgmesh.versions_for_copy() on node1 lists exactly what node3
// recorded. A copied row then meets later changes as the row it was copied
// from: node2's update of a row node1 wrote last is an origin conflict on
// node3 as on node1, not a change to a row of no node.
TEST_F(JoinConvergenceTest, ACopiedRowKeepsItsVersion) {
    for (int n = 1; n <= 3; n++) cluster().create_extension(n);
    cluster().create_group(1);
    cluster().join_group(2, 1);
    for (int n = 1; n <= 2; n++) exec(n, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'by node1'), (2, 'by node1'), (3, 'by node1')");
    wait_for_sync(1);
    exec(2, "UPDATE t SET v = 'by node2' WHERE id = 2");
    exec(2, "DELETE FROM t WHERE id = 3");
    wait_for_sync(2);
    wait_for_sync(1);
    std::string at_node1 = query_value(
        1,
        "SELECT string_agg(format('%s %s %s %s %s', table_name, key, deleted, commit_time, "
        "node_id), ', ' ORDER BY deleted, key) FROM pgmesh.versions_for_copy()");
    cluster().join_group(3, 1);
    std::string copied = query_value(
        3,
        "SELECT string_agg(format('%s %s %s %s %s', c.relname, v.key, v.deleted, "
        "v.commit_time, v.node_id), ', ' ORDER BY v.deleted, v.key) FROM (SELECT relid, key, "
        "false AS deleted, commit_time, node_id FROM pgmesh.row_version UNION ALL SELECT "
        "relid, key, true, commit_time, node_id FROM pgmesh.tombstone) v JOIN pg_class c ON "
        "c.oid = v.relid");
    EXPECT_EQ(copied, at_node1);
    EXPECT_NE(at_node1.find("{3} t"), std::string::npos) << at_node1;  // the tombstone
    exec(2, "UPDATE t SET v = 'later by node2' WHERE id = 1");
    wait_for_sync_all();
    expect_rows_everywhere("t", "(1,\"later by node2\"),(2,\"by node2\")");
    EXPECT_EQ(history(3, "t"), "update_origin_differs:apply_remote");
    expect_no_apply_errors();
}

}  // namespace
}  // namespace pgmesh::test
