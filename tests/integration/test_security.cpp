// pgmesh probed as a hostile user would (ctest label "security"): names
// built to break SQL, ordinary users reaching for the workers' superuser
// rights, statements that would let nodes diverge in silence, and secrets
// that must not show. Each test names the defect it guards against.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "cluster_fixture.hpp"
#include "conninfo.hpp"

namespace pgmesh::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class SecurityTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override { return MeshOptions{.nodes = 2}; }

    void exec_all_as(std::string_view role, std::string_view sql) {
        for (int n = 1; n <= node_count(); n++) connect_as(n, role).exec(sql);
    }
    void pause_all() { exec_all("SELECT pgmesh.pause_apply()"); }
    void resume_all() { exec_all("SELECT pgmesh.resume_apply()"); }
    // Commit timestamps must differ between competing writes.
    void tick() { std::this_thread::sleep_for(20ms); }
    std::string is_superuser(int node, const std::string &role) {
        pq::Value value = conn(node)
                              .exec_params("SELECT rolsuper FROM pg_roles WHERE rolname = $1",
                                           std::vector<pq::Value>{role})
                              .get(0, 0);
        return value.value_or("(no such role)");
    }
    std::string history(int node) {
        return query_value(node,
                           "SELECT coalesce(string_agg(conflict_type || ':' || resolution, ',' "
                           "ORDER BY id), '') FROM pgmesh.conflict_history");
    }
};

// --- 1. SQL built from strings ---------------------------------------------

// load_resolvers pasted the peer's table name into SQL that the apply
// worker ran as superuser: this table name made its owner a superuser on
// every peer.
TEST_F(SecurityTest, HostileTableNameCannotInjectSqlIntoApply) {
    exec_all("CREATE ROLE mallory LOGIN");
    exec_all("CREATE SCHEMA evil AUTHORIZATION mallory");
    const std::string table = R"(evil."'; ALTER ROLE mallory SUPERUSER --")";
    exec_all_as("mallory", "CREATE TABLE " + table + " (id int PRIMARY KEY, v text)");
    connect_as(1, "mallory").exec("INSERT INTO " + table + " VALUES (1, 'x')");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM " + table), "1");
    EXPECT_EQ(is_superuser(1, "mallory"), "f");
    EXPECT_EQ(is_superuser(2, "mallory"), "f");
}

// Names with quotes, backslashes, semicolons, dots, mixed case and
// non-ASCII letters, for schemas, tables, columns and resolver functions:
// rows replicate, resolvers are stored exactly (a backslash was doubled, so
// the resolver never applied; a quote was a syntax error) and applied.
TEST_F(SecurityTest, HostileNamesReplicateAndTheirResolversApply) {
    const std::string schema = R"("we""ird sch'ema; x")";
    const std::vector<std::string> tables = {R"("it's")",      R"("back\slash")", R"("semi;colon")",
                                             R"("MixedCase")", R"("dot.ted")",    R"("ünïcødé")"};
    exec_all("CREATE SCHEMA " + schema);
    for (const std::string &t : tables) {
        std::string qualified = schema + "." + t;
        exec_all("CREATE TABLE " + qualified + R"( (id int PRIMARY KEY, "Qu'o""te;" text))");
        // The older insert wins: not the default, so it shows the resolver
        // was found for exactly this table.
        conn(1).exec_params(
            "SELECT pgmesh.set_conflict_resolver($1::regclass, 'insert_exists', "
            "'first_update_wins')",
            std::vector<pq::Value>{qualified});
    }
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM pgmesh.conflict_resolver"),
              std::to_string(tables.size()));
    EXPECT_EQ(query_value(2,
                          "SELECT string_agg(table_name, '|' ORDER BY table_name COLLATE \"C\") "
                          "FROM pgmesh.conflict_resolver"),
              R"(MixedCase|back\slash|dot.ted|it's|semi;colon|ünïcødé)");
    pause_all();
    for (const std::string &t : tables)
        exec(1, "INSERT INTO " + schema + "." + t + " VALUES (1, 'node1')");
    tick();
    for (const std::string &t : tables)
        exec(2, "INSERT INTO " + schema + "." + t + " VALUES (1, 'node2')");
    resume_all();
    wait_for_sync_all();
    for (const std::string &t : tables) {
        exec(2, "UPDATE " + schema + "." + t + R"( SET "Qu'o""te;" = 'upd' WHERE id = 1)");
        exec(1, "INSERT INTO " + schema + "." + t + " VALUES (2, 'two')");
        exec(1, "DELETE FROM " + schema + "." + t + " WHERE id = 2");
    }
    wait_for_sync_all();
    for (const std::string &t : tables)
        for (int n = 1; n <= 2; n++)
            EXPECT_EQ(query_value(n, "SELECT string_agg(row(x.*)::text, ',') FROM " + schema + "." +
                                         t + " x"),
                      "(1,upd)")
                << t << " on node" << n;
    // node1's insert was older: first_update_wins kept it on node2.
    EXPECT_EQ(query_value(2,
                          "SELECT count(*) FROM pgmesh.conflict_history WHERE "
                          "conflict_type = 'insert_exists' AND resolution = 'apply_remote'"),
              std::to_string(tables.size()));
    verify_all();
}

// A DSN is a connection string, not SQL: join_group pasted the DSNs into
// SQL with the connection-string quoter, so this application_name broke the
// join. A hostile database name goes through pg_dump and pg_restore too.
class HostileDatabaseTest : public SecurityTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 2, .form_mesh = false, .db_name = R"(we'ird "db" \ ;x)"};
    }
};

