// pgmesh.snowflake_nextval and pgmesh.use_snowflake (docs/ids.md): ids
// handed out on every node at once never meet, go up in every session and
// after a crash, and a bigserial column switched to them replicates without
// insert_exists conflicts; hostile names, missing rights and unsuitable
// columns and databases get their errors.
#include <algorithm>
#include <list>
#include <set>

#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

using namespace std::chrono_literals;

// The ids' layout (src/core/snowflake.hpp), in SQL.
constexpr int64_t kEpochUnixMs = 1735689600000;

std::string node_bits(const std::string &id) {
    return "((" + id + " >> 12) & 1023)";
}

class SnowflakeTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 3}; }

    std::string node_number(int node) {
        return query_value(node, "SELECT node_number FROM pgmesh.nodes WHERE is_local");
    }
};

// 1,000,000 ids from nine sessions on three nodes at once, in batches, each
// session's ids stored with their order (in unlogged tables, which never
// replicate). Then a node crashes after handing out ids ahead of its clock.
TEST_F(SnowflakeTest, IdsNeverMeetAndGoUpInEverySessionAndAfterACrash) {
    exec_all("CREATE SEQUENCE ids_seq");
    exec_all("CREATE UNLOGGED TABLE handed_out (id bigint PRIMARY KEY, session int, ord int)");
    constexpr int kTotal = 1000000;
    constexpr int kSessionsPerNode = 3;
    constexpr int kBatches = 4;
    const int sessions = node_count() * kSessionsPerNode;
    const int64_t parts = int64_t{sessions} * kBatches;
    std::list<TestThread> threads;
    for (int s = 0; s < sessions; s++) {
        int node = s / kSessionsPerNode + 1;
        threads.emplace_back([this, s, node, parts](TestThread &self) {
            pq::Connection &c = self.session(connect(node));
            for (int b = 0; b < kBatches; b++) {
                int64_t part = int64_t{s} * kBatches + b;
                int64_t size = kTotal * (part + 1) / parts - kTotal * part / parts;
                c.exec("INSERT INTO handed_out SELECT pgmesh.snowflake_nextval('ids_seq'), " +
                       std::to_string(s) + ", " + std::to_string(b * 1000000) +
                       " + g FROM generate_series(1, " + std::to_string(size) + ") g");
            }
        });
    }
    for (TestThread &t : threads) ASSERT_EQ(t.join(), "");

    std::vector<int64_t> all;
    std::set<std::string> numbers;
    for (int n = 1; n <= node_count(); n++) {
        std::string number = node_number(n);
        numbers.insert(number);
        // Every id carries its node's number, and a time close to now.
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM handed_out WHERE " + node_bits("id") +
                                     " <> " + number),
                  "0");
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM handed_out WHERE abs((id >> 22) + " +
                                     std::to_string(kEpochUnixMs) +
                                     " - extract(epoch FROM now()) * 1000) > 120000"),
                  "0");
        // Strictly increasing within each session, across its transactions.
        EXPECT_EQ(query_value(n,
                              "SELECT count(*) FROM (SELECT id <= lag(id) OVER "
                              "(PARTITION BY session ORDER BY ord) AS down FROM handed_out) x "
                              "WHERE down"),
                  "0");
        for (const pq::Row &row : query_rows(n, "SELECT id FROM handed_out"))
            all.push_back(std::stoll(row.at(0).value()));
    }
    EXPECT_EQ(numbers.size(), static_cast<size_t>(node_count()));
    ASSERT_EQ(all.size(), static_cast<size_t>(kTotal));
    std::sort(all.begin(), all.end());
    auto duplicate = std::adjacent_find(all.begin(), all.end());
    EXPECT_EQ(duplicate, all.end()) << "id " << *duplicate << " was handed out twice";
    EXPECT_GT(all.front(), 0);

    // Node 2 hands out ids ten minutes ahead of its clock (as a node does
    // after its clock stepped back, or whose sequence came from a peer that
    // borrowed ahead), then crashes. Only the reservation persisted in the
    // sequence keeps it from handing them out again once it is back.
    std::string number = node_number(2);
    exec(2, "CREATE SEQUENCE ahead_seq");
    // SQL's << and | share one precedence: every step in parentheses.
    std::string planted = query_value(
        2,
        "SELECT setval('ahead_seq', ((((extract(epoch FROM now() + interval '10 min') * "
        "1000)::bigint - " +
            std::to_string(kEpochUnixMs) + ") << 22) | (" + number + " << 12)))");
    EXPECT_EQ(query_value(2, "SELECT " + node_bits(planted)), number);
    std::string before_crash = query_value(
        2, "SELECT max(pgmesh.snowflake_nextval('ahead_seq')) FROM generate_series(1, 20000)");
    EXPECT_GT(std::stoll(before_crash), std::stoll(planted));
    std::string ids_before = query_value(2, "SELECT max(id) FROM handed_out");
    kill9(2);
    start(2);
    EXPECT_EQ(query_value(2, "SELECT min(pgmesh.snowflake_nextval('ahead_seq')) > " + before_crash +
                                 " FROM generate_series(1, 100)"),
              "t");
    EXPECT_EQ(query_value(2, "SELECT pgmesh.snowflake_nextval('ids_seq') > " + ids_before), "t");
    EXPECT_EQ(query_value(2, "SELECT " + node_bits("pgmesh.snowflake_nextval('ahead_seq')")),
              number);
    // A clean restart keeps them going up as well.
    restart(2);
    EXPECT_EQ(query_value(2, "SELECT pgmesh.snowflake_nextval('ahead_seq') > " + before_crash),
              "t");
}

