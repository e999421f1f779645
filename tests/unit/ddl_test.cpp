#include "ddl.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace pgmesh::ddl {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr Action kDdl = Action::kReplicateDdlLock;
constexpr Action kWrite = Action::kReplicateWriteLock;
constexpr Action kLocal = Action::kLocal;
constexpr Action kNever = Action::kNever;
constexpr Action kRefuse = Action::kRefuse;

struct Expected {
    std::string_view tag;
    Action action;
};

// Every command tag of PostgreSQL 15 (src/include/tcop/cmdtaglist.h, in its
// order) and what a statement with that tag and no special facts does. Written
// out from the rules in docs/ddl.md, not read from the table.
const std::vector<Expected> kExpected = {
    {"???", kRefuse},
    {"ALTER ACCESS METHOD", kDdl},
    {"ALTER AGGREGATE", kDdl},
    {"ALTER CAST", kDdl},
    {"ALTER COLLATION", kDdl},
    {"ALTER CONSTRAINT", kDdl},
    {"ALTER CONVERSION", kDdl},
    {"ALTER DATABASE", kNever},
    {"ALTER DEFAULT PRIVILEGES", kDdl},
    {"ALTER DOMAIN", kDdl},
    {"ALTER EVENT TRIGGER", kDdl},
    {"ALTER EXTENSION", kDdl},
    {"ALTER FOREIGN DATA WRAPPER", kDdl},
    {"ALTER FOREIGN TABLE", kDdl},
    {"ALTER FUNCTION", kDdl},
    {"ALTER INDEX", kDdl},
    {"ALTER LANGUAGE", kDdl},
    {"ALTER LARGE OBJECT", kDdl},
    {"ALTER MATERIALIZED VIEW", kDdl},
    {"ALTER OPERATOR", kDdl},
    {"ALTER OPERATOR CLASS", kDdl},
    {"ALTER OPERATOR FAMILY", kDdl},
    {"ALTER POLICY", kDdl},
    {"ALTER PROCEDURE", kDdl},
    {"ALTER PUBLICATION", kNever},
    {"ALTER ROLE", kNever},
    {"ALTER ROUTINE", kDdl},
    {"ALTER RULE", kDdl},
    {"ALTER SCHEMA", kDdl},
    {"ALTER SEQUENCE", kDdl},
    {"ALTER SERVER", kDdl},
    {"ALTER STATISTICS", kDdl},
    {"ALTER SUBSCRIPTION", kNever},
    {"ALTER SYSTEM", kNever},
    {"ALTER TABLE", kDdl},
    {"ALTER TABLESPACE", kNever},
    {"ALTER TEXT SEARCH CONFIGURATION", kDdl},
    {"ALTER TEXT SEARCH DICTIONARY", kDdl},
    {"ALTER TEXT SEARCH PARSER", kDdl},
    {"ALTER TEXT SEARCH TEMPLATE", kDdl},
    {"ALTER TRANSFORM", kDdl},
    {"ALTER TRIGGER", kDdl},
    {"ALTER TYPE", kDdl},
    {"ALTER USER MAPPING", kDdl},
    {"ALTER VIEW", kDdl},
    {"ANALYZE", kLocal},
    {"BEGIN", kLocal},
    {"CALL", kLocal},
    {"CHECKPOINT", kLocal},
    {"CLOSE", kLocal},
    {"CLOSE CURSOR", kLocal},
    {"CLOSE CURSOR ALL", kLocal},
    {"CLUSTER", kLocal},
    {"COMMENT", kDdl},
    {"COMMIT", kLocal},
    {"COMMIT PREPARED", kLocal},
    {"COPY", kLocal},
    {"COPY FROM", kLocal},
    {"CREATE ACCESS METHOD", kDdl},
    {"CREATE AGGREGATE", kDdl},
    {"CREATE CAST", kDdl},
    {"CREATE COLLATION", kDdl},
    {"CREATE CONSTRAINT", kDdl},
    {"CREATE CONVERSION", kDdl},
    {"CREATE DATABASE", kNever},
    {"CREATE DOMAIN", kDdl},
    {"CREATE EVENT TRIGGER", kDdl},
    {"CREATE EXTENSION", kDdl},
    {"CREATE FOREIGN DATA WRAPPER", kDdl},
    {"CREATE FOREIGN TABLE", kDdl},
    {"CREATE FUNCTION", kDdl},
    {"CREATE INDEX", kDdl},
    {"CREATE LANGUAGE", kDdl},
    {"CREATE MATERIALIZED VIEW", kWrite},
    {"CREATE OPERATOR", kDdl},
    {"CREATE OPERATOR CLASS", kDdl},
    {"CREATE OPERATOR FAMILY", kDdl},
    {"CREATE POLICY", kDdl},
    {"CREATE PROCEDURE", kDdl},
    {"CREATE PUBLICATION", kNever},
    {"CREATE ROLE", kNever},
    {"CREATE ROUTINE", kDdl},
    {"CREATE RULE", kDdl},
    {"CREATE SCHEMA", kDdl},
    {"CREATE SEQUENCE", kDdl},
    {"CREATE SERVER", kDdl},
    {"CREATE STATISTICS", kDdl},
    {"CREATE SUBSCRIPTION", kNever},
    {"CREATE TABLE", kDdl},
    {"CREATE TABLE AS", kRefuse},
    {"CREATE TABLESPACE", kNever},
    {"CREATE TEXT SEARCH CONFIGURATION", kDdl},
    {"CREATE TEXT SEARCH DICTIONARY", kDdl},
    {"CREATE TEXT SEARCH PARSER", kDdl},
    {"CREATE TEXT SEARCH TEMPLATE", kDdl},
    {"CREATE TRANSFORM", kDdl},
    {"CREATE TRIGGER", kDdl},
    {"CREATE TYPE", kDdl},
    {"CREATE USER MAPPING", kDdl},
    {"CREATE VIEW", kDdl},
    {"DEALLOCATE", kLocal},
    {"DEALLOCATE ALL", kLocal},
    {"DECLARE CURSOR", kLocal},
    {"DELETE", kLocal},
    {"DISCARD", kLocal},
    {"DISCARD ALL", kLocal},
    {"DISCARD PLANS", kLocal},
    {"DISCARD SEQUENCES", kLocal},
    {"DISCARD TEMP", kLocal},
    {"DO", kLocal},
    {"DROP ACCESS METHOD", kDdl},
    {"DROP AGGREGATE", kDdl},
    {"DROP CAST", kDdl},
    {"DROP COLLATION", kDdl},
    {"DROP CONSTRAINT", kDdl},
    {"DROP CONVERSION", kDdl},
    {"DROP DATABASE", kNever},
    {"DROP DOMAIN", kDdl},
    {"DROP EVENT TRIGGER", kDdl},
    {"DROP EXTENSION", kDdl},
    {"DROP FOREIGN DATA WRAPPER", kDdl},
    {"DROP FOREIGN TABLE", kWrite},
    {"DROP FUNCTION", kDdl},
    {"DROP INDEX", kDdl},
    {"DROP LANGUAGE", kDdl},
    {"DROP MATERIALIZED VIEW", kDdl},
    {"DROP OPERATOR", kDdl},
    {"DROP OPERATOR CLASS", kDdl},
    {"DROP OPERATOR FAMILY", kDdl},
    {"DROP OWNED", kWrite},
    {"DROP POLICY", kDdl},
    {"DROP PROCEDURE", kDdl},
    {"DROP PUBLICATION", kNever},
    {"DROP ROLE", kNever},
    {"DROP ROUTINE", kDdl},
    {"DROP RULE", kDdl},
    {"DROP SCHEMA", kWrite},
    {"DROP SEQUENCE", kDdl},
    {"DROP SERVER", kDdl},
    {"DROP STATISTICS", kDdl},
    {"DROP SUBSCRIPTION", kNever},
    {"DROP TABLE", kWrite},
    {"DROP TABLESPACE", kNever},
    {"DROP TEXT SEARCH CONFIGURATION", kDdl},
    {"DROP TEXT SEARCH DICTIONARY", kDdl},
    {"DROP TEXT SEARCH PARSER", kDdl},
    {"DROP TEXT SEARCH TEMPLATE", kDdl},
    {"DROP TRANSFORM", kDdl},
    {"DROP TRIGGER", kDdl},
    {"DROP TYPE", kDdl},
    {"DROP USER MAPPING", kDdl},
    {"DROP VIEW", kDdl},
    {"EXECUTE", kLocal},
    {"EXPLAIN", kLocal},
    {"FETCH", kLocal},
    {"GRANT", kDdl},
    {"GRANT ROLE", kNever},
    {"IMPORT FOREIGN SCHEMA", kDdl},
    {"INSERT", kLocal},
    {"LISTEN", kLocal},
    {"LOAD", kLocal},
    {"LOCK TABLE", kLocal},
    {"MERGE", kLocal},
    {"MOVE", kLocal},
    {"NOTIFY", kLocal},
    {"PREPARE", kLocal},
    {"PREPARE TRANSACTION", kLocal},
    {"REASSIGN OWNED", kDdl},
    {"REFRESH MATERIALIZED VIEW", kLocal},
    {"REINDEX", kLocal},
    {"RELEASE", kLocal},
    {"RESET", kLocal},
    {"REVOKE", kDdl},
    {"REVOKE ROLE", kNever},
    {"ROLLBACK", kLocal},
    {"ROLLBACK PREPARED", kLocal},
    {"SAVEPOINT", kLocal},
    {"SECURITY LABEL", kDdl},
    {"SELECT", kLocal},
    {"SELECT FOR KEY SHARE", kLocal},
    {"SELECT FOR NO KEY UPDATE", kLocal},
    {"SELECT FOR SHARE", kLocal},
    {"SELECT FOR UPDATE", kLocal},
    {"SELECT INTO", kRefuse},
    {"SET", kLocal},
    {"SET CONSTRAINTS", kLocal},
    {"SHOW", kLocal},
    {"START TRANSACTION", kLocal},
    {"TRUNCATE TABLE", kLocal},
    {"UNLISTEN", kLocal},
    {"UPDATE", kLocal},
    {"VACUUM", kLocal},
};

