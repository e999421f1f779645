// The fault points (src/pg/fault.hpp) and what they let tests force: a
// failure at apply's commit and its error context, a failed join at each of
// its later steps, a resolver change racing another worker, feedback held
// back. Also pgmesh's message router and the output plugin's check of who
// streams.
#include <chrono>
#include <regex>
#include <set>
#include <string>

#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

using namespace std::chrono_literals;

class FaultPointTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 2}; }
};

TEST_F(FaultPointTest, TheSettingRefusesUnknownPointsAndActions) {
    expect_error(1, "SET pgmesh.fault_points = 'no_such_point'", "22023",
                 "invalid value for parameter");
    pq::Error bad = expect_error(1, "SET pgmesh.fault_points = 'apply_before_commit=explode'",
                                 "22023", "invalid value for parameter");
    EXPECT_NE(bad.detail().find("hold, error or sleep"), std::string::npos) << bad.detail();
    expect_error(1, "SET pgmesh.fault_points = 'apply_feedback=sleep:-1'", "22023");
    expect_error(1, "SET pgmesh.fault_points = 'apply_lock_message@'", "22023");
    expect_error(1, "SET pgmesh.fault_points = 'no_such_point@node2'", "22023");
    exec(1, "SET pgmesh.fault_points = ' apply_before_commit = sleep:10 , join_copy_data'");
    exec(1, "SET pgmesh.fault_points = 'apply_lock_message@node2=hold'");
    exec(1, "RESET pgmesh.fault_points");
    // Superusers only: it changes what pgmesh does.
    exec(1, "CREATE ROLE mallory LOGIN");
    pq::Connection mallory = connect_as(1, "mallory");
    expect_error(mallory, "SET pgmesh.fault_points = 'skip_keyless_check'", "42501");
}

// A failure at commit rolls the remote transaction back whole; once the
// fault is gone it applies exactly once. The error names the remote
// transaction in its context, not in its message.
TEST_F(FaultPointTest, ApplyCommitFailureNamesTheTransactionAndAppliesOnceLater) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(2, "CREATE TABLE t (id int PRIMARY KEY)");
    arm_workers(2, "apply_before_commit=error");
    exec(1, "INSERT INTO t VALUES (1)");
    std::string error = wait_for_last_error(2, "pgmesh fault point \"apply_before_commit\" fired");
    std::smatch where;
    ASSERT_TRUE(std::regex_search(
        error, where,
        std::regex("\nCONTEXT: processing remote transaction ([0-9]+) from node \"node1\" with "
                   "commit LSN ([0-9A-F]+/[0-9A-F]+)$")))
        << error;
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "0");
    // The history keeps the message as PostgreSQL raised it; the transaction
    // is in its own columns.
    ASSERT_TRUE(wait_until(
        [&] { return query_value(2, "SELECT count(*) FROM pgmesh.conflict_history") == "1"; }));
    EXPECT_EQ(query_value(2,
                          "SELECT message || '|' || remote_xid || '|' || remote_commit_lsn "
                          "FROM pgmesh.conflict_history"),
              "pgmesh fault point \"apply_before_commit\" fired|" + where[1].str() + "|" +
                  where[2].str());
    EXPECT_NE(server_log(2).find("CONTEXT:  processing remote transaction " + where[1].str()),
              std::string::npos);
    disarm_workers(2);
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "1");
    verify_all();
}

// An error PostgreSQL raises inside a change (here a trigger's) carries its
// own context and, after it, the change being applied.
TEST_F(FaultPointTest, AnErrorInsideAChangeNamesTheChangeAndTable) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(2, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(2,
         "CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql AS "
         "$$BEGIN RAISE EXCEPTION 'refused by trigger'; END$$");
    exec(2,
         "CREATE TRIGGER refuse BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION public.refuse()");
    exec(2, "ALTER TABLE t ENABLE ALWAYS TRIGGER refuse");
    exec(1, "INSERT INTO t VALUES (1)");
    std::string error = wait_for_last_error(2, "refused by trigger");
    EXPECT_TRUE(std::regex_search(
        error,
        std::regex("^refused by trigger\nCONTEXT: PL/pgSQL function public\\.refuse\\(\\) line 1 "
                   "at RAISE\nprocessing remote transaction [0-9]+ from node \"node1\" "
                   "with commit LSN [0-9A-F]+/[0-9A-F]+, INSERT on table \"public.t\"$")))
        << error;
    // The history keeps PostgreSQL's message alone.
    EXPECT_EQ(query_value(2, "SELECT message FROM pgmesh.conflict_history"), "refused by trigger");
    exec(2, "ALTER TABLE t DISABLE TRIGGER refuse");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "1");
}