TEST_F(HostileDatabaseTest, JoinWithHostileDsnValuesAndDatabaseName) {
    for (int n = 1; n <= 2; n++) exec(n, "CREATE EXTENSION pgmesh");
    exec(1, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "INSERT INTO t VALUES (1, 'before the join')");
    const std::string node1_dsn = dsn(1) + R"( application_name='it\'s; --x')";
    const std::string node2_dsn = dsn(2) + R"( application_name='a\\b "q"')";
    conn(1).exec_params("SELECT pgmesh.create_group('node1', $1)",
                        std::vector<pq::Value>{node1_dsn});
    // Node names are restricted to letters, digits, '_', '.', '-'.
    for (const char *name : {"n'2", "n2; DROP TABLE t", "ñ2", "n 2", "n\\2"}) try {
            conn(2).exec_params("SELECT pgmesh.join_group($1, $2, $3)",
                                std::vector<pq::Value>{name, node2_dsn, node1_dsn});
            ADD_FAILURE() << "join_group accepted the node name " << name;
        } catch (const pq::Error &e) {
            EXPECT_EQ(e.sqlstate(), "22023") << name << ": " << e.what();
        }
    conn(2).exec_params("SELECT pgmesh.join_group('node2', $1, $2)",
                        std::vector<pq::Value>{node2_dsn, node1_dsn});
    EXPECT_EQ(query_value(2, "SELECT pgmesh.wait_for_ready(60)"), "t");
    EXPECT_EQ(conn(1)
                  .exec_params("SELECT dsn = $1 FROM pgmesh.node WHERE node_name = 'node2'",
                               std::vector<pq::Value>{node2_dsn})
                  .get(0, 0),
              "t");
    exec(2, "INSERT INTO t VALUES (2, 'after')");
    wait_for_sync(2);
    EXPECT_EQ(query_value(1, "SELECT string_agg(v, ',' ORDER BY id) FROM t"),
              "before the join,after");
    verify_all();
}

// --- 2. Other users' code runs as its owner, never as superuser ------------

// Triggers (and defaults) run on the peer as the table's owner, under a
// search_path of '' (an ENABLE ALWAYS trigger ran as postgres); a trigger
// that reaches for more stops apply instead of getting it.
TEST_F(SecurityTest, TriggersRunAsTheTableOwnerWithAnEmptySearchPath) {
    const std::string owner = R"("o'wner; ""x")";
    exec_all("CREATE ROLE " + owner + " LOGIN");
    exec_all("CREATE SCHEMA app AUTHORIZATION " + owner);
    exec_all_as("o'wner; \"x", R"(
        CREATE TABLE app.t (id int PRIMARY KEY, v text);
        CREATE TABLE app.t2 (id int PRIMARY KEY);
        CREATE UNLOGGED TABLE app.audit (who text, session_who text, path text);
        CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO app.audit VALUES (current_user, session_user,
                                          current_setting('search_path'));
            RETURN NEW;
        END $$;
        CREATE TRIGGER audit AFTER INSERT ON app.t FOR EACH ROW EXECUTE FUNCTION app.audit();
        ALTER TABLE app.t ENABLE ALWAYS TRIGGER audit;
        CREATE FUNCTION app.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE format('ALTER ROLE %I SUPERUSER', current_user);
            RETURN NEW;
        END $$;
        CREATE TRIGGER escalate BEFORE INSERT ON app.t2 FOR EACH ROW
            EXECUTE FUNCTION app.escalate();
        ALTER TABLE app.t2 ENABLE REPLICA TRIGGER escalate;
    )");
    connect_as(1, "o'wner; \"x").exec("INSERT INTO app.t VALUES (1, 'a')");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT who || '|' || session_who || '|' || path FROM app.audit"),
              "o'wner; \"x|postgres|");

    // The REPLICA trigger fires only in apply, and there it may not alter
    // its owner's role: apply stops with the error, the role stays as it was.
    connect_as(1, "o'wner; \"x").exec("INSERT INTO app.t2 VALUES (1)");
    wait_for_last_error(2, "must be superuser");
    EXPECT_EQ(is_superuser(2, "o'wner; \"x"), "f");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM app.t2"), "0");
    EXPECT_EQ(query_value(2,
                          "SELECT conflict_type || ':' || resolution FROM "
                          "pgmesh.conflict_history"),
              "apply_error:error");
    exec(2, "ALTER TABLE app.t2 DISABLE TRIGGER escalate");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM app.t2"), "1");
}