Command with_tag(std::string_view tag) {
    Command c;
    c.tag = tag;
    return c;
}

Action action_of(const Command &c) {
    return classify(c).action;
}

void expect_refused(const Decision &d, std::string_view message_part, std::string_view hint_part) {
    EXPECT_EQ(d.action, kRefuse);
    EXPECT_THAT(d.message, StartsWith("pgmesh cannot replicate "));
    EXPECT_THAT(d.message, HasSubstr(message_part));
    EXPECT_THAT(d.hint, HasSubstr(hint_part));
}

TEST(DdlKnownTags, AreExactlyPostgres15sCommandTagsInOrder) {
    std::vector<std::string_view> tags = known_tags();
    ASSERT_EQ(tags.size(), 192u);
    ASSERT_EQ(tags.size(), kExpected.size());
    for (size_t i = 0; i < tags.size(); i++) EXPECT_EQ(tags[i], kExpected[i].tag) << i;
    EXPECT_EQ(std::set<std::string_view>(tags.begin(), tags.end()).size(), tags.size());
}

TEST(DdlClassify, EveryTagHasItsStatedDecision) {
    for (const Expected &e : kExpected) {
        Decision d = classify(with_tag(e.tag));
        EXPECT_EQ(name(d.action), name(e.action)) << e.tag;
        if (e.action == kRefuse) {
            EXPECT_FALSE(d.message.empty()) << e.tag;
            EXPECT_FALSE(d.hint.empty()) << e.tag;
        } else {
            EXPECT_EQ(d.message, "") << e.tag;
            EXPECT_EQ(d.hint, "") << e.tag;
        }
    }
}