// sleep:<ms> delays the commit by at least that long (a lower bound, which
// no scheduler can break).
TEST_F(FaultPointTest, SleepDelaysApplyCommit) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(2, "CREATE TABLE t (id int PRIMARY KEY)");
    arm_workers(2, "apply_before_commit=sleep:2000");
    auto start = std::chrono::steady_clock::now();
    exec(1, "INSERT INTO t VALUES (1)");
    ASSERT_TRUE(wait_until([&] { return query_value(2, "SELECT count(*) FROM t") == "1"; }));
    EXPECT_GE(std::chrono::steady_clock::now() - start, 2000ms);
    EXPECT_NE(server_log(2).find("pgmesh fault point \"apply_before_commit\" sleeps 2000 ms"),
              std::string::npos);
}

// wait_for_sync depends on the peers' feedback: held back, the slot stays
// behind even after the change is applied.
TEST_F(FaultPointTest, HeldFeedbackKeepsWaitForSyncFalse) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(2, "CREATE TABLE t (id int PRIMARY KEY)");
    pq::Connection holder = connect(2);
    holder.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault apply_feedback'))");
    arm_workers(2, "apply_feedback");
    ASSERT_TRUE(wait_until([&] { return advisory_waiters(2) == 1; }));
    exec(1, "INSERT INTO t VALUES (1)");
    EXPECT_EQ(query_value(1, "SELECT pgmesh.wait_for_sync(2)"), "f");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "0");  // the worker holds
    holder.exec("SELECT pg_advisory_unlock(hashtext('pgmesh fault apply_feedback'))");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "1");
}

// Every role may call pg_logical_emit_message, also with a "pgmesh" prefix.
// Such a message travels (the output plugin cannot tell who wrote it), but
// no subsystem takes its prefix: it is not acted on and stops nothing.
TEST_F(FaultPointTest, AMessageWithAPrefixNoSubsystemTakesIsNotActedOn) {
    exec(1, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(2, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(1, "CREATE ROLE app LOGIN; GRANT INSERT ON t TO app");
    pq::Connection app = connect_as(1, "app");
    app.exec(
        "BEGIN; INSERT INTO t VALUES (1); "
        "SELECT pg_logical_emit_message(true, 'pgmesh_from_the_future', 'x'); COMMIT");
    app.exec("SELECT pg_logical_emit_message(false, 'pgmesh_ddl', 'DROP TABLE t')");
    app.exec(
        "BEGIN; INSERT INTO t VALUES (2); "
        "SELECT pg_logical_emit_message(true, 'app_note', 'stays here'); COMMIT");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"), "1,2");
    EXPECT_EQ(query_value(2,
                          "SELECT count(*) FROM pgmesh.status WHERE last_error IS NULL "
                          "AND connected"),
              "1");
}

// The output plugin knows which node streams: only from that node's slot,
// and never once it parted.
TEST_F(FaultPointTest, TheOutputPluginRefusesAStreamThatIsNotTheSubscribers) {
    std::string node1 = query_value(1, "SELECT node_id FROM pgmesh.local_node");
    std::string node2 = query_value(2, "SELECT node_id FROM pgmesh.local_node");
    auto peek = [&](std::string_view slot, std::string_view subscriber) {
        return "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('" + std::string(slot) +
               "', NULL, NULL, 'proto_version', '2', 'subscriber_node_id', '" +
               std::string(subscriber) + "')";
    };
    exec(1, "SELECT pg_create_logical_replication_slot('peek', 'pgmesh')");
    expect_error(1, peek("peek", "12x"), "22023", "subscriber_node_id");
    expect_error(1, peek("peek", "0"), "22023", "subscriber_node_id");
    pq::Error wrong = expect_error(1, peek("peek", node2), "55000",
                                   "replication slot \"peek\" does not belong to node " + node2);
    EXPECT_NE(wrong.detail().find("streams from slot \"pgmesh_"), std::string::npos);
    // A node that parted (its row says so) is refused on its own slot.
    std::string gone = "4242";
    std::string slot = query_value(1, "SELECT format('pgmesh_%s_%s', lpad(to_hex(" + node1 +
                                          "::bigint), 16, '0'), "
                                          "lpad(to_hex(" +
                                          gone + "::bigint), 16, '0'))");
    exec(1, "SELECT pg_create_logical_replication_slot('" + slot + "', 'pgmesh')");
    exec(1,
         "INSERT INTO pgmesh.node VALUES (" + gone + ", 'gone', 'dbname=x', 'ready', now(), 1000)");
    exec(1, peek(slot, gone));  // still a member: it may stream
    // Seen parted by the peek's own transaction: once that commits, the
    // manager drops the slot (part.cpp).
    exec(1, "BEGIN");
    exec(1, "UPDATE pgmesh.node SET state = 'parted' WHERE node_id = " + gone);
    expect_error(1, peek(slot, gone), "55000", "node \"gone\" has parted from the group");
    exec(1, "ROLLBACK");
    exec(1, "UPDATE pgmesh.node SET state = 'parted' WHERE node_id = " + gone);
    EXPECT_TRUE(wait_until([&] {
        return query_value(1, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" +
                                  slot + "'") == "0";
    }));
    exec(1, "SELECT pg_drop_replication_slot('peek')");
}

class ThreeNodeFaultPointTest : public FaultPointTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 3}; }
};

