// Row replication across a mesh: concurrent writers, every built-in type we
// promise to carry exactly, TRUNCATE, tables without a primary key, and one
// large transaction applied with bounded memory.
#include <fstream>
#include <iostream>
#include <list>

#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

class ReplicationTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 3}; }

    // DDL is not replicated yet: every node gets the same statement.
};

TEST_F(ReplicationTest, ConcurrentWritersOnDisjointKeysConverge) {
    exec_all("CREATE TABLE items (id bigint PRIMARY KEY, origin text, qty int)");
    // Each node writes its own key range: inserts, updates, deletes, in many
    // small transactions, all nodes at once.
    std::list<TestThread> writers;
    for (int n = 1; n <= node_count(); n++) {
        writers.emplace_back([this, n](TestThread &self) {
            pq::Connection &c = self.session(connect(n));
            long base = n * 1000000L;
            for (int i = 0; i < 300; i++) {
                c.exec("INSERT INTO items VALUES (" + std::to_string(base + i) + ", 'node" +
                       std::to_string(n) + "', " + std::to_string(i) + ")");
                if (i % 3 == 0)
                    c.exec("UPDATE items SET qty = qty + 1000 WHERE id = " +
                           std::to_string(base + i));
                if (i % 10 == 0) c.exec("DELETE FROM items WHERE id = " + std::to_string(base + i));
            }
            c.exec("BEGIN");
            for (int i = 300; i < 1300; i++)
                c.exec("INSERT INTO items VALUES (" + std::to_string(base + i) + ", 'node" +
                       std::to_string(n) + "', " + std::to_string(i % 500) + ")");
            c.exec("COMMIT");
        });
    }
    for (TestThread &w : writers) EXPECT_EQ(w.join(), "");
    wait_for_sync_all();
    for (int n = 1; n <= node_count(); n++) {
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM items"), std::to_string(3 * (1300 - 30)));
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM items WHERE qty >= 1000"),
                  std::to_string(3 * (100 - 10)));
    }
    EXPECT_TRUE(verify_all());
    // Applied rows carry the origin's commit timestamp, not the local one.
    EXPECT_EQ(query_value(2,
                          "SELECT count(DISTINCT pg_xact_commit_timestamp(xmin)) "
                          "FROM items WHERE origin = 'node1' AND id >= 1000300"),
              "1");
    EXPECT_EQ(query_value(1,
                          "SELECT pg_xact_commit_timestamp(xmin)::text FROM items "
                          "WHERE id = 1000300"),
              query_value(3,
                          "SELECT pg_xact_commit_timestamp(xmin)::text FROM items "
                          "WHERE id = 1000300"));
}

TEST_F(ReplicationTest, BuiltinTypesRoundTripExactly) {
    exec_all("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')");
    exec_all("CREATE DOMAIN posint AS integer CHECK (VALUE > 0)");
    exec_all(
        "CREATE TABLE typed (id int PRIMARY KEY, b boolean, i2 smallint, i8 bigint, "
        "f4 real, f8 double precision, n numeric, n2 numeric(12,4), t text, vc varchar(10), "
        "bc char(3), by bytea, d date, ts timestamp, tz timestamptz, iv interval, tm time, "
        "u uuid, j json, jb jsonb, ia int[], ta text[], na numeric[], ea mood[], e mood, "
        "dm posint, ip inet, cidr_ cidr, mac macaddr, bits bit varying(8), pt point, "
        "rng int4range, tsv tsvector, x xml, money_ money, big text)");
    exec(1,
         "INSERT INTO typed VALUES (1, true, -32768, 9223372036854775807, 'NaN', "
         "'-Infinity', 'NaN', 12345678.1234, 'tab\there ''quoted'' \\ and ünïcödé', "
         "'short', 'ab', '\\x00ff10', '4713-01-01 BC', '294276-12-31 23:59:59.999999', "
         "'2024-02-29 12:34:56.789012+05:30', '-1 year 2 mons 3 days 04:05:06.7', "
         "'24:00:00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2.50, null]}', "
         "'{\"k\": {\"nested\": [true, false]}}', '{1,NULL,-3}', '{\"a b\",NULL,\"\"}', "
         "'{1.10,NaN}', '{happy,sad}', 'ok', 7, '192.168.0.1/24', '10.0.0.0/8', "
         "'08:00:2b:01:02:03', B'1011', '(1.5,-2)', '[1,10)', 'a fat cat', "
         "'<doc>x</doc>', '12.34', repeat('toast me ', 20000))");
    exec(2, "INSERT INTO typed (id) VALUES (2)");  // every column NULL
    exec(3,
         "INSERT INTO typed (id, f4, f8, n) VALUES (3, 1.17549435e-38, 2.2250738585072014e-308, "
         "0.000000000000000000000000000001)");
    wait_for_sync_all();
    // Compare the text of every column on every node against node 1.
    const std::string all_columns = "SELECT row(typed.*)::text FROM typed ORDER BY id";
    pq::Rows expected = query_rows(1, all_columns);
    ASSERT_EQ(expected.size(), 3u);
    for (int n = 2; n <= node_count(); n++) EXPECT_EQ(query_rows(n, all_columns), expected);

    // An UPDATE that leaves the TOASTed column alone: peers keep their copy.
    exec(2, "UPDATE typed SET t = 'changed' WHERE id = 1");
    wait_for_sync_all();
    for (int n = 1; n <= node_count(); n++) {
        EXPECT_EQ(query_value(n, "SELECT t FROM typed WHERE id = 1"), "changed");
        EXPECT_EQ(query_value(n, "SELECT length(big) FROM typed WHERE id = 1"), "180000");
        EXPECT_EQ(query_value(n, "SELECT md5(big) FROM typed WHERE id = 1"),
                  query_value(1, "SELECT md5(repeat('toast me ', 20000))"));
    }
    EXPECT_TRUE(verify_all());
}