TEST(DdlClassify, UnknownTagsAreRefused) {
    for (std::string_view tag : {"FROBNICATE WIDGET", "CREATE PROPERTY GRAPH", "create table",
                                 "CREATE TABLE ", "", "???"}) {
        Decision d = classify(with_tag(tag));
        EXPECT_EQ(d.action, kRefuse) << tag;
        EXPECT_EQ(d.message, "pgmesh does not know how to replicate " + std::string(tag));
        EXPECT_THAT(d.hint, HasSubstr("on each node"));
        EXPECT_THAT(d.hint, HasSubstr("SET pgmesh.replicate_ddl = off"));
        EXPECT_THAT(d.hint, HasSubstr("superuser"));
    }
}

TEST(DdlClassify, CreateTableAsAndSelectIntoAreRefused) {
    for (std::string_view tag : {"CREATE TABLE AS", "SELECT INTO"}) {
        Decision d = classify(with_tag(tag));
        expect_refused(d, tag, "CREATE TABLE");
        EXPECT_THAT(d.message, HasSubstr("run the query"));
        EXPECT_THAT(d.hint, HasSubstr("INSERT INTO ... SELECT"));
        // CREATE TEMP TABLE ... AS is this session's own.
        Command temp = with_tag(tag);
        temp.persistence = Persistence::kTemporary;
        EXPECT_EQ(action_of(temp), kLocal) << tag;
    }
}