// A resolver function runs as the table's owner (it ran as superuser), who
// must be allowed to execute it; set_conflict_resolver demands ownership of
// the table and the right to execute the function.
TEST_F(SecurityTest, ResolverFunctionsRunAsTheTableOwner) {
    exec_all("CREATE ROLE alice LOGIN; CREATE ROLE bob LOGIN; CREATE ROLE mallory LOGIN");
    exec_all("GRANT CREATE ON SCHEMA public TO alice, bob");
    exec_all_as("alice", "CREATE TABLE public.accounts (id int PRIMARY KEY, v text)");
    // bob's functions, which only alice may execute (one of them with a
    // hostile name): they return the remote row stamped with who ran them.
    exec_all_as("bob", R"(
        CREATE FUNCTION public.stamp(t text, l public.accounts, r public.accounts)
        RETURNS public.accounts LANGUAGE plpgsql AS $$
        BEGIN r.v := current_user; RETURN r; END $$;
        CREATE FUNCTION public."st'amp; --"(t text, l public.accounts, r public.accounts)
        RETURNS public.accounts LANGUAGE plpgsql AS $$
        BEGIN r.v := current_user; RETURN r; END $$;
        REVOKE EXECUTE ON FUNCTION public.stamp(text, public.accounts, public.accounts),
            public."st'amp; --"(text, public.accounts, public.accounts) FROM PUBLIC;
        GRANT EXECUTE ON FUNCTION public.stamp(text, public.accounts, public.accounts),
            public."st'amp; --"(text, public.accounts, public.accounts) TO alice;
        CREATE FUNCTION public.secret(t text, l public.accounts, r public.accounts)
        RETURNS public.accounts LANGUAGE sql AS 'SELECT r';
        REVOKE EXECUTE ON FUNCTION public.secret(text, public.accounts, public.accounts)
            FROM PUBLIC;
    )");
    const std::string stamp = "'public.stamp(text, public.accounts, public.accounts)'";
    const std::string hostile = R"('public."st''amp; --"(text, public.accounts, public.accounts)')";
    const std::string secret = "'public.secret(text, public.accounts, public.accounts)'";
    exec(1,
         "SELECT pgmesh.set_conflict_resolver('public.accounts', 'insert_exists', " + stamp + ")");
    wait_for_sync(1);
    pause_all();
    exec(1, "INSERT INTO accounts VALUES (1, 'node1')");
    tick();
    exec(2, "INSERT INTO accounts VALUES (1, 'node2')");
    resume_all();
    wait_for_sync_all();
    // Each node kept the resolver's row, stamped by whoever ran it.
    for (int n = 1; n <= 2; n++)
        EXPECT_EQ(query_value(n, "SELECT v FROM accounts WHERE id = 1"), "alice") << "node" << n;

    pq::Connection alice = connect_as(1, "alice");
    pq::Connection mallory = connect_as(1, "mallory");
    expect_error(
        mallory,
        "SELECT pgmesh.set_conflict_resolver('public.accounts', 'insert_exists', " + stamp + ")",
        "42501", "must be owner");
    expect_error(
        alice,
        "SELECT pgmesh.set_conflict_resolver('public.accounts', 'insert_exists', " + secret + ")",
        "42501", "\"alice\" may not execute");
    // A superuser may choose it, but it would run as alice, who may not.
    expect_error(
        1,
        "SELECT pgmesh.set_conflict_resolver('public.accounts', 'insert_exists', " + secret + ")",
        "42501", "\"alice\" may not execute");
    // The owner may choose a function it can execute.
    alice.exec("SELECT pgmesh.set_conflict_resolver('public.accounts', 'insert_exists', " +
               hostile + ")");
    wait_for_sync(1);

    // The right to execute it is checked when it runs, too.
    exec(2, R"(REVOKE EXECUTE ON FUNCTION public."st'amp; --"(text, public.accounts,
                                                             public.accounts) FROM alice)");
    pause_all();
    exec(1, "INSERT INTO accounts VALUES (2, 'node1')");
    tick();
    exec(2, "INSERT INTO accounts VALUES (2, 'node2')");
    resume_all();
    wait_for_last_error(2, "permission denied for function");
    exec(2, R"(GRANT EXECUTE ON FUNCTION public."st'amp; --"(text, public.accounts,
                                                            public.accounts) TO alice)");
    wait_for_sync_all();
    for (int n = 1; n <= 2; n++)
        EXPECT_EQ(query_value(n, "SELECT v FROM accounts WHERE id = 2"), "alice") << "node" << n;
    // Each call used to leak the slot of the resolver's row.
    for (int n = 1; n <= 2; n++)
        EXPECT_EQ(server_log(n).find("reference leak"), std::string::npos) << "node" << n;
}

// --- 3. UPDATE and DELETE without a key, in every form ---------------------