TEST_F(ReplicationTest, UpdateOfPrimaryKeyMovesTheRow) {
    exec_all("CREATE TABLE k (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO k VALUES (1, 'one'), (2, 'two')");
    wait_for_sync(1);
    exec(2, "UPDATE k SET id = 10 WHERE id = 1");
    wait_for_sync(2);
    for (int n = 1; n <= node_count(); n++)
        EXPECT_EQ(query_value(n, "SELECT string_agg(id || '=' || v, ',' ORDER BY id) FROM k"),
                  "2=two,10=one");
}

TEST_F(ReplicationTest, TruncateReplicates) {
    exec_all("CREATE TABLE parent (id int PRIMARY KEY)");
    exec_all("CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent)");
    exec_all("CREATE TABLE other (id serial PRIMARY KEY, v int)");
    exec(1, "INSERT INTO parent SELECT generate_series(1, 50)");
    exec(1, "INSERT INTO child SELECT g, g FROM generate_series(1, 50) g");
    exec(1, "INSERT INTO other (v) SELECT generate_series(1, 10)");
    wait_for_sync(1);
    EXPECT_EQ(query_value(3, "SELECT count(*) FROM child"), "50");
    exec(2, "TRUNCATE parent CASCADE");
    exec(3, "TRUNCATE other RESTART IDENTITY");
    wait_for_sync(2);
    wait_for_sync(3);
    for (int n = 1; n <= node_count(); n++) {
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM parent"), "0");
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM child"), "0");
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM other"), "0");
        // RESTART IDENTITY too: node 1's sequence, at 10 before, starts over.
        EXPECT_EQ(query_value(n, "SELECT nextval('other_id_seq')"), "1") << "node" << n;
    }
    // Rows written after the TRUNCATE arrive as usual.
    exec(1, "INSERT INTO parent VALUES (7)");
    wait_for_sync(1);
    EXPECT_EQ(query_value(3, "SELECT count(*) FROM parent"), "1");
    EXPECT_TRUE(verify_all());
}

TEST_F(ReplicationTest, TablesWithoutPrimaryKeyTakeInsertsAndRefuseUpdateAndDelete) {
    exec_all("CREATE TABLE log (at int, msg text)");
    exec(1, "INSERT INTO log VALUES (1, 'a'), (2, 'b')");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM log"), "2");
    for (int n = 1; n <= node_count(); n++) {
        pq::Error upd =
            expect_error(n, "UPDATE log SET msg = 'x' WHERE at = 1", "55000", "has no primary key");
        EXPECT_NE(upd.hint().find("ADD PRIMARY KEY"), std::string::npos) << upd.hint();
        expect_error(n, "DELETE FROM log WHERE at = 2", "55000", "has no primary key");
    }
    // Nothing changed anywhere, and replication still flows.
    exec(3, "INSERT INTO log VALUES (3, 'c')");
    wait_for_sync(3);
    for (int n = 1; n <= node_count(); n++)
        EXPECT_EQ(query_value(n, "SELECT string_agg(msg, '' ORDER BY at) FROM log"), "abc");
    // With a primary key, the same statements work.
    exec_all("ALTER TABLE log ADD PRIMARY KEY (at)");
    exec(1, "UPDATE log SET msg = 'A' WHERE at = 1");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT msg FROM log WHERE at = 1"), "A");
}

long apply_worker_rss_kb(pid_t pid, const char *field) {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind(field, 0) == 0) return std::stol(line.substr(strlen(field)));
    return -1;
}

TEST_F(ReplicationTest, MillionRowTransactionAppliesWithBoundedMemory) {
    exec_all("CREATE TABLE big (id int PRIMARY KEY, payload text)");
    exec(1, "INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, 1000000) g");
    // Watch node 2's apply worker for node 1 while it applies.
    long peak_kb = 0;
    ASSERT_TRUE(wait_until(
        [&] {
            auto pid = query_nullable(2,
                                      "SELECT worker_pid FROM pgmesh.status "
                                      "WHERE peer_node_name = 'node1'");
            if (pid) peak_kb = std::max(peak_kb, apply_worker_rss_kb(std::stoi(*pid), "RssAnon:"));
            return query_value(2, "SELECT count(*) FROM big") == "1000000";
        },
        std::chrono::seconds(300), std::chrono::milliseconds(500)));
    wait_for_sync(1, 300);
    EXPECT_EQ(query_value(3, "SELECT count(*) FROM big"), "1000000");
    EXPECT_GT(peak_kb, 0);
    std::cout << "[measure] apply worker peak RssAnon while applying 1,000,000 rows: " << peak_kb
              << " kB\n";
    // The apply worker streams the transaction: its private (anonymous) resident memory
    // stays far below the transaction's size (~80 MB of tuples).
    EXPECT_LT(peak_kb, 64 * 1024) << "apply worker peak RssAnon " << peak_kb << " kB";
    EXPECT_TRUE(verify_all());
}

}  // namespace
}  // namespace pgmesh::test