TEST(DdlClassify, ConcurrentlyIsRefusedWhereItWouldReplicate) {
    for (std::string_view tag : {"CREATE INDEX", "DROP INDEX", "ALTER TABLE"}) {
        Command c = with_tag(tag);
        c.concurrently = true;
        Decision d = classify(c);
        expect_refused(d, "CONCURRENTLY", "without CONCURRENTLY");
        EXPECT_THAT(d.hint, HasSubstr("SET pgmesh.replicate_ddl = off"));
        // On temporary objects it is this node's own business.
        c.persistence = Persistence::kTemporary;
        EXPECT_EQ(action_of(c), kLocal) << tag;
    }
    Command create = with_tag("CREATE INDEX");
    create.concurrently = true;
    EXPECT_THAT(classify(create).message, HasSubstr("CREATE INDEX CONCURRENTLY"));
    EXPECT_THAT(classify(create).message, HasSubstr("inside the transaction"));
    EXPECT_THAT(classify(create).hint, HasSubstr("under the global lock"));
    EXPECT_THAT(classify(create).hint, HasSubstr("on each node"));
    Command detach = with_tag("ALTER TABLE");
    detach.concurrently = true;
    EXPECT_THAT(classify(detach).message, HasSubstr("DETACH PARTITION CONCURRENTLY"));
    // REINDEX and REFRESH MATERIALIZED VIEW are each node's own, CONCURRENTLY
    // or not.
    for (std::string_view tag : {"REINDEX", "REFRESH MATERIALIZED VIEW"}) {
        Command c = with_tag(tag);
        EXPECT_EQ(action_of(c), kLocal) << tag;
        c.concurrently = true;
        EXPECT_EQ(action_of(c), kLocal) << tag;
    }
}

TEST(DdlClassify, ExclusionConstraintsAreRefused) {
    for (std::string_view tag : {"CREATE TABLE", "ALTER TABLE"}) {
        Command c = with_tag(tag);
        c.exclusion_constraint = true;
        expect_refused(classify(c), "exclusion constraint", "unique constraint");
        EXPECT_THAT(classify(c).hint, HasSubstr("application"));
        EXPECT_THAT(classify(c).message, HasSubstr(tag));
    }
}

TEST(DdlClassify, NonImmutableDefaultsAreRefused) {
    Command c = with_tag("ALTER TABLE");
    c.changes_table_shape = true;
    c.non_immutable_default = true;
    Decision d = classify(c);
    expect_refused(d, "default", "SET DEFAULT");
    EXPECT_THAT(d.message, HasSubstr("not immutable"));
    EXPECT_THAT(d.message, HasSubstr("existing rows"));
    EXPECT_THAT(d.hint, HasSubstr("without a default"));
    EXPECT_THAT(d.hint, HasSubstr("UPDATE"));
}

