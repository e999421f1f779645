// DDL replication (docs/ddl.md): statements run once reach every node at the
// same point in the stream, as the role that ran them and with its
// search_path; what cannot be replicated is refused with 0A000 before
// anything changes; local-only statements stay local; the permission
// settings and their BDR alias; forged messages are not acted on.
#include "cluster_fixture.hpp"

namespace pgmesh::test {
namespace {

class DdlTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 3, .replicate_ddl = true};
    }

    // Runs `sql` on `node` in one transaction allowed to take the global lock.
    void migrate(int node, std::string_view sql) {
        exec(node, "BEGIN");
        try {
            exec(node, "SET LOCAL pgmesh.permit_ddl_locking = on");
            exec(node, sql);
            exec(node, "COMMIT");
        } catch (...) {
            exec(node, "ROLLBACK");
            throw;
        }
    }

    // The same query's rows on every node.
    void expect_everywhere(std::string_view sql, const pq::Rows &expected) {
        for (int n = 1; n <= node_count(); n++)
            EXPECT_EQ(query_rows(n, sql), expected) << "node" << n << ": " << sql;
    }

    std::string columns_of(std::string_view table) {
        return "SELECT column_name::text, data_type::text FROM information_schema.columns "
               "WHERE table_schema || '.' || table_name = '" +
               std::string(table) + "' ORDER BY ordinal_position";
    }

    std::string relation_count(std::string_view name) {
        return "SELECT count(*) FROM pg_class WHERE relname = '" + std::string(name) + "'";
    }
};

TEST_F(DdlTest, ReplicatedDdlNeedsPermissionUnderEitherName) {
    pq::Error e = expect_error(1, "CREATE TABLE accounts (id bigint PRIMARY KEY)", "55000",
                               "needs pgmesh's global DDL lock");
    EXPECT_NE(e.hint().find("SET LOCAL pgmesh.permit_ddl_locking = on"), std::string::npos)
        << e.hint();
    for (int n = 1; n <= node_count(); n++)
        EXPECT_EQ(query_value(n, relation_count("accounts")), "0") << "node" << n;

    // The BDR name, as Alembic hooks written for BDR use it.
    EXPECT_EQ(query_value(1, "SHOW bdr.permit_ddl_locking"), "off");
    exec(1, "BEGIN");
    exec(1, "SET LOCAL bdr.permit_ddl_locking = true");
    exec(1, "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text)");
    exec(1, "INSERT INTO accounts VALUES (1, 'alice')");
    exec(1, "COMMIT");
    EXPECT_EQ(query_value(1, "SHOW bdr.permit_ddl_locking"), "off");
    wait_for_sync(1);
    expect_everywhere(columns_of("public.accounts"), {{"id", "bigint"}, {"owner", "text"}});
    expect_everywhere("SELECT id, owner FROM accounts", {{"1", "alice"}});

    // ALTER ROLE ... SET and ALTER DATABASE ... SET of either name. They
    // are each node's own settings: no lock needed to run them.
    exec(2, "ALTER ROLE postgres SET bdr.permit_ddl_locking = on");
    connect(2).exec("ALTER TABLE accounts ADD COLUMN balance numeric");
    exec(2, "ALTER ROLE postgres RESET bdr.permit_ddl_locking");
    exec(3, "ALTER DATABASE pgmesh SET pgmesh.permit_ddl_locking = on");
    connect(3).exec("CREATE INDEX accounts_owner ON accounts (owner)");
    exec(3, "ALTER DATABASE pgmesh RESET pgmesh.permit_ddl_locking");
    pq::Connection after_reset = connect(3);
    expect_error(after_reset, "DROP INDEX accounts_owner", "55000");
    wait_for_sync_all();
    expect_everywhere(columns_of("public.accounts"),
                      {{"id", "bigint"}, {"owner", "text"}, {"balance", "numeric"}});
    expect_everywhere(relation_count("accounts_owner"), {{"1"}});
    expect_no_apply_errors();
}

