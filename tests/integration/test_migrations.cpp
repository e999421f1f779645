// DDL replication with the migration tools people use: Alembic with the BDR
// hook in its env.py (SHOW / SET LOCAL bdr.permit_ddl_locking), run online
// and as an offline script fed to psql, and Django with
// pgmesh.permit_ddl_locking = on in its connection options. The projects are
// in migrations/ (see the comments in their env.py and settings.py); they run
// against one node, with Debian's /usr/bin/python3 (scripts/setup installs
// python3-alembic, python3-django and python3-psycopg2), and every node must
// end with the same schema, rows and migration history.
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "cluster_fixture.hpp"
#include "run_process.hpp"

namespace pgmesh::test {
namespace {

namespace fs = std::filesystem;

const fs::path kMigrations = fs::path(PGMESH_SOURCE_DIR) / "tests" / "integration" / "migrations";
const fs::path kAlembicIni = kMigrations / "alembic" / "alembic.ini";
const fs::path kDjangoManage = kMigrations / "django" / "manage.py";
// Not `python3` on PATH: that may be another Python (pyenv, a venv) that does
// not see Debian's packages.
constexpr const char *kPython = "/usr/bin/python3";
// The last revision in migrations/alembic/versions.
constexpr const char *kAlembicHead = "0002";

class MigrationToolTest : public MeshTest {
protected:
    std::optional<MeshOptions> cluster_options() const override {
        return MeshOptions{.nodes = 3, .replicate_ddl = true};
    }

    void SetUp() override {
        // Before any server starts: a missing package is a setup problem.
        ProcessResult modules = python({"-c", "import alembic, django, psycopg2"}, std::nullopt);
        ASSERT_TRUE(modules.ok()) << kPython
                                  << " cannot import alembic, django and psycopg2; "
                                     "scripts/setup installs python3-alembic, python3-django "
                                     "and python3-psycopg2. "
                                  << modules.describe();
        MeshTest::SetUp();
    }

    // Debian's Python with these arguments, PGMESH_TEST_DSN = dsn (unset for
    // nullopt), and no bytecode written into the source tree.
    static ProcessResult python(std::vector<std::string> arguments,
                                const std::optional<std::string> &dsn,
                                bool separate_stderr = false) {
        arguments.insert(arguments.begin(), kPython);
        ProcessOptions options{
            .environment = {{"PGMESH_TEST_DSN", dsn},
                            {"PYTHONDONTWRITEBYTECODE", "1"},
                            {"PYTHONPATH", std::nullopt},
                            {"PYTHONHOME", std::nullopt},
                            {"DJANGO_SETTINGS_MODULE", std::nullopt}},
            .separate_stderr = separate_stderr,
            .timeout = std::chrono::seconds(120),
        };
        return run_process(arguments, options);
    }

    static ProcessResult alembic(const std::vector<std::string> &command,
                                 const std::optional<std::string> &dsn,
                                 bool separate_stderr = false) {
        std::vector<std::string> arguments = {"-m", "alembic", "-c", kAlembicIni.string()};
        arguments.insert(arguments.end(), command.begin(), command.end());
        return python(arguments, dsn, separate_stderr);
    }

    // The single value of sql on node, or "error: <message>" when it fails
    // (a table that never arrived), so that one missing table on one node
    // shows as one failed expectation rather than ending the test.
    std::string value_or_error(int node, const std::string &sql) {
        try {
            return query_nullable(node, sql).value_or("NULL");
        } catch (const pq::Error &error) {
            return "error: " + error.message();
        }
    }

    // Column names of public.<table> on node, comma-separated, in order.
    std::string columns_of(int node, const std::string &table) {
        return value_or_error(node,
                              "SELECT coalesce(string_agg(column_name::text, ',' ORDER BY "
                              "ordinal_position), '(no table)') FROM information_schema.columns "
                              "WHERE table_schema = 'public' AND table_name = '" +
                                  table + "'");
    }

    // wait_for_sync on `node`; when it times out, records a failure that
    // shows every node's pgmesh.status errors (the checks after it then show
    // what is missing where).
    void sync_from(int node) {
        try {
            wait_for_sync(node);
        } catch (const std::exception &error) {
            std::string errors;
            for (int n = 1; n <= node_count(); n++) {
                errors += "\n  node" + std::to_string(n) + ": " +
                          value_or_error(n,
                                         "SELECT coalesce(string_agg(peer_node_name || ': ' || "
                                         "last_error, ' | '), '(no last_error)') "
                                         "FROM pgmesh.status WHERE last_error IS NOT NULL");
            }
            ADD_FAILURE() << error.what() << "; pgmesh.status errors:" << errors;
        }
    }