TEST(DdlClassify, NonImmutableConversionsAreRefused) {
    Command c = with_tag("ALTER TABLE");
    c.changes_table_shape = true;
    c.non_immutable_conversion = true;
    Decision d = classify(c);
    expect_refused(d, "not immutable", "UPDATE");
    EXPECT_THAT(d.message, HasSubstr("type"));
    EXPECT_THAT(d.hint, HasSubstr("drop the old column"));
    EXPECT_THAT(d.hint, HasSubstr("rename"));
}

TEST(DdlClassify, SetLoggedAndUnloggedAreRefusedWhateverThePersistence) {
    for (Persistence p :
         {Persistence::kPermanent, Persistence::kUnlogged, Persistence::kTemporary}) {
        Command c = with_tag("ALTER TABLE");
        c.changes_logged = true;
        c.persistence = p;
        Decision d = classify(c);
        expect_refused(d, "SET UNLOGGED", "new table");
        EXPECT_THAT(d.message, HasSubstr("replication on one node"));
        EXPECT_THAT(d.hint, HasSubstr("copy the rows"));
    }
}

TEST(DdlClassify, MixedPersistenceIsRefused) {
    for (std::string_view tag : {"DROP TABLE", "DROP SEQUENCE", "DROP VIEW", "DROP INDEX"}) {
        for (Persistence p : {Persistence::kPermanent, Persistence::kTemporary}) {
            Command c = with_tag(tag);
            c.mixed_persistence = true;
            c.persistence = p;
            expect_refused(classify(c), "temporary and permanent", "separate statements");
            EXPECT_THAT(classify(c).hint, StartsWith("Drop"));
        }
    }
    Command grant = with_tag("GRANT");
    grant.mixed_persistence = true;
    expect_refused(classify(grant), "temporary and permanent", "separate statements");
}

TEST(DdlClassify, DropExtensionPgmeshIsRefused) {
    Command c = with_tag("DROP EXTENSION");
    c.targets_pgmesh = true;
    Decision d = classify(c);
    expect_refused(d, "DROP EXTENSION pgmesh", "pgmesh.part_node");
    c.cascade = true;
    EXPECT_EQ(action_of(c), kRefuse);
    // Other extensions replicate.
    EXPECT_EQ(action_of(with_tag("DROP EXTENSION")), kDdl);
    Command other = with_tag("DROP EXTENSION");
    other.cascade = true;
    EXPECT_EQ(action_of(other), kWrite);
}

TEST(DdlClassify, PgmeshsOwnObjectsAreLocal) {
    for (std::string_view tag :
         {"CREATE EXTENSION", "ALTER EXTENSION", "ALTER TABLE", "DROP TABLE", "CREATE INDEX",
          "GRANT", "REVOKE", "COMMENT", "ALTER FUNCTION", "DROP SCHEMA"}) {
        Command c = with_tag(tag);
        c.targets_pgmesh = true;
        c.changes_table_shape = true;
        c.unique_index = true;
        c.cascade = true;
        EXPECT_EQ(action_of(c), kLocal) << tag;
    }
    // Refusals still come first.
    Command c = with_tag("CREATE INDEX");
    c.targets_pgmesh = true;
    c.concurrently = true;
    EXPECT_EQ(action_of(c), kRefuse);
    // Cluster-wide tags stay never.
    Command role = with_tag("GRANT ROLE");
    role.targets_pgmesh = true;
    EXPECT_EQ(action_of(role), kNever);
}