TEST_F(DdlTest, MigrationMixingDdlAndDmlInOneTransaction) {
    migrate(1, R"(
        CREATE SCHEMA app;
        CREATE TABLE app.accounts (id bigint PRIMARY KEY, owner text NOT NULL);
        INSERT INTO app.accounts SELECT g, 'owner' || g FROM generate_series(1, 100) g;
        ALTER TABLE app.accounts ADD COLUMN balance numeric NOT NULL DEFAULT 0;
        UPDATE app.accounts SET balance = id * 10;
        CREATE INDEX accounts_balance ON app.accounts (balance);
        ALTER TABLE app.accounts DROP COLUMN owner;
        DO $$
        BEGIN
            EXECUTE 'CREATE TABLE app.audit (id int PRIMARY KEY, note text)';
            INSERT INTO app.audit VALUES (1, 'from DO');
        END $$;
        CREATE FUNCTION app.add_column() RETURNS void LANGUAGE plpgsql AS $f$
        BEGIN
            ALTER TABLE app.audit ADD COLUMN at int;
            UPDATE app.audit SET at = 7;
        END $f$;
        SELECT app.add_column();
    )");
    wait_for_sync(1);
    expect_everywhere(columns_of("app.accounts"), {{"id", "bigint"}, {"balance", "numeric"}});
    expect_everywhere("SELECT count(*), sum(balance) FROM app.accounts", {{"100", "50500"}});
    expect_everywhere("SELECT id, note, at FROM app.audit", {{"1", "from DO", "7"}});
    expect_everywhere(relation_count("accounts_balance"), {{"1"}});

    // The function exists on every node, and calling it on another node
    // replicates the DDL inside it from there.
    migrate(2, "ALTER TABLE app.audit DROP COLUMN at");
    wait_for_sync(2);
    migrate(3, "SELECT app.add_column()");
    wait_for_sync(3);
    expect_everywhere(columns_of("app.audit"),
                      {{"id", "integer"}, {"note", "text"}, {"at", "integer"}});
    expect_everywhere("SELECT id, note, at FROM app.audit", {{"1", "from DO", "7"}});
    expect_no_apply_errors();
    EXPECT_TRUE(verify_all());
}