// A resolver change is read by the other apply workers only once it is
// committed. Forced order: node2 applies node1's resolver change and holds
// before its commit; meanwhile node2's worker for node3 starts a transaction
// and reads the resolvers (still the old ones). Once both commit, that
// worker must read them again: the version moves at commit, not before.
TEST_F(ThreeNodeFaultPointTest, ResolverChangesAreReadAgainAfterTheirCommit) {
    for (int n = 1; n <= 3; n++) exec(n, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(3, "SELECT pgmesh.pause_apply()");  // node3 never sees node2's rows
    exec(2, "INSERT INTO t VALUES (1, 'node2'), (2, 'node2')");
    pq::Connection holder = connect(2);
    holder.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault apply_before_commit'))");
    arm_workers(2, "apply_before_commit");
    exec(1, "SELECT pgmesh.set_conflict_resolver('t', 'insert_exists', 'keep_local')");
    ASSERT_TRUE(wait_until([&] { return advisory_waiters(2) == 1; }));
    // Not committed on node2 yet: node3's row wins by the default resolver.
    exec(3, "INSERT INTO t VALUES (1, 'node3')");
    ASSERT_TRUE(wait_until([&] { return advisory_waiters(2) == 2; }));
    holder.exec("SELECT pg_advisory_unlock(hashtext('pgmesh fault apply_before_commit'))");
    auto insert_exists = [&] {
        return query_value(2,
                           "SELECT coalesce(string_agg(resolution, ',' ORDER BY id), '') FROM "
                           "pgmesh.conflict_history WHERE conflict_type = 'insert_exists'");
    };
    ASSERT_TRUE(wait_until([&] {
        return insert_exists() == "apply_remote" &&
               query_value(2, "SELECT count(*) FROM pgmesh.conflict_resolver") == "1";
    })) << insert_exists();
    EXPECT_EQ(query_value(2, "SELECT v FROM t WHERE id = 1"), "node3");
    // Committed now: the same worker resolves by the new resolver.
    exec(3, "INSERT INTO t VALUES (2, 'node3')");
    ASSERT_TRUE(wait_until([&] { return insert_exists() != "apply_remote"; }));
    EXPECT_EQ(insert_exists(), "apply_remote,keep_local");
    EXPECT_EQ(query_value(2, "SELECT v FROM t WHERE id = 2"), "node2");
    exec(2, "ALTER DATABASE pgmesh RESET pgmesh.fault_points");
    exec(3, "SELECT pgmesh.resume_apply()");
}

class JoinFaultTest : public FaultPointTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 3, .form_mesh = false};
    }

    std::string join_sql(int node, std::string_view dbname) {
        return "SELECT pgmesh.join_group('node" + std::to_string(node) + "', '" +
               dsn(node, dbname) + "', '" + dsn(1) + "')";
    }
    std::string slots(int node) {
        return query_value(
            node,
            "SELECT coalesce(string_agg(slot_name, ',' ORDER BY slot_name), '') "
            "FROM pg_replication_slots WHERE slot_name NOT LIKE 'pgmesh\\_relay\\_%'");
    }
};

