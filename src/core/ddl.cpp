#include "ddl.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <utility>

#include "cpp_only.hpp"

namespace pgmesh::ddl {

namespace {

// What a tag's Command facts can change, beyond the facts every replicated
// tag is checked for (see classify()).
enum Flag : uint8_t {
    kNoFlags = 0,
    // A DROP: with CASCADE it may drop columns or tables it does not name, so
    // it takes the write lock.
    kDrop = 1 << 0,
    // changes_table_shape takes the write lock.
    kShape = 1 << 1,
    // unique_index takes the write lock: every node must agree that the rows
    // are unique.
    kUniqueIndex = 1 << 2,
    // targets_pgmesh is refused (DROP EXTENSION pgmesh) instead of run here
    // only.
    kRefusePgmesh = 1 << 3,
    // Refused: runs a query whose rows it inserts into a new table.
    kQueryCopy = 1 << 4,
};

struct Entry {
    std::string_view tag;
    Action action;
    uint8_t flags;
};

constexpr Action kDdl = Action::kReplicateDdlLock;
constexpr Action kWrite = Action::kReplicateWriteLock;
constexpr Action kLocal = Action::kLocal;
constexpr Action kNever = Action::kNever;
constexpr Action kRefuse = Action::kRefuse;

// Every command tag of PostgreSQL 15 (src/include/tcop/cmdtaglist.h), in its
// (ASCII) order, with what pgmesh does when the statement has no special
// facts. docs/ddl.md describes the same table; tests/unit/ddl_test.cpp states
// every row again.
constexpr std::array<Entry, 192> kTable = {{
    // Not a tag PostgreSQL gives any statement it knows: nothing to go by.
    {"???", kRefuse, kNoFlags},
    {"ALTER ACCESS METHOD", kDdl, kNoFlags},
    {"ALTER AGGREGATE", kDdl, kNoFlags},
    {"ALTER CAST", kDdl, kNoFlags},
    {"ALTER COLLATION", kDdl, kNoFlags},
    {"ALTER CONSTRAINT", kDdl, kNoFlags},
    {"ALTER CONVERSION", kDdl, kNoFlags},
    {"ALTER DATABASE", kNever, kNoFlags},
    {"ALTER DEFAULT PRIVILEGES", kDdl, kNoFlags},
    {"ALTER DOMAIN", kDdl, kNoFlags},
    {"ALTER EVENT TRIGGER", kDdl, kNoFlags},
    {"ALTER EXTENSION", kDdl, kNoFlags},
    {"ALTER FOREIGN DATA WRAPPER", kDdl, kNoFlags},
    {"ALTER FOREIGN TABLE", kDdl, kShape},
    {"ALTER FUNCTION", kDdl, kNoFlags},
    {"ALTER INDEX", kDdl, kNoFlags},
    {"ALTER LANGUAGE", kDdl, kNoFlags},
    {"ALTER LARGE OBJECT", kDdl, kNoFlags},
    {"ALTER MATERIALIZED VIEW", kDdl, kNoFlags},
    {"ALTER OPERATOR", kDdl, kNoFlags},
    {"ALTER OPERATOR CLASS", kDdl, kNoFlags},
    {"ALTER OPERATOR FAMILY", kDdl, kNoFlags},
    {"ALTER POLICY", kDdl, kNoFlags},
    {"ALTER PROCEDURE", kDdl, kNoFlags},
    {"ALTER PUBLICATION", kNever, kNoFlags},
    {"ALTER ROLE", kNever, kNoFlags},
    {"ALTER ROUTINE", kDdl, kNoFlags},
    {"ALTER RULE", kDdl, kNoFlags},
    {"ALTER SCHEMA", kDdl, kNoFlags},
    {"ALTER SEQUENCE", kDdl, kNoFlags},
    {"ALTER SERVER", kDdl, kNoFlags},
    {"ALTER STATISTICS", kDdl, kNoFlags},
    {"ALTER SUBSCRIPTION", kNever, kNoFlags},
    {"ALTER SYSTEM", kNever, kNoFlags},
    {"ALTER TABLE", kDdl, kShape},
    {"ALTER TABLESPACE", kNever, kNoFlags},
    {"ALTER TEXT SEARCH CONFIGURATION", kDdl, kNoFlags},
    {"ALTER TEXT SEARCH DICTIONARY", kDdl, kNoFlags},
    {"ALTER TEXT SEARCH PARSER", kDdl, kNoFlags},
    {"ALTER TEXT SEARCH TEMPLATE", kDdl, kNoFlags},
    {"ALTER TRANSFORM", kDdl, kNoFlags},
    {"ALTER TRIGGER", kDdl, kNoFlags},
    {"ALTER TYPE", kDdl, kShape},
    {"ALTER USER MAPPING", kDdl, kNoFlags},
    {"ALTER VIEW", kDdl, kNoFlags},
    {"ANALYZE", kLocal, kNoFlags},
    {"BEGIN", kLocal, kNoFlags},
    {"CALL", kLocal, kNoFlags},
    {"CHECKPOINT", kLocal, kNoFlags},
    {"CLOSE", kLocal, kNoFlags},
    {"CLOSE CURSOR", kLocal, kNoFlags},
    {"CLOSE CURSOR ALL", kLocal, kNoFlags},
    {"CLUSTER", kLocal, kNoFlags},
    {"COMMENT", kDdl, kNoFlags},
    {"COMMIT", kLocal, kNoFlags},
    {"COMMIT PREPARED", kLocal, kNoFlags},
    {"COPY", kLocal, kNoFlags},
    {"COPY FROM", kLocal, kNoFlags},
    {"CREATE ACCESS METHOD", kDdl, kNoFlags},
    {"CREATE AGGREGATE", kDdl, kNoFlags},
    {"CREATE CAST", kDdl, kNoFlags},
    {"CREATE COLLATION", kDdl, kNoFlags},
    {"CREATE CONSTRAINT", kDdl, kNoFlags},
    {"CREATE CONVERSION", kDdl, kNoFlags},
    {"CREATE DATABASE", kNever, kNoFlags},
    {"CREATE DOMAIN", kDdl, kNoFlags},
    {"CREATE EVENT TRIGGER", kDdl, kNoFlags},
    {"CREATE EXTENSION", kDdl, kNoFlags},
    {"CREATE FOREIGN DATA WRAPPER", kDdl, kNoFlags},
    {"CREATE FOREIGN TABLE", kDdl, kNoFlags},
    {"CREATE FUNCTION", kDdl, kNoFlags},
    {"CREATE INDEX", kDdl, kUniqueIndex},
    {"CREATE LANGUAGE", kDdl, kNoFlags},
    // Computed from this node's rows, which every node must then hold too.
    {"CREATE MATERIALIZED VIEW", kWrite, kNoFlags},
    {"CREATE OPERATOR", kDdl, kNoFlags},
    {"CREATE OPERATOR CLASS", kDdl, kNoFlags},
    {"CREATE OPERATOR FAMILY", kDdl, kNoFlags},
    {"CREATE POLICY", kDdl, kNoFlags},
    {"CREATE PROCEDURE", kDdl, kNoFlags},
    {"CREATE PUBLICATION", kNever, kNoFlags},
    {"CREATE ROLE", kNever, kNoFlags},
    {"CREATE ROUTINE", kDdl, kNoFlags},
    {"CREATE RULE", kDdl, kNoFlags},
    {"CREATE SCHEMA", kDdl, kNoFlags},
    {"CREATE SEQUENCE", kDdl, kNoFlags},
    {"CREATE SERVER", kDdl, kNoFlags},
    {"CREATE STATISTICS", kDdl, kNoFlags},
    {"CREATE SUBSCRIPTION", kNever, kNoFlags},
    {"CREATE TABLE", kDdl, kNoFlags},
    // Every node would run the query and also receive this node's rows.
    {"CREATE TABLE AS", kRefuse, kQueryCopy},
    {"CREATE TABLESPACE", kNever, kNoFlags},
    {"CREATE TEXT SEARCH CONFIGURATION", kDdl, kNoFlags},
    {"CREATE TEXT SEARCH DICTIONARY", kDdl, kNoFlags},
    {"CREATE TEXT SEARCH PARSER", kDdl, kNoFlags},
    {"CREATE TEXT SEARCH TEMPLATE", kDdl, kNoFlags},
    {"CREATE TRANSFORM", kDdl, kNoFlags},
    {"CREATE TRIGGER", kDdl, kNoFlags},
    {"CREATE TYPE", kDdl, kNoFlags},
    {"CREATE USER MAPPING", kDdl, kNoFlags},
    {"CREATE VIEW", kDdl, kNoFlags},
    {"DEALLOCATE", kLocal, kNoFlags},
    {"DEALLOCATE ALL", kLocal, kNoFlags},
    {"DECLARE CURSOR", kLocal, kNoFlags},
    {"DELETE", kLocal, kNoFlags},
    {"DISCARD", kLocal, kNoFlags},
    {"DISCARD ALL", kLocal, kNoFlags},
    {"DISCARD PLANS", kLocal, kNoFlags},
    {"DISCARD SEQUENCES", kLocal, kNoFlags},
    {"DISCARD TEMP", kLocal, kNoFlags},
    {"DO", kLocal, kNoFlags},
    {"DROP ACCESS METHOD", kDdl, kDrop},
    {"DROP AGGREGATE", kDdl, kDrop},
    {"DROP CAST", kDdl, kDrop},
    {"DROP COLLATION", kDdl, kDrop},
    {"DROP CONSTRAINT", kDdl, kDrop},
    {"DROP CONVERSION", kDdl, kDrop},
    {"DROP DATABASE", kNever, kNoFlags},
    {"DROP DOMAIN", kDdl, kDrop},
    {"DROP EVENT TRIGGER", kDdl, kDrop},
    {"DROP EXTENSION", kDdl, kDrop | kRefusePgmesh},
    {"DROP FOREIGN DATA WRAPPER", kDdl, kDrop},
    {"DROP FOREIGN TABLE", kWrite, kDrop},
    {"DROP FUNCTION", kDdl, kDrop},
    {"DROP INDEX", kDdl, kDrop},
    {"DROP LANGUAGE", kDdl, kDrop},
    {"DROP MATERIALIZED VIEW", kDdl, kDrop},
    {"DROP OPERATOR", kDdl, kDrop},
    {"DROP OPERATOR CLASS", kDdl, kDrop},
    {"DROP OPERATOR FAMILY", kDdl, kDrop},
    // Drops whatever the roles own, tables included.
    {"DROP OWNED", kWrite, kDrop},
    {"DROP POLICY", kDdl, kDrop},
    {"DROP PROCEDURE", kDdl, kDrop},
    {"DROP PUBLICATION", kNever, kNoFlags},
    {"DROP ROLE", kNever, kNoFlags},
    {"DROP ROUTINE", kDdl, kDrop},
    {"DROP RULE", kDdl, kDrop},
    // Drops the tables in the schema, named or not.
    {"DROP SCHEMA", kWrite, kDrop},
    {"DROP SEQUENCE", kDdl, kDrop},
    {"DROP SERVER", kDdl, kDrop},
    {"DROP STATISTICS", kDdl, kDrop},
    {"DROP SUBSCRIPTION", kNever, kNoFlags},
    {"DROP TABLE", kWrite, kDrop},
    {"DROP TABLESPACE", kNever, kNoFlags},
    {"DROP TEXT SEARCH CONFIGURATION", kDdl, kDrop},
    {"DROP TEXT SEARCH DICTIONARY", kDdl, kDrop},
    {"DROP TEXT SEARCH PARSER", kDdl, kDrop},
    {"DROP TEXT SEARCH TEMPLATE", kDdl, kDrop},
    {"DROP TRANSFORM", kDdl, kDrop},
    {"DROP TRIGGER", kDdl, kDrop},
    {"DROP TYPE", kDdl, kDrop},
    {"DROP USER MAPPING", kDdl, kDrop},
    {"DROP VIEW", kDdl, kDrop},
    {"EXECUTE", kLocal, kNoFlags},
    {"EXPLAIN", kLocal, kNoFlags},
    {"FETCH", kLocal, kNoFlags},
    {"GRANT", kDdl, kNoFlags},
    {"GRANT ROLE", kNever, kNoFlags},
    {"IMPORT FOREIGN SCHEMA", kDdl, kNoFlags},
    {"INSERT", kLocal, kNoFlags},
    {"LISTEN", kLocal, kNoFlags},
    {"LOAD", kLocal, kNoFlags},
    {"LOCK TABLE", kLocal, kNoFlags},
    {"MERGE", kLocal, kNoFlags},
    {"MOVE", kLocal, kNoFlags},
    {"NOTIFY", kLocal, kNoFlags},
    {"PREPARE", kLocal, kNoFlags},
    {"PREPARE TRANSACTION", kLocal, kNoFlags},
    {"REASSIGN OWNED", kDdl, kNoFlags},
    // Each node refreshes its own, from its own rows.
    {"REFRESH MATERIALIZED VIEW", kLocal, 0},
    {"REINDEX", kLocal, 0},
    {"RELEASE", kLocal, kNoFlags},
    {"RESET", kLocal, kNoFlags},
    {"REVOKE", kDdl, kNoFlags},
    {"REVOKE ROLE", kNever, kNoFlags},
    {"ROLLBACK", kLocal, kNoFlags},
    {"ROLLBACK PREPARED", kLocal, kNoFlags},
    {"SAVEPOINT", kLocal, kNoFlags},
    {"SECURITY LABEL", kDdl, kNoFlags},
    {"SELECT", kLocal, kNoFlags},
    {"SELECT FOR KEY SHARE", kLocal, kNoFlags},
    {"SELECT FOR NO KEY UPDATE", kLocal, kNoFlags},
    {"SELECT FOR SHARE", kLocal, kNoFlags},
    {"SELECT FOR UPDATE", kLocal, kNoFlags},
    // As CREATE TABLE AS.
    {"SELECT INTO", kRefuse, kQueryCopy},
    {"SET", kLocal, kNoFlags},
    {"SET CONSTRAINTS", kLocal, kNoFlags},
    {"SHOW", kLocal, kNoFlags},
    {"START TRANSACTION", kLocal, kNoFlags},
    // The rows it removes replicate through the data stream.
    {"TRUNCATE TABLE", kLocal, kNoFlags},
    {"UNLISTEN", kLocal, kNoFlags},
    {"UPDATE", kLocal, kNoFlags},
    {"VACUUM", kLocal, kNoFlags},
}};

constexpr bool strictly_ascending() {
    for (size_t i = 1; i < kTable.size(); i++)
        if (!(kTable[i - 1].tag < kTable[i].tag)) return false;
    return true;
}
static_assert(strictly_ascending(), "the table is looked up by binary search: keep it sorted");

const Entry *find(std::string_view tag) {
    auto it = std::lower_bound(kTable.begin(), kTable.end(), tag,
                               [](const Entry &e, std::string_view t) { return e.tag < t; });
    if (it == kTable.end() || it->tag != tag) return nullptr;
    return &*it;
}

constexpr std::string_view kOnEachNode =
    "run it on each node in a session with SET pgmesh.replicate_ddl = off (superuser only)";

Decision refuse(std::string message, std::string hint) {
    return Decision{Action::kRefuse, std::move(message), std::move(hint)};
}

Decision unknown(std::string_view tag) {
    return refuse("pgmesh does not know how to replicate " + std::string(tag),
                  "To run it anyway, " + std::string(kOnEachNode) + ".");
}

Decision refuse_query_copy(std::string_view tag) {
    return refuse("pgmesh cannot replicate " + std::string(tag) +
                      ": every node would run the query and also receive the rows it "
                      "inserted on this node",
                  "Create the table with CREATE TABLE first, then fill it with INSERT INTO ... "
                  "SELECT, which replicates as rows.");
}

Decision refuse_concurrently(std::string_view tag) {
    std::string what = tag == "ALTER TABLE" ? "ALTER TABLE ... DETACH PARTITION CONCURRENTLY"
                                            : std::string(tag) + " CONCURRENTLY";
    return refuse(
        "pgmesh cannot replicate " + what +
            ": it cannot run inside the transaction that carries it to the other "
            "nodes",
        "Run it without CONCURRENTLY under the global lock, or " + std::string(kOnEachNode) + ".");
}

}  // namespace

Decision classify(const Command &command) {
    const Entry *entry = find(command.tag);
    if (!entry) return unknown(command.tag);
    const std::string tag(command.tag);

    switch (entry->action) {
        case Action::kRefuse:
            // CREATE TEMP TABLE ... AS: this session's own, and common in
            // application code.
            if ((entry->flags & kQueryCopy) && command.persistence != Persistence::kPermanent &&
                !command.mixed_persistence)
                return Decision{Action::kLocal, {}, {}};
            if (entry->flags & kQueryCopy) return refuse_query_copy(command.tag);
            return unknown(command.tag);
        case Action::kNever:
            return Decision{Action::kNever, {}, {}};
        case Action::kLocal:
            // REINDEX and REFRESH MATERIALIZED VIEW are each node's own,
            // CONCURRENTLY or not.
            return Decision{Action::kLocal, {}, {}};
        case Action::kReplicateDdlLock:
        case Action::kReplicateWriteLock:
            break;
    }

    // A replicated tag. GRANT, COMMENT, ... on a database, role, ...: never.
    if (command.cluster_wide) return Decision{Action::kNever, {}, {}};

    // SET LOGGED / UNLOGGED would move a table into or out of replication on
    // one node, whatever its persistence now.
    if (command.changes_logged)
        return refuse("pgmesh cannot replicate " + tag +
                          " ... SET LOGGED or SET UNLOGGED: it would move the table into or out "
                          "of replication on one node",
                      "Create a new table with the persistence you want, copy the rows into it "
                      "with INSERT INTO ... SELECT, then drop the old table.");
    // This node's own objects: temporary and unlogged ones never replicate,
    // so nothing about them can diverge.
    if (command.persistence != Persistence::kPermanent && !command.mixed_persistence)
        return Decision{Action::kLocal, {}, {}};

    // What cannot be replicated safely, whatever else holds.
    if (command.concurrently) return refuse_concurrently(command.tag);
    if (command.exclusion_constraint)
        return refuse("pgmesh cannot replicate " + tag +
                          " with an exclusion constraint: rows written on two nodes at once "
                          "can violate it, and the nodes cannot resolve that",
                      "Use a unique constraint, or check the condition in the application.");
    if (command.non_immutable_default)
        return refuse("pgmesh cannot replicate " + tag +
                          " adding a column whose default is not immutable: each node would "
                          "compute its own values for the existing rows",
                      "Add the column without a default (or with a constant one), set the "
                      "default with ALTER TABLE ... ALTER COLUMN ... SET DEFAULT, then fill the "
                      "existing rows with UPDATE, which replicates.");
    if (command.non_immutable_conversion)
        return refuse("pgmesh cannot replicate " + tag +
                          " changing a column's type with a conversion that is not immutable: "
                          "each node would compute its own values for the existing rows",
                      "Add a column of the new type, fill it with UPDATE, which replicates, then "
                      "drop the old column and rename the new one.");
    if (command.mixed_persistence)
        return refuse("pgmesh cannot replicate a " + tag +
                          " that names both temporary and permanent objects: the temporary ones "
                          "exist on this node only",
                      tag.starts_with("DROP ")
                          ? "Drop the temporary and the permanent objects in separate statements."
                          : "Name the temporary and the permanent objects in separate "
                            "statements.");
    if (command.targets_pgmesh && (entry->flags & kRefusePgmesh))
        return refuse("pgmesh cannot replicate " + tag +
                          " pgmesh: dropping pgmesh from a node that is still in a group breaks "
                          "replication for the whole group",
                      "Part the node from its group first (pgmesh.part_node), then drop the "
                      "extension.");

    // This node's own objects.
    if (command.targets_pgmesh) return Decision{Action::kLocal, {}, {}};
    if (command.only_tablespace) return Decision{Action::kLocal, {}, {}};

    // Replicated: does it change what rows look like or which rows exist?
    if ((command.changes_table_shape && (entry->flags & kShape)) ||
        (command.cascade && (entry->flags & kDrop)) ||
        (command.unique_index && (entry->flags & kUniqueIndex)) || command.checks_existing_rows)
        return Decision{Action::kReplicateWriteLock, {}, {}};
    return Decision{entry->action, {}, {}};
}

std::vector<std::string_view> known_tags() {
    std::vector<std::string_view> tags;
    tags.reserve(kTable.size());
    for (const Entry &e : kTable) tags.push_back(e.tag);
    return tags;
}

std::string_view name(Action action) {
    switch (action) {
        case Action::kReplicateDdlLock:
            return "DDL lock";
        case Action::kReplicateWriteLock:
            return "write lock";
        case Action::kLocal:
            return "local";
        case Action::kNever:
            return "never";
        case Action::kRefuse:
            return "refuse";
    }
    return "refuse";
}

}  // namespace pgmesh::ddl