// Statements that check the rows already there must check the same rows on
// every node: they take the write lock. Without a check, the DDL lock.
TEST_F(DdlTest, StatementsThatCheckExistingRowsTakeTheWriteLock) {
    migrate(1, R"(
        CREATE DOMAIN small_int AS int;
        CREATE TABLE uses_domain (id int PRIMARY KEY, v small_int);
        CREATE TABLE parts (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
        CREATE TABLE parts_other PARTITION OF parts DEFAULT;
        CREATE TABLE plain_parts (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
    )");
    exec(1, "INSERT INTO uses_domain VALUES (1, 5)");
    exec(1, "INSERT INTO parts VALUES (1, 2)");
    // The strength this node holds the lock at, inside the statement's
    // transaction.
    auto strength_of = [&](std::string_view sql) {
        exec(1, "BEGIN");
        exec(1, "SET LOCAL pgmesh.permit_ddl_locking = on");
        exec(1, sql);
        std::string strength = query_value(1, "SELECT strength FROM pgmesh.global_lock");
        exec(1, "COMMIT");
        return strength;
    };
    EXPECT_EQ(strength_of("CREATE TABLE parts_1 PARTITION OF parts FOR VALUES IN (1)"), "write");
    EXPECT_EQ(strength_of("CREATE TABLE plain_parts_1 PARTITION OF plain_parts FOR VALUES IN (1)"),
              "ddl");
    EXPECT_EQ(strength_of("ALTER DOMAIN small_int ADD CONSTRAINT positive CHECK (VALUE > 0)"),
              "write");
    EXPECT_EQ(strength_of("ALTER DOMAIN small_int ADD CONSTRAINT below_100 CHECK (VALUE < 100) "
                          "NOT VALID"),
              "ddl");
    EXPECT_EQ(strength_of("ALTER DOMAIN small_int VALIDATE CONSTRAINT below_100"), "write");
    EXPECT_EQ(strength_of("ALTER DOMAIN small_int SET NOT NULL"), "write");
    wait_for_sync(1);
    expect_everywhere(relation_count("parts_1"), {{"1"}});
    expect_everywhere(relation_count("plain_parts_1"), {{"1"}});
    expect_everywhere(
        "SELECT conname::text FROM pg_constraint WHERE contypid = 'small_int'::regtype "
        "ORDER BY conname",
        {{"below_100"}, {"positive"}});
    expect_everywhere("SELECT tableoid::regclass::text, id FROM parts", {{"parts_other", "1"}});
    expect_no_apply_errors();
}

TEST_F(DdlTest, UnsafeStatementsAreRefusedBeforeAnythingChanges) {
    migrate(1, "CREATE TABLE r (id int PRIMARY KEY, v text, t text)");
    exec(1, "INSERT INTO r VALUES (1, 'a', '1')");
    exec(1, "SET pgmesh.permit_ddl_locking = on");
    struct Refused {
        std::string sql;
        std::string message;
    };
    const std::vector<Refused> refused = {
        {"CREATE TABLE r2 AS SELECT * FROM r", "CREATE TABLE AS"},
        {"SELECT * INTO r3 FROM r", "SELECT INTO"},
        {"CREATE INDEX CONCURRENTLY r_v ON r (v)", "CONCURRENTLY"},
        {"ALTER TABLE r ADD COLUMN x float8 DEFAULT random()", "default"},
        {"ALTER TABLE r ADD COLUMN x timestamptz DEFAULT now()", "default"},
        {"ALTER TABLE r ADD COLUMN x serial", "default"},
        {"ALTER TABLE r ADD COLUMN x int GENERATED ALWAYS AS IDENTITY", "default"},
        {"ALTER TABLE r ALTER COLUMN t TYPE int USING (random() * 10)::int", ""},
        {"CREATE TABLE ex (id int PRIMARY KEY, during int4range, "
         "EXCLUDE USING gist (during WITH &&))",
         "exclusion"},
        {"ALTER TABLE r SET UNLOGGED", ""},
    };
    for (const Refused &r : refused) {
        pq::Error e = expect_error(1, r.sql, "0A000");
        EXPECT_NE(e.message().find("pgmesh"), std::string::npos) << r.sql << ": " << e.message();
        if (!r.message.empty()) {
            EXPECT_NE(e.message().find(r.message), std::string::npos)
                << r.sql << ": " << e.message();
        }
        EXPECT_FALSE(e.hint().empty()) << r.sql;
    }
    // What would have been safe still runs, everywhere.
    exec(1, "ALTER TABLE r ADD COLUMN fixed int NOT NULL DEFAULT 5");
    exec(1, "ALTER TABLE r ALTER COLUMN t TYPE int USING t::int");
    wait_for_sync(1);
    expect_everywhere(columns_of("public.r"),
                      {{"id", "integer"}, {"v", "text"}, {"t", "integer"}, {"fixed", "integer"}});
    expect_everywhere("SELECT id, v, t, fixed FROM r", {{"1", "a", "1", "5"}});
    for (int n = 1; n <= node_count(); n++)
        EXPECT_EQ(query_value(n,
                              "SELECT count(*) FROM pg_class WHERE relname IN "
                              "('r2', 'r3', 'ex', 'r_v')"),
                  "0");

    // A superuser may run one on this node only; pgmesh says so in the log.
    exec(1, "SET pgmesh.replicate_ddl = off");
    exec(1, "CREATE INDEX CONCURRENTLY r_v ON r (v)");
    exec(1, "RESET pgmesh.replicate_ddl");
    EXPECT_EQ(query_value(1, relation_count("r_v")), "1");
    EXPECT_NE(server_log(1).find("pgmesh.replicate_ddl is off: CREATE INDEX ran on this node only"),
              std::string::npos);
    exec(1, "CREATE ROLE alice LOGIN");
    pq::Connection alice = connect_as(1, "alice");
    expect_error(alice, "SET pgmesh.replicate_ddl = off", "42501");

    // A table without a primary key replicates, with a warning.
    exec(1, "CREATE TABLE nokey (v text)");
    wait_for_sync(1);
    expect_everywhere(relation_count("nokey"), {{"1"}});
    EXPECT_NE(server_log(1).find("table \"nokey\" has no primary key"), std::string::npos);
    expect_no_apply_errors();
}

TEST_F(DdlTest, LocalStatementsStayOnTheirNode) {
    // None of these needs the lock.
    exec(1, "CREATE TEMP TABLE scratch (id int PRIMARY KEY)");
    exec(1, "CREATE UNLOGGED TABLE cache (id int PRIMARY KEY)");
    exec(1, "CREATE INDEX cache_id ON cache (id)");
    exec(1, "CREATE ROLE reporting");
    exec(1, "VACUUM");
    exec(1, "ANALYZE");
    exec(1, "CHECKPOINT");
    exec(1, "BEGIN; LOCK TABLE cache; COMMIT");
    migrate(1, "CREATE TABLE marker (id int PRIMARY KEY)");
    wait_for_sync(1);
    EXPECT_EQ(query_value(1, relation_count("cache")), "1");
    for (int n = 2; n <= node_count(); n++) {
        EXPECT_EQ(query_value(n, relation_count("marker")), "1");
        EXPECT_EQ(query_value(n, relation_count("cache")), "0");
        EXPECT_EQ(query_value(n, relation_count("scratch")), "0");
        EXPECT_EQ(query_value(n, "SELECT count(*) FROM pg_roles WHERE rolname = 'reporting'"), "0");
    }
    exec(1, "DROP TABLE cache");
    exec(1, "DROP TABLE scratch");
}

TEST_F(DdlTest, ReplayedDdlRunsAsItsRoleWithItsSearchPath) {
    const std::string role = "o'wner; \"x\\";
    const std::string schema = "sch; \"q'";
    for (int n = 1; n <= node_count(); n++) {
        // Roles and database privileges are each node's own.
        pq::Connection c = connect(n);
        c.exec("CREATE ROLE " + c.quote_identifier(role) + " LOGIN");
        c.exec("GRANT CREATE ON DATABASE pgmesh TO " + c.quote_identifier(role));
    }
    pq::Connection owner = connect_as(1, role);
    owner.exec("SET pgmesh.permit_ddl_locking = on");
    owner.exec("CREATE SCHEMA " + owner.quote_identifier(schema));
    owner.exec("SET search_path = " + owner.quote_identifier(schema));
    owner.exec("CREATE TABLE \"ta'ble\" (id int PRIMARY KEY, v text)");
    owner.exec("INSERT INTO \"ta'ble\" VALUES (1, 'x')");
    wait_for_sync(1);
    expect_everywhere(
        "SELECT n.nspname::text, c.relname::text, pg_get_userbyid(c.relowner)::text "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = 'ta''ble'",
        {{schema, "ta'ble", role}});
    expect_everywhere("SELECT id, v FROM \"sch; \"\"q'\".\"ta'ble\"", {{"1", "x"}});
    expect_no_apply_errors();
}

TEST_F(DdlTest, ForgedMessagesAreNotActedOn) {
    for (int n = 1; n <= node_count(); n++) exec(n, "CREATE ROLE mallory LOGIN");
    migrate(1, "CREATE TABLE victim (id int PRIMARY KEY); GRANT INSERT ON victim TO mallory");
    pq::Connection mallory = connect_as(1, "mallory");
    // Any role may call pg_logical_emit_message with pgmesh's prefixes.
    mallory.exec("BEGIN");
    mallory.exec("SELECT pg_logical_emit_message(true, 'pgmesh_ddl', 'DROP TABLE victim')");
    mallory.exec("INSERT INTO victim VALUES (1)");
    mallory.exec("COMMIT");
    mallory.exec("SELECT pg_logical_emit_message(false, 'pgmesh_lock', 'grant me everything')");
    mallory.exec("INSERT INTO victim VALUES (2)");
    wait_for_sync(1);
    expect_everywhere("SELECT id FROM victim ORDER BY id", {{"1"}, {"2"}});
    expect_no_apply_errors();
    EXPECT_NE(server_log(2).find("pgmesh ignored a DDL message"), std::string::npos);
    EXPECT_NE(server_log(2).find("pgmesh ignored a lock message"), std::string::npos);
    // The lock is free everywhere.
    expect_everywhere("SELECT count(*) FROM pgmesh.global_lock", {{"0"}});
}

TEST_F(DdlTest, ApplyFollowsSchemaChangesMadeElsewhere) {
    migrate(1, "CREATE TABLE items (id int PRIMARY KEY, qty int)");
    wait_for_sync(1);
    exec(2, "INSERT INTO items SELECT g, g FROM generate_series(1, 50) g");
    exec(3, "INSERT INTO items SELECT g, g FROM generate_series(51, 100) g");
    wait_for_sync_all();
    migrate(1, "ALTER TABLE items ADD COLUMN note text; ALTER TABLE items DROP COLUMN qty");
    wait_for_sync(1);
    // Peers now send the new shape: apply must not use the old positions.
    exec(2, "INSERT INTO items VALUES (101, 'from node2')");
    exec(3, "UPDATE items SET note = 'node3' WHERE id <= 10");
    exec(2, "DELETE FROM items WHERE id BETWEEN 91 AND 100");
    wait_for_sync_all();
    expect_everywhere("SELECT count(*), count(note) FROM items", {{"91", "11"}});
    expect_everywhere(columns_of("public.items"), {{"id", "integer"}, {"note", "text"}});
    expect_no_apply_errors();
    EXPECT_TRUE(verify_all());
}

}  // namespace
}  // namespace pgmesh::test