    // What migrations/alembic's two revisions leave, on every node.
    void expect_alembic_schema_everywhere() {
        for (int n = 1; n <= node_count(); n++) {
            SCOPED_TRACE("node" + std::to_string(n));
            EXPECT_EQ(columns_of(n, "accounts"), "id,owner,created,balance");
            EXPECT_EQ(value_or_error(n,
                                     "SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' "
                                     "AND tablename = 'accounts' AND indexname = "
                                     "'accounts_owner_idx'"),
                      "1");
            EXPECT_EQ(value_or_error(n,
                                     "SELECT string_agg(id || ':' || owner || ':' || balance, ',' "
                                     "ORDER BY id) FROM accounts"),
                      "1:alice:0,2:bob:0");
            EXPECT_EQ(value_or_error(n, "SELECT string_agg(version_num, ',') FROM alembic_version"),
                      kAlembicHead);
        }
    }
};

TEST_F(MigrationToolTest, AlembicMigrationReachesEveryNode) {
    ProcessResult upgrade = alembic({"upgrade", "head"}, dsn(1));
    // pgmesh refuses replicated DDL in sessions without
    // pgmesh.permit_ddl_locking: success means the hook found pgmesh's
    // bdr.permit_ddl_locking alias and took the BDR branch.
    ASSERT_TRUE(upgrade.ok()) << upgrade.describe();

    sync_from(1);
    expect_alembic_schema_everywhere();
    // Same rows everywhere, `created` (now() on node1) included.
    EXPECT_TRUE(verify_all());

    // Another node sees the history: nothing left to run there.
    ProcessResult again = alembic({"upgrade", "head"}, dsn(3));
    EXPECT_TRUE(again.ok()) << again.describe();
    EXPECT_EQ(again.output.find("Running upgrade"), std::string::npos) << again.output;
}

TEST_F(MigrationToolTest, AlembicOfflineScriptCarriesTheBdrHook) {
    // Offline mode connects to nothing: no DSN.
    ProcessResult offline = alembic({"upgrade", "head", "--sql"}, std::nullopt,
                                    /*separate_stderr=*/true);
    ASSERT_TRUE(offline.ok()) << offline.describe();
    const std::string &script = offline.output;
    const size_t hook = script.find("SET LOCAL bdr.permit_ddl_locking = true;");
    ASSERT_NE(hook, std::string::npos) << script;
    // Inside the script's transaction, before its first DDL statement.
    EXPECT_LT(script.find("BEGIN;"), hook) << script;
    EXPECT_LT(hook, script.find("CREATE TABLE")) << script;

    const fs::path script_file = temp_dir() / "alembic_upgrade.sql";
    {
        std::ofstream out(script_file);
        out << script;
        ASSERT_TRUE(out.good()) << "cannot write " << script_file;
    }
    const fs::path psql = local::default_pg_bindir() / "psql";
    ProcessResult applied = run_process(
        {psql.string(), "-X", "-v", "ON_ERROR_STOP=1", "-d", dsn(2), "-f", script_file.string()});
    ASSERT_TRUE(applied.ok()) << applied.describe();

    sync_from(2);
    expect_alembic_schema_everywhere();
    EXPECT_TRUE(verify_all());
}

TEST_F(MigrationToolTest, DjangoMigrationReachesEveryNode) {
    ProcessResult migrate = python({kDjangoManage.string(), "migrate", "--no-input"}, dsn(1));
    ASSERT_TRUE(migrate.ok()) << migrate.describe();
    EXPECT_NE(migrate.output.find("Applying ledger.0002_account_note_entry... OK"),
              std::string::npos)
        << migrate.output;

    sync_from(1);
    std::optional<pq::Rows> history_on_node1;
    try {
        history_on_node1 = query_rows(
            1,
            "SELECT id::text, app::text, name::text, applied::text FROM django_migrations "
            "ORDER BY id");
    } catch (const pq::Error &error) {
        ADD_FAILURE() << "node1: django_migrations: " << error.message();
    }
    for (int n = 1; n <= node_count(); n++) {
        SCOPED_TRACE("node" + std::to_string(n));
        EXPECT_EQ(columns_of(n, "ledger_account"), "id,owner,created,note");
        EXPECT_EQ(columns_of(n, "ledger_entry"), "id,amount,memo,account_id");
        // 0001's data migration made alice; 0002 filled her note with the
        // default, which Django then dropped.
        EXPECT_EQ(value_or_error(n,
                                 "SELECT string_agg(owner || ':[' || note || ']', ',') "
                                 "FROM ledger_account"),
                  "alice:[]");
        EXPECT_EQ(value_or_error(n,
                                 "SELECT coalesce(column_default, 'no default') FROM "
                                 "information_schema.columns WHERE table_schema = 'public' AND "
                                 "table_name = 'ledger_account' AND column_name = 'note'"),
                  "no default");
        EXPECT_EQ(value_or_error(n,
                                 "SELECT count(*) FROM pg_constraint WHERE conrelid = "
                                 "'public.ledger_entry'::regclass AND contype = 'f'"),
                  "1");
        EXPECT_EQ(value_or_error(n,
                                 "SELECT string_agg(app || '.' || name, ',' ORDER BY id) "
                                 "FROM django_migrations"),
                  "ledger.0001_initial,ledger.0002_account_note_entry");
        if (history_on_node1 && n > 1) {
            try {
                EXPECT_EQ(query_rows(n,
                                     "SELECT id::text, app::text, name::text, applied::text "
                                     "FROM django_migrations ORDER BY id"),
                          *history_on_node1);
            } catch (const pq::Error &error) {
                ADD_FAILURE() << "django_migrations: " << error.message();
            }
        }
    }
    EXPECT_TRUE(verify_all());

    // Another node sees the history: nothing left to run there.
    ProcessResult again = python({kDjangoManage.string(), "migrate", "--no-input"}, dsn(2));
    EXPECT_TRUE(again.ok()) << again.describe();
    EXPECT_NE(again.output.find("No migrations to apply."), std::string::npos) << again.output;
}

}  // namespace
}  // namespace pgmesh::test