// A bigserial column with hostile schema, table and column names switched to
// snowflake ids by pgmesh.use_snowflake under replicated DDL: the ALTER TABLE
// it builds runs on every node, and rows inserted on every node at once
// replicate without an insert_exists conflict.
TEST_F(SnowflakeTest, UseSnowflakeColumnsReplicateWithoutConflicts) {
    const std::string schema = R"("we""ird sch'ema; x")";
    const std::string table = schema + "." + R"("it's; \ ta""ble")";
    const std::string column = R"(co'l; \ "umn)";
    const std::string quoted_column = R"("co'l; \ ""umn")";
    pq::Connection &c = conn(1);
    c.exec("SET pgmesh.replicate_ddl = on");
    c.exec("BEGIN; SET LOCAL pgmesh.permit_ddl_locking = on; CREATE SCHEMA " + schema +
           "; CREATE TABLE " + table + " (" + quoted_column +
           " bigserial PRIMARY KEY, origin text NOT NULL); COMMIT");
    c.exec("BEGIN; SET LOCAL pgmesh.permit_ddl_locking = on");
    c.exec_params("SELECT pgmesh.use_snowflake($1::regclass, $2)",
                  std::vector<pq::Value>{table, column});
    c.exec("COMMIT");
    wait_for_sync_all();
    // On every node the default calls snowflake_nextval of the column's own
    // sequence (the default depends on it).
    for (int n = 1; n <= node_count(); n++) {
        pq::Result r = conn(n).exec_params(
            "SELECT pg_get_expr(d.adbin, d.adrelid), EXISTS (SELECT FROM pg_depend dep "
            "WHERE dep.classid = 'pg_attrdef'::regclass AND dep.objid = d.oid "
            "AND dep.refobjid = pg_get_serial_sequence($1, $2)::regclass) "
            "FROM pg_attrdef d WHERE d.adrelid = $1::regclass",
            std::vector<pq::Value>{table, column});
        ASSERT_EQ(r.row_count(), 1) << "node" << n;
        EXPECT_TRUE(r.get(0, 0).value_or("").starts_with("pgmesh.snowflake_nextval("))
            << "node" << n << ": " << r.get(0, 0).value_or("NULL");
        EXPECT_EQ(r.get(0, 1), "t") << "node" << n << ": " << r.get(0, 0).value_or("NULL");
    }

    constexpr int kRowsPerNode = 1500;
    std::list<TestThread> writers;
    for (int n = 1; n <= node_count(); n++) {
        writers.emplace_back([this, n, table](TestThread &self) {
            pq::Connection &w = self.session(connect(n));
            std::string origin = "'node" + std::to_string(n) + "'";
            for (int i = 0; i < 300; i++)
                w.exec("INSERT INTO " + table + " (origin) VALUES (" + origin + ")");
            w.exec("INSERT INTO " + table + " (origin) SELECT " + origin +
                   " FROM generate_series(1, " + std::to_string(kRowsPerNode - 300) + ")");
        });
    }
    for (TestThread &w : writers) EXPECT_EQ(w.join(), "");
    wait_for_sync_all();
    for (int n = 1; n <= node_count(); n++) {
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM " + table),
                  std::to_string(node_count() * kRowsPerNode));
        // Every row carries the number of the node that inserted it.
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM " + table +
                                     " t JOIN pgmesh.nodes o ON "
                                     "o.node_name = t.origin WHERE " +
                                     node_bits("t." + quoted_column) + " <> o.node_number"),
                  "0");
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM pgmesh.conflict_history"), "0")
            << "node" << n << ": "
            << query_value(n,
                           "SELECT string_agg(format('%s on %s.%s: %s, local %s, remote %s', "
                           "conflict_type, table_schema, table_name, resolution, local_tuple, "
                           "remote_tuple), '; ') FROM pgmesh.conflict_history");
    }
    expect_no_apply_errors();
    verify_all();
}

class SnowflakeErrorsTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 1}; }
};

TEST_F(SnowflakeErrorsTest, UnsuitableArgumentsRightsAndDatabases) {
    exec(1, R"(
        CREATE TABLE small (id serial PRIMARY KEY);
        CREATE TABLE ident (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY);
        CREATE TABLE no_seq (id bigint PRIMARY KEY);
        CREATE TABLE good (id bigserial PRIMARY KEY);
        CREATE SEQUENCE s;
        CREATE SEQUENCE s_update_only;
        CREATE SEQUENCE s_int AS integer;
        CREATE UNLOGGED SEQUENCE s_unlogged;
        CREATE ROLE ordinary LOGIN;
    )");
    pq::Error e =
        expect_error(1, "SELECT pgmesh.use_snowflake('small', 'id')", "42804", "is not bigint");
    EXPECT_NE(e.hint().find("1024"), std::string::npos) << e.hint();
    EXPECT_NE(e.hint().find("docs/ids.md"), std::string::npos) << e.hint();
    e = expect_error(1, "SELECT pgmesh.use_snowflake('ident', 'id')", "0A000",
                     "is an identity column");
    EXPECT_NE(e.hint().find("DROP IDENTITY"), std::string::npos) << e.hint();
    e = expect_error(1, "SELECT pgmesh.use_snowflake('no_seq', 'id')", "55000", "has no sequence");
    EXPECT_FALSE(e.hint().empty());
    expect_error(1, "SELECT pgmesh.use_snowflake('good', 'nope')", "42703", "does not exist");
    expect_error(1, "SELECT pgmesh.use_snowflake('s', 'last_value')", "42809", "is not a table");
    e = expect_error(1, "SELECT pgmesh.snowflake_nextval('good')", "42809",
                     "\"good\" is not a sequence");
    EXPECT_NE(e.hint().find("pg_get_serial_sequence"), std::string::npos) << e.hint();
    e = expect_error(1, "SELECT pgmesh.snowflake_nextval('s_int')", "2200H", "cannot hold");
    EXPECT_NE(e.hint().find("AS bigint"), std::string::npos) << e.hint();
    expect_error(1, "SELECT pgmesh.snowflake_nextval('s_unlogged')", "0A000", "unlogged");
    expect_error(1, "BEGIN READ ONLY; SELECT pgmesh.snowflake_nextval('s')", "25006");
    exec(1, "ROLLBACK");
    EXPECT_EQ(query_value(1, "SELECT pgmesh.snowflake_nextval(NULL) IS NULL"), "t");

    // An ordinary role: no right on the sequence, not the table's owner.
    pq::Connection ordinary = connect_as(1, "ordinary");
    e = expect_error(ordinary, "SELECT pgmesh.snowflake_nextval('s')", "42501",
                     "permission denied for sequence s");
    EXPECT_NE(e.hint().find("GRANT USAGE"), std::string::npos) << e.hint();
    expect_error(ordinary, "SELECT pgmesh.use_snowflake('good', 'id')", "42501",
                 "must be owner of table");
    // USAGE or UPDATE is enough, as for nextval(): the reservation is
    // pgmesh's own business.
    exec(1,
         "GRANT USAGE ON SEQUENCE s TO ordinary; GRANT UPDATE ON SEQUENCE s_update_only "
         "TO ordinary");
    EXPECT_EQ(ordinary.query_value("SELECT count(DISTINCT pgmesh.snowflake_nextval('s')) FROM "
                                   "generate_series(1, 1000)"),
              "1000");
    EXPECT_EQ(ordinary.query_value("SELECT pgmesh.snowflake_nextval('s_update_only') > 0"), "t");
    // The table's owner switches it and inserts.
    exec(1, "SELECT pgmesh.use_snowflake('good', 'id'); INSERT INTO good DEFAULT VALUES");
    EXPECT_EQ(query_value(1, "SELECT " + node_bits("id") + " FROM good"),
              query_value(1, "SELECT node_number FROM pgmesh.nodes WHERE is_local"));

    // A database with the extension that is not a node.
    exec(1, "CREATE DATABASE not_a_node");
    pq::Connection other = connect(1, "not_a_node");
    other.exec("CREATE EXTENSION pgmesh; CREATE SEQUENCE s");
    e = expect_error(other, "SELECT pgmesh.snowflake_nextval('s')", "55000", "not a pgmesh node");
    EXPECT_NE(e.hint().find("create_group"), std::string::npos) << e.hint();
}

}  // namespace
}  // namespace pgmesh::test