// A join that fails at a step undoes what it did: its slots on every node,
// its row in the target's catalog and its writes here. Before the copy the
// database is untouched and can join again; after it, the copied schema
// stays (pg_restore committed it), so those attempts join fresh databases.
TEST_F(JoinFaultTest, AFailedJoinLeavesNoSlotsAndNoCatalogRows) {
    for (int n = 1; n <= 3; n++) exec(n, "CREATE EXTENSION pgmesh");
    exec(1, "SELECT pgmesh.create_group('node1', '" + dsn(1) + "')");
    exec(2, join_sql(2, "pgmesh"));
    EXPECT_EQ(query_value(2, "SELECT pgmesh.wait_for_ready(60)"), "t");
    for (int n = 1; n <= 2; n++) exec(n, "CREATE TABLE t (id int PRIMARY KEY)");
    exec(1, "INSERT INTO t VALUES (1)");
    wait_for_sync(1);
    const std::string slots1 = slots(1);
    const std::string slots2 = slots(2);
    ASSERT_NE(slots1, "");
    auto expect_nothing_left = [&](const std::string &point) {
        EXPECT_EQ(slots(1), slots1) << point;
        EXPECT_EQ(slots(2), slots2) << point;
        EXPECT_EQ(slots(3), "") << point;
        EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.node"), "2") << point;
        EXPECT_EQ(query_value(3, "SELECT count(*) FROM pg_replication_origin"), "0") << point;
    };
    for (std::string point : {"join_announce_joining", "join_create_remote_slots",
                              "join_read_snapshot", "join_copy_data"}) {
        exec(3, "SET pgmesh.fault_points = '" + point + "=error'");
        expect_error(3, join_sql(3, "pgmesh"), "XX000",
                     "pgmesh fault point \"" + point + "\" fired");
        expect_nothing_left(point);
        EXPECT_EQ(query_value(3, "SELECT count(*) FROM pg_class WHERE relname = 't'"), "0");
    }
    int attempt = 0;
    for (std::string point :
         {"join_create_local_slots", "join_write_catalog", "join_announce_ready"}) {
        std::string db = "attempt" + std::to_string(++attempt);
        exec(3, "CREATE DATABASE " + db);
        pq::Connection joiner = connect(3, db);
        joiner.exec("CREATE EXTENSION pgmesh");
        joiner.exec("SET pgmesh.fault_points = '" + point + "=error'");
        expect_error(joiner, join_sql(3, db), "XX000",
                     "pgmesh fault point \"" + point + "\" fired");
        expect_nothing_left(point);
        EXPECT_EQ(joiner.query_value("SELECT count(*) FROM pgmesh.node"), "0") << point;
        EXPECT_EQ(joiner.query_value("SELECT count(*) FROM pgmesh.local_node"), "0") << point;
        EXPECT_EQ(joiner.query_value("SELECT count(*) FROM t"), "1") << point;  // the copy
    }
    // The untouched database joins now.
    exec(3, "RESET pgmesh.fault_points");
    exec(3, join_sql(3, "pgmesh"));
    EXPECT_EQ(query_value(3, "SELECT pgmesh.wait_for_ready(60)"), "t");
    exec(1, "INSERT INTO t VALUES (2)");
    exec(3, "INSERT INTO t VALUES (3)");
    wait_for_sync(1);
    wait_for_sync(3);
    for (int n = 1; n <= 3; n++)
        EXPECT_EQ(query_value(n, "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"), "1,2,3");
}

}  // namespace
}  // namespace pgmesh::test