TEST_F(SecurityTest, KeylessWritesAreRefusedInEveryForm) {
    exec_all(R"(
        CREATE TABLE k (id int UNIQUE, v text);
        CREATE TABLE src (id int PRIMARY KEY);
        CREATE RULE src_touches_k AS ON INSERT TO src DO ALSO UPDATE k SET v = 'rule';
        CREATE FUNCTION wipe_k() RETURNS void LANGUAGE plpgsql AS $$
            BEGIN DELETE FROM k; END $$;
        CREATE TABLE p (id int, v text) PARTITION BY RANGE (id);
        CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
        CREATE UNIQUE INDEX ON p (id);
        CREATE TABLE nothing (id int PRIMARY KEY, v text);
        ALTER TABLE nothing REPLICA IDENTITY NOTHING;
    )");
    exec(1,
         "INSERT INTO k VALUES (1, 'a'); INSERT INTO p VALUES (1, 'a'); "
         "INSERT INTO nothing VALUES (1, 'a')");
    wait_for_sync(1);
    for (const char *sql : {
             "INSERT INTO k VALUES (1, 'b') ON CONFLICT (id) DO UPDATE SET v = 'b'",
             "MERGE INTO k USING (SELECT 1 AS id) s ON k.id = s.id "
             "WHEN MATCHED THEN UPDATE SET v = 'm'",
             "MERGE INTO k USING (SELECT 1 AS id) s ON k.id = s.id WHEN MATCHED THEN DELETE",
             "WITH d AS (DELETE FROM k WHERE id = 1 RETURNING *) SELECT count(*) FROM d",
             "WITH u AS (UPDATE k SET v = 'c' RETURNING *) SELECT count(*) FROM u",
             "INSERT INTO src VALUES (1)",
             "SELECT wipe_k()",
             "UPDATE p SET v = 'x'",
             "DELETE FROM p",
             "INSERT INTO p VALUES (1, 'y') ON CONFLICT (id) DO UPDATE SET v = 'y'",
             "MERGE INTO p USING (SELECT 1 AS id) s ON p.id = s.id WHEN MATCHED THEN DELETE",
         })
        expect_error(1, sql, "55000", "because it has no primary key");
    expect_error(1, "UPDATE nothing SET v = 'x'", "55000", "replica identity is NOTHING");
    expect_error(1, "DELETE FROM nothing", "55000", "replica identity is NOTHING");
    // What only inserts is fine.
    exec(1, "INSERT INTO k VALUES (1, 'z') ON CONFLICT (id) DO NOTHING");
    exec(1,
         "MERGE INTO k USING (SELECT 2 AS id) s ON k.id = s.id "
         "WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'merged')");
    exec(1, "WITH i AS (INSERT INTO k VALUES (3, 'cte') RETURNING *) SELECT count(*) FROM i");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT string_agg(id || v, ',' ORDER BY id) FROM k"),
              "1a,2merged,3cte");
    verify_all();
}

// A change the output plugin cannot send stops the stream with an error
// that says why (it logged a WARNING and skipped the DELETE); skipping that
// transaction on the receiver lets the stream go on.
TEST_F(SecurityTest, UnsendableChangeStopsTheStreamAndCanBeSkipped) {
    exec_all("CREATE TABLE k (id int, v text); CREATE TABLE t (id int PRIMARY KEY)");
    exec(1, "INSERT INTO k VALUES (1, 'a')");
    wait_for_sync(1);
    // Past the origin's own check, as only a fault could get it.
    exec(1, "SET pgmesh.fault_points = 'skip_keyless_check'");
    exec(1, "DELETE FROM k");
    exec(1, "RESET pgmesh.fault_points");
    exec(1, "INSERT INTO t VALUES (1)");
    std::string error = wait_for_last_error(2, "cannot replicate a DELETE on table \"public.k\"");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "0");  // nothing after it either
    std::smatch lsn;
    ASSERT_TRUE(std::regex_search(error, lsn, std::regex("commit LSN ([0-9A-F]+/[0-9A-F]+)")))
        << error;
    exec(2, "SELECT pgmesh.skip_transaction('node1', '" + lsn[1].str() + "')");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM t"), "1");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM k"), "1");  // the skipped delete
    EXPECT_EQ(query_nullable(2, "SELECT last_error FROM pgmesh.status"), std::nullopt);
}

// --- 4, 5. Schemas that differ between nodes --------------------------------

// Columns only the receiver has get their DEFAULT (they got NULL: a NOT
// NULL one stopped apply); an update keeps their value.
TEST_F(SecurityTest, ReceiverOnlyColumnsGetTheirDefault) {
    exec_all("CREATE ROLE alice LOGIN; GRANT CREATE ON SCHEMA public TO alice");
    connect_as(1, "alice").exec("CREATE TABLE public.t (id int PRIMARY KEY, v text)");
    connect_as(2, "alice")
        .exec(
            "CREATE TABLE public.t (id int PRIMARY KEY, c int NOT NULL DEFAULT 7, v text, "
            "d text DEFAULT 'x' || 'y', who text DEFAULT current_user, n int, "
            "g int GENERATED ALWAYS AS (id * 10) STORED)");
    exec(1, "INSERT INTO t VALUES (1, 'a')");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT row(t.*)::text FROM t"), "(1,7,a,xy,alice,,10)");
    exec(2, "UPDATE t SET c = 8, n = 5 WHERE id = 1");
    exec(1, "UPDATE t SET v = 'b' WHERE id = 1");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT row(t.*)::text FROM t"), "(1,8,b,xy,alice,5,10)");
    // node2 wrote the row last: the update from node1 is a conflict it wins.
    EXPECT_EQ(history(2), "update_origin_differs:apply_remote");
}