TEST(DdlClassify, TemporaryAndUnloggedObjectsAreLocal) {
    for (Persistence p : {Persistence::kTemporary, Persistence::kUnlogged}) {
        for (std::string_view tag :
             {"CREATE TABLE", "ALTER TABLE", "DROP TABLE", "CREATE INDEX", "DROP INDEX",
              "ALTER INDEX", "CREATE SEQUENCE", "ALTER SEQUENCE", "DROP SEQUENCE", "CREATE VIEW",
              "DROP VIEW", "COMMENT", "GRANT", "REVOKE", "SECURITY LABEL", "CREATE TRIGGER",
              "CREATE POLICY", "CREATE STATISTICS", "CREATE RULE"}) {
            Command c = with_tag(tag);
            c.persistence = p;
            c.changes_table_shape = true;
            c.unique_index = true;
            c.cascade = true;
            EXPECT_EQ(action_of(c), kLocal) << tag;
        }
    }
    // Persistence does not make never tags local.
    Command role = with_tag("CREATE ROLE");
    role.persistence = Persistence::kTemporary;
    EXPECT_EQ(action_of(role), kNever);
    // What would be refused on a replicated table is this node's own
    // business on a temporary or unlogged one: nothing of it replicates.
    Command exclusion = with_tag("CREATE TABLE");
    exclusion.persistence = Persistence::kTemporary;
    exclusion.exclusion_constraint = true;
    EXPECT_EQ(action_of(exclusion), kLocal);
    Command volatile_default = with_tag("ALTER TABLE");
    volatile_default.persistence = Persistence::kUnlogged;
    volatile_default.non_immutable_default = true;
    EXPECT_EQ(action_of(volatile_default), kLocal);
    // Except SET LOGGED, which would start replicating a table other nodes
    // do not have.
    Command logged = with_tag("ALTER TABLE");
    logged.persistence = Persistence::kUnlogged;
    logged.changes_logged = true;
    EXPECT_EQ(action_of(logged), kRefuse);
}

TEST(DdlClassify, OnlyTablespaceIsLocal) {
    for (std::string_view tag : {"ALTER TABLE", "ALTER INDEX", "ALTER MATERIALIZED VIEW"}) {
        Command c = with_tag(tag);
        c.only_tablespace = true;
        EXPECT_EQ(action_of(c), kLocal) << tag;
    }
    Command both = with_tag("ALTER TABLE");
    both.only_tablespace = true;
    both.changes_logged = true;
    EXPECT_EQ(action_of(both), kRefuse);
}

TEST(DdlClassify, CascadeTakesTheWriteLock) {
    for (std::string_view tag :
         {"DROP FUNCTION", "DROP TYPE", "DROP DOMAIN", "DROP VIEW", "DROP MATERIALIZED VIEW",
          "DROP SEQUENCE", "DROP INDEX", "DROP EXTENSION", "DROP COLLATION", "DROP OPERATOR",
          "DROP SERVER", "DROP FOREIGN DATA WRAPPER", "DROP TABLE", "DROP SCHEMA"}) {
        Command c = with_tag(tag);
        c.cascade = true;
        EXPECT_EQ(action_of(c), kWrite) << tag;
    }
    // Without CASCADE, only DROP TABLE, DROP FOREIGN TABLE, DROP SCHEMA and
    // DROP OWNED take it.
    EXPECT_EQ(action_of(with_tag("DROP FUNCTION")), kDdl);
    EXPECT_EQ(action_of(with_tag("DROP TYPE")), kDdl);
    EXPECT_EQ(action_of(with_tag("DROP TABLE")), kWrite);
    EXPECT_EQ(action_of(with_tag("DROP FOREIGN TABLE")), kWrite);
    EXPECT_EQ(action_of(with_tag("DROP SCHEMA")), kWrite);
    EXPECT_EQ(action_of(with_tag("DROP OWNED")), kWrite);
    // CASCADE on what is not a DROP, or on a cluster-wide DROP, changes nothing.
    for (std::string_view tag : {"REVOKE", "ALTER TABLE", "COMMENT"}) {
        Command c = with_tag(tag);
        c.cascade = true;
        EXPECT_EQ(action_of(c), kDdl) << tag;
    }
    Command role = with_tag("DROP ROLE");
    role.cascade = true;
    EXPECT_EQ(action_of(role), kNever);
}