// int4 against int8, text against varchar, int4 against numeric: values
// convert through text (binary values of another type stopped apply).
TEST_F(SecurityTest, CompatibleTypesConvertThroughText) {
    exec(1, "CREATE TABLE t (id int4 PRIMARY KEY, v text, n int4, a int4[])");
    exec(2, "CREATE TABLE t (id int8 PRIMARY KEY, v varchar(20), n numeric, a int8[])");
    exec(1, "INSERT INTO t VALUES (1, 'one', 10, '{1,2}'), (2, 'two', 20, '{3}')");
    wait_for_sync(1);
    exec(1, "UPDATE t SET v = 'uno', id = 11 WHERE id = 1; DELETE FROM t WHERE id = 2");
    exec(2, "INSERT INTO t VALUES (3, 'three', 30, '{4}')");  // and back, int8 into int4
    wait_for_sync_all();
    for (int n = 1; n <= 2; n++)
        EXPECT_EQ(query_value(n, "SELECT string_agg(row(t.*)::text, ';' ORDER BY id) FROM t"),
                  "(3,three,30,{4});(11,uno,10,\"{1,2}\")")
            << "node" << n;
    EXPECT_EQ(history(1) + history(2), "");
}

// REPLICA IDENTITY FULL on a table with a primary key was taken for "no
// primary key": UPDATE refused on the origin, apply stopped on the receiver.
TEST_F(SecurityTest, ReplicaIdentityFullWithPrimaryKeyReplicates) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t REPLICA IDENTITY FULL");
    exec(1, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    exec(1, "UPDATE t SET v = 'A' WHERE id = 1");
    exec(1, "UPDATE t SET id = 20 WHERE id = 2");
    exec(1, "DELETE FROM t WHERE id = 3");
    wait_for_sync(1);
    exec(2, "UPDATE t SET v = 'from node2' WHERE id = 1");
    wait_for_sync_all();
    for (int n = 1; n <= 2; n++)
        EXPECT_EQ(query_value(n, "SELECT string_agg(id || v, ',' ORDER BY id) FROM t"),
                  "1from node2,20b")
            << "node" << n;
    EXPECT_EQ(history(2), "");
}

// --- 6. Secrets and row data ------------------------------------------------

class SecretsTest : public SecurityTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 2, .form_mesh = false};
    }
    // A DSN of this node with a value for every secret option libpq knows.
    std::string dsn_with_secrets(int node, const std::string &tag) {
        std::string result = dsn(node);
        for (const std::string &keyword : conninfo::secret_keywords())
            result += " " + keyword + "=Secr3t" + tag + keyword;
        return result;
    }
};

// sslpassword showed in pgmesh.nodes, in connection errors and in the
// server log; every option libpq marks secret is masked now.
TEST_F(SecretsTest, EveryLibpqSecretIsMasked) {
    ASSERT_GE(conninfo::secret_keywords().size(), 2u);
    for (int n = 1; n <= 2; n++) exec(n, "CREATE EXTENSION pgmesh");
    conn(1).exec_params("SELECT pgmesh.create_group('node1', $1)",
                        std::vector<pq::Value>{dsn_with_secrets(1, "A")});
    conn(2).exec_params("SELECT pgmesh.join_group('node2', $1, $2)",
                        std::vector<pq::Value>{dsn_with_secrets(2, "B"), dsn(1)});
    EXPECT_EQ(query_value(2, "SELECT pgmesh.wait_for_ready(60)"), "t");
    for (int n = 1; n <= 2; n++) {
        std::string nodes = query_value(n, "SELECT string_agg(dsn, ' ') FROM pgmesh.nodes");
        EXPECT_EQ(nodes.find("Secr3t"), std::string::npos) << nodes;
        EXPECT_NE(nodes.find("********"), std::string::npos) << nodes;
    }
    for (const std::string &keyword : conninfo::secret_keywords()) {
        for (const std::string &dsn_text :
             {"host=h " + keyword + "=Secr3tX", "postgresql://u@h/db?" + keyword + "=Secr3tX"}) {
            std::string masked =
                conn(1)
                    .exec_params("SELECT pgmesh.mask_dsn($1)", std::vector<pq::Value>{dsn_text})
                    .get(0, 0)
                    .value_or("");
            EXPECT_EQ(masked.find("Secr3t"), std::string::npos) << keyword << ": " << masked;
        }
    }
    // A DSN that fails to connect: the error in pgmesh.status and in the log.
    conn(1).exec_params(
        "UPDATE pgmesh.node SET dsn = $1 WHERE node_name = 'node2'",
        std::vector<pq::Value>{"host=127.0.0.1 port=1 dbname=pgmesh user=postgres password=Secr3tC "
                               "sslpassword=Secr3tD"});
    exec(1, "SELECT pg_terminate_backend(worker_pid) FROM pgmesh.status");
    std::string error = wait_for_last_error(1, "could not connect");
    EXPECT_EQ(error.find("Secr3t"), std::string::npos) << error;
    EXPECT_NE(error.find("sslpassword=********"), std::string::npos) << error;
    for (int n = 1; n <= 2; n++) {
        std::string log = server_log(n);
        size_t at = log.find("Secr3t");
        EXPECT_EQ(at, std::string::npos)
            << "node" << n << " log: " << log.substr(at == std::string::npos ? 0 : at - 200, 400);
    }
}

// The process table is readable by every local user: pg_dump ran with
// sslpassword on its command line.
TEST_F(SecretsTest, JoinKeepsSecretsOffCommandLines) {
    for (int n = 1; n <= 2; n++) exec(n, "CREATE EXTENSION pgmesh");
    exec(1, "SELECT pgmesh.create_group('node1', '" + dsn(1) + "')");
    exec(1, "CREATE TABLE t (id int PRIMARY KEY)");
    // The order is forced: the join creates its slots and holds at a fault
    // point; the table is locked; the join goes on and its pg_dump waits for
    // the lock, long enough to be looked at.
    pq::Connection fault_holder = connect(2);
    fault_holder.exec("SELECT pg_advisory_lock(hashtext('pgmesh fault join_copy_data'))");
    TestThread join([&](TestThread &self) {
        pq::Connection &joiner = self.session(connect(2));
        joiner.exec("SET pgmesh.fault_points = 'join_copy_data'");
        joiner.exec_params(
            "SELECT pgmesh.join_group('node2', $1, $2)",
            std::vector<pq::Value>{dsn_with_secrets(2, "L"), dsn_with_secrets(1, "T")});
    });
    pq::Connection table_holder = connect(1);
    std::string command_line;
    fs::path tmp = cluster().node(2).data_dir() / "pgsql_tmp";
    std::vector<std::string> service_files;
    auto inspect = [&] {
        ASSERT_TRUE(wait_until([&] {
            return query_value(2,
                               "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                               "AND NOT granted") == "1";
        })) << "the join did not reach its fault point";
        table_holder.exec("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
        fault_holder.exec("SELECT pg_advisory_unlock_all()");
        bool seen = wait_until(
            [&] {
                for (const auto &entry : fs::directory_iterator("/proc")) {
                    std::ifstream in(entry.path() / "cmdline");
                    std::string text((std::istreambuf_iterator<char>(in)), {});
                    if (text.find("pg_dump") == std::string::npos ||
                        text.find("port=" + std::to_string(port(1))) == std::string::npos)
                        continue;
                    command_line = text;
                    return true;
                }
                return false;
            },
            60s, 20ms);
        ASSERT_TRUE(seen) << "no pg_dump showed up";
        for (const auto &entry : fs::directory_iterator(tmp)) {
            if (entry.path().extension() != ".service") continue;
            struct stat st {};
            ASSERT_EQ(stat(entry.path().c_str(), &st), 0);
            EXPECT_EQ(st.st_mode & 0777, 0600u) << entry.path();
            service_files.push_back(entry.path().filename());
        }
    };
    inspect();
    // Whatever happened above, let the join finish.
    table_holder.exec("ROLLBACK");
    fault_holder.exec("SELECT pg_advisory_unlock_all()");
    std::string join_error = join.join();

    std::replace(command_line.begin(), command_line.end(), '\0', ' ');
    EXPECT_EQ(command_line.find("Secr3t"), std::string::npos) << command_line;
    EXPECT_NE(command_line.find("service=pgmesh_join"), std::string::npos) << command_line;
    EXPECT_EQ(service_files.size(), 2u);  // one per DSN with an sslpassword
    EXPECT_EQ(join_error, "");
    EXPECT_EQ(query_value(2, "SELECT pgmesh.wait_for_ready(60)"), "t");
    EXPECT_TRUE(!fs::exists(tmp) || fs::is_empty(tmp)) << "temporary files left in " << tmp;
}

// pgmesh_monitor read every conflicting row, of tables it may not read, and
// a conflict on pgmesh.node recorded a DSN with its password. Monitors see
// metadata; a table's owner sees the rows of its own conflicts. The waits
// work for monitors (permission denied for table node).
TEST_F(SecurityTest, MonitorsSeeMetadataAndOwnersTheirRows) {
    exec_all(
        "CREATE ROLE mon LOGIN IN ROLE pgmesh_monitor; CREATE ROLE alice LOGIN; "
        "CREATE ROLE eve LOGIN; GRANT CREATE ON SCHEMA public TO alice");
    exec_all_as("alice", "CREATE TABLE public.secrets (id int PRIMARY KEY, v text)");
    exec_all("CREATE TABLE public.plain (id int PRIMARY KEY, v text)");
    pause_all();
    exec(1, "INSERT INTO secrets VALUES (1, 'alice secret 1'); INSERT INTO plain VALUES (1, 'p1')");
    exec(1, "UPDATE pgmesh.node SET dsn = dsn || ' password=Secr3tN1' WHERE node_name = 'node1'");
    tick();
    exec(2, "INSERT INTO secrets VALUES (1, 'alice secret 2'); INSERT INTO plain VALUES (1, 'p2')");
    exec(2, "UPDATE pgmesh.node SET dsn = dsn || ' password=Secr3tN2' WHERE node_name = 'node1'");
    resume_all();
    wait_for_sync_all();
    // Three conflicts on node1: the two tables and the node catalog.
    EXPECT_EQ(query_value(1,
                          "SELECT string_agg(table_name, ',' ORDER BY table_name) "
                          "FROM pgmesh.conflict_history"),
              "node,plain,secrets");
    EXPECT_EQ(query_value(1,
                          "SELECT count(*) FROM pgmesh.conflict_history WHERE "
                          "local_tuple::text LIKE '%Secr3t%' OR remote_tuple::text LIKE "
                          "'%Secr3t%'"),
              "0");
    EXPECT_EQ(query_value(1,
                          "SELECT remote_tuple->>'dsn' LIKE '%password=********%' FROM "
                          "pgmesh.conflict_history WHERE table_name = 'node'"),
              "t");

    pq::Connection mon = connect_as(1, "mon");
    expect_error(mon, "SELECT local_tuple FROM pgmesh.conflict_history", "42501");
    expect_error(mon, "SELECT * FROM pgmesh.conflict_history", "42501");
    EXPECT_EQ(mon.query_value("SELECT count(*) FROM pgmesh.conflict_history"), "3");
    EXPECT_EQ(mon.query_value("SELECT count(*) || '/' || count(local_tuple) || '/' || "
                              "count(remote_tuple) FROM pgmesh.conflicts"),
              "3/0/0");
    EXPECT_EQ(mon.query_value("SELECT pgmesh.wait_for_sync(30)"), "t");
    EXPECT_EQ(mon.query_value("SELECT pgmesh.wait_for_ready(30)"), "t");

    pq::Connection alice = connect_as(1, "alice");
    EXPECT_EQ(alice.query_value("SELECT string_agg(table_name || ':' || (local_tuple->>'v') || "
                                "':' || (remote_tuple->>'v'), ',') FROM pgmesh.conflicts"),
              "secrets:alice secret 1:alice secret 2");
    expect_error(alice, "SELECT count(*) FROM pgmesh.conflict_history", "42501");

    pq::Connection eve = connect_as(1, "eve");
    EXPECT_EQ(eve.query_value("SELECT count(*) FROM pgmesh.conflicts"), "0");
    // A cheap function of eve's in the WHERE clause sees no more than the
    // view shows (the view is a security barrier).
    eve.exec(
        "CREATE TEMP TABLE leaked (v text); "
        "CREATE FUNCTION pg_temp.leak(text) RETURNS bool LANGUAGE plpgsql COST 0.0001 AS "
        "$$ BEGIN INSERT INTO pg_temp.leaked VALUES ($1); RETURN true; END $$");
    EXPECT_EQ(eve.query_value("SELECT count(*) FROM pgmesh.conflicts WHERE "
                              "pg_temp.leak(table_name)"),
              "0");
    EXPECT_EQ(eve.query_value("SELECT count(*) FROM pg_temp.leaked"), "0");
}

// An ordinary user gets no further than PostgreSQL would let them: every
// administrative function and every catalog is refused; what is public
// works; monitors read status and masked nodes, and change nothing.
TEST_F(SecurityTest, OrdinaryUsersGetNoFurtherThanTheyMay) {
    exec_all(
        "CREATE ROLE eve LOGIN; CREATE ROLE mon LOGIN IN ROLE pgmesh_monitor; "
        "CREATE ROLE alice LOGIN; GRANT CREATE ON SCHEMA public TO alice");
    connect_as(1, "alice").exec("CREATE TABLE public.t (id int PRIMARY KEY)");
    exec(1, "CREATE TEMP TABLE temp_t (id int PRIMARY KEY)");
    pq::Connection eve = connect_as(1, "eve");
    for (const char *sql : {
             "SELECT pgmesh.create_group('x', 'host=127.0.0.1')",
             "SELECT pgmesh.join_group('x', 'host=127.0.0.1', 'host=127.0.0.1')",
             "SELECT pgmesh.pause_apply()",
             "SELECT pgmesh.resume_apply()",
             "SELECT pgmesh.skip_transaction('node2', '0/1')",
             "SELECT * FROM pgmesh.worker_status()",
             "SELECT * FROM pgmesh.node",
             "SELECT * FROM pgmesh.local_node",
             "SELECT * FROM pgmesh.nodes",
             "SELECT * FROM pgmesh.status",
             "SELECT * FROM pgmesh.conflict_history",
             "INSERT INTO pgmesh.conflict_resolver VALUES ('public', 't', 'insert_exists', "
             "'keep_local')",
             "SELECT pgmesh.set_conflict_resolver('public.t', 'insert_exists', 'keep_local')",
         })
        expect_error(eve, sql, "42501");
    EXPECT_EQ(eve.query_value("SELECT pgmesh.wait_for_sync(30)"), "t");
    EXPECT_EQ(eve.query_value("SELECT pgmesh.mask_dsn('host=h password=p')"),
              "password=******** host=h");

    pq::Connection mon = connect_as(1, "mon");
    EXPECT_EQ(mon.query_value("SELECT count(*) FROM pgmesh.status"), "1");
    EXPECT_EQ(mon.query_value("SELECT count(*) FROM pgmesh.nodes"), "2");
    for (const char *sql : {"SELECT pgmesh.pause_apply()", "SELECT * FROM pgmesh.node",
                            "DELETE FROM pgmesh.conflict_history"})
        expect_error(mon, sql, "42501");

    // set_conflict_resolver takes only tables that replicate.
    expect_error(1, "SELECT pgmesh.set_conflict_resolver(0, 'insert_exists', 'keep_local')",
                 "42P01");
    for (const char *table :
         {"pg_catalog.pg_class", "pgmesh.local_node", "pgmesh.conflict_history", "temp_t"})
        expect_error(1,
                     std::string("SELECT pgmesh.set_conflict_resolver('") + table +
                         "', 'insert_exists', 'keep_local')",
                     "0A000", "does not replicate");
    expect_error(1,
                 "SELECT pgmesh.set_conflict_resolver('pgmesh.nodes', 'insert_exists', "
                 "'keep_local')",
                 "42809", "is not a table");
    EXPECT_EQ(query_value(1, "SELECT count(*) FROM pgmesh.conflict_resolver"), "0");
}

// --- 7. The error path ------------------------------------------------------

// A stopped worker wrote a history row at every retry, and a failure to
// look the table up had no table name.
TEST_F(SecurityTest, RepeatedFailureIsRecordedOnce) {
    exec(1, "CREATE TABLE only_here (id int PRIMARY KEY)");
    exec(1, "INSERT INTO only_here VALUES (1)");
    // The worker retries after 2, 4, 8 s: three failures in about 6 s.
    auto failures = [&] {
        std::string log = server_log(2);
        int count = 0;
        for (size_t at = 0;
             (at = log.find("\"public.only_here\" that the peer", at)) != std::string::npos; at++)
            count++;
        return count;
    };
    ASSERT_TRUE(wait_until([&] { return failures() >= 3; }, 60s));
    EXPECT_EQ(query_value(2,
                          "SELECT count(*) || ' ' || min(table_schema || '.' || table_name) "
                          "|| ' ' || min(conflict_type) FROM pgmesh.conflict_history"),
              "1 public.only_here apply_error");
    EXPECT_GE(std::stoi(query_value(2, "SELECT occurrences FROM pgmesh.conflict_history")), 3);
    EXPECT_EQ(query_value(2, "SELECT conflicts FROM pgmesh.status"), "1");
    exec(2, "CREATE TABLE only_here (id int PRIMARY KEY)");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM only_here"), "1");
    EXPECT_EQ(query_value(2, "SELECT count(*) FROM pgmesh.conflict_history"), "1");
}

// A skipped transaction, and one whose every change was a no-op, did not
// advance the origin: once the peer's slot forgot how far this node had
// confirmed (a crash of the peer), the skip was forgotten too and apply
// stopped on the same transaction again.
TEST_F(SecurityTest, SkipsAndNoOpTransactionsSurviveAPeerCrash) {
    exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)");
    exec(1, "SELECT pgmesh.set_conflict_resolver('t', 'insert_exists', 'error')");
    exec(1, "INSERT INTO t VALUES (5, 'five')");
    wait_for_sync_all();
    // Without history a delete_missing writes nothing: a true no-op.
    exec(2, "ALTER SYSTEM SET pgmesh.conflict_history = off");
    exec(2, "SELECT pg_reload_conf()");
    // An open transaction with an xid on node1 keeps node1's slot for node2
    // from being saved (its restart point cannot move): after the crash the
    // slot is back where it was before the transactions below.
    pq::Connection pin = connect(1);
    pin.exec("BEGIN; SELECT txid_current()");
    pause_all();
    exec(2, "INSERT INTO t VALUES (1, 'node2'); DELETE FROM t WHERE id = 5");
    exec(1, "INSERT INTO t VALUES (1, 'node1')");
    exec(1, "DELETE FROM t WHERE id = 5");  // on node2: delete_missing, a no-op
    exec(2, "SELECT pgmesh.resume_apply()");
    std::string error = wait_for_last_error(2, "conflict insert_exists");
    std::smatch lsn;
    ASSERT_TRUE(std::regex_search(error, lsn, std::regex("commit LSN ([0-9A-F]+/[0-9A-F]+)")));
    exec(2, "SELECT pgmesh.skip_transaction('node1', '" + lsn[1].str() + "')");
    const char *counts = "SELECT conflicts_by_type::text FROM pgmesh.status";
    const std::string expected = R"({"insert_exists": 1, "delete_missing": 1})";
    ASSERT_TRUE(wait_until([&] { return query_value(2, counts) == expected; }))
        << query_value(2, counts);
    kill9(1);
    start(1);
    exec(1, "INSERT INTO t VALUES (2, 'after the crash')");
    wait_for_sync(1);
    EXPECT_EQ(query_value(2, counts), expected);  // neither was applied a second time
    EXPECT_EQ(query_value(2, "SELECT string_agg(id || v, ',' ORDER BY id) FROM t"),
              "1node2,2after the crash");
}

}  // namespace
}  // namespace pgmesh::test