TEST(DdlClassify, TableShapeChangesTakeTheWriteLock) {
    for (std::string_view tag : {"ALTER TABLE", "ALTER FOREIGN TABLE", "ALTER TYPE"}) {
        Command c = with_tag(tag);
        EXPECT_EQ(action_of(c), kDdl) << tag;
        c.changes_table_shape = true;
        EXPECT_EQ(action_of(c), kWrite) << tag;
    }
    for (std::string_view tag : {"ALTER VIEW", "ALTER INDEX", "ALTER SEQUENCE", "CREATE TABLE"}) {
        Command c = with_tag(tag);
        c.changes_table_shape = true;
        EXPECT_EQ(action_of(c), kDdl) << tag;
    }
}

TEST(DdlClassify, UniqueIndexesTakeTheWriteLock) {
    Command c = with_tag("CREATE INDEX");
    EXPECT_EQ(action_of(c), kDdl);
    c.unique_index = true;
    EXPECT_EQ(action_of(c), kWrite);
    c.persistence = Persistence::kTemporary;
    EXPECT_EQ(action_of(c), kLocal);
    c.persistence = Persistence::kPermanent;
    c.concurrently = true;
    EXPECT_EQ(action_of(c), kRefuse);
    Command alter = with_tag("ALTER INDEX");
    alter.unique_index = true;
    EXPECT_EQ(action_of(alter), kDdl);
}

TEST(DdlClassify, StatementsThatCheckExistingRowsTakeTheWriteLock) {
    for (std::string_view tag : {"CREATE TABLE", "ALTER DOMAIN"}) {
        Command c = with_tag(tag);
        EXPECT_EQ(action_of(c), kDdl) << tag;
        c.checks_existing_rows = true;
        EXPECT_EQ(action_of(c), kWrite) << tag;
        c.persistence = Persistence::kTemporary;
        EXPECT_EQ(action_of(c), kLocal) << tag;
    }
    Command vacuum = with_tag("VACUUM");
    vacuum.checks_existing_rows = true;
    EXPECT_EQ(action_of(vacuum), kLocal);
}

TEST(DdlClassify, MaterializedViewsTakeTheWriteLock) {
    EXPECT_EQ(action_of(with_tag("CREATE MATERIALIZED VIEW")), kWrite);
    EXPECT_EQ(action_of(with_tag("ALTER MATERIALIZED VIEW")), kDdl);
    EXPECT_EQ(action_of(with_tag("DROP MATERIALIZED VIEW")), kDdl);
}

TEST(DdlClassify, ClusterWideObjectsAreNeverReplicated) {
    for (std::string_view tag : {"GRANT", "REVOKE", "COMMENT", "SECURITY LABEL"}) {
        Command c = with_tag(tag);
        c.cluster_wide = true;
        EXPECT_EQ(action_of(c), kNever) << tag;
        EXPECT_EQ(action_of(with_tag(tag)), kDdl) << tag;
    }
}

TEST(DdlClassify, LocalAndNeverTagsIgnoreTheFacts) {
    Command vacuum = with_tag("VACUUM");
    vacuum.concurrently = true;
    vacuum.cascade = true;
    vacuum.mixed_persistence = true;
    EXPECT_EQ(action_of(vacuum), kLocal);
    Command truncate = with_tag("TRUNCATE TABLE");
    truncate.cascade = true;
    EXPECT_EQ(action_of(truncate), kLocal);
    Command db = with_tag("DROP DATABASE");
    db.mixed_persistence = true;
    db.concurrently = true;
    EXPECT_EQ(action_of(db), kNever);
}

TEST(DdlName, NamesEachAction) {
    EXPECT_EQ(name(Action::kReplicateDdlLock), "DDL lock");
    EXPECT_EQ(name(Action::kReplicateWriteLock), "write lock");
    EXPECT_EQ(name(Action::kLocal), "local");
    EXPECT_EQ(name(Action::kNever), "never");
    EXPECT_EQ(name(Action::kRefuse), "refuse");
}

}  // namespace
}  // namespace pgmesh::ddl
