// What pgmesh does with each utility statement a session runs: the pure
// classification table behind docs/ddl.md. The pg adapter
// (src/pg/ddl_describe.cpp) reads a parse tree into a Command; classify()
// decides, from the command tag and a few facts about the objects involved.
// Pure C++.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace pgmesh::ddl {

enum class Action {
    // Replicated; the global DDL lock makes other DDL wait everywhere.
    kReplicateDdlLock,
    // Replicated; the global write lock also blocks writes to the affected
    // tables on every node, from the point every node has applied everything
    // written before it until every node has applied the statement.
    kReplicateWriteLock,
    // Runs here only: not a schema change (SET, VACUUM, LOCK, COPY, DML,
    // transaction control, ...) or about this node's own objects (temporary
    // and unlogged ones). Rows a local statement writes still replicate.
    kLocal,
    // Cluster-wide objects (roles, databases, tablespaces, ALTER SYSTEM,
    // subscriptions): run here only, never replicated.
    kNever,
    // Cannot be replicated safely: refused with SQLSTATE 0A000.
    kRefuse,
};

// The persistence of the objects a statement creates, changes or drops.
enum class Persistence { kPermanent, kTemporary, kUnlogged };

// What the pg adapter reads off one statement.
struct Command {
    // PostgreSQL's command tag, as GetCommandTagName() spells it: "CREATE
    // TABLE", "ALTER TABLE", "DROP INDEX", "GRANT", ...
    std::string_view tag;
    Persistence persistence = Persistence::kPermanent;
    // A DROP (or similar) that names temporary and permanent objects at once.
    bool mixed_persistence = false;
    // CREATE INDEX / DROP INDEX / REINDEX / REFRESH MATERIALIZED VIEW /
    // ALTER TABLE DETACH PARTITION ... CONCURRENTLY.
    bool concurrently = false;
    // CREATE UNIQUE INDEX: every node must agree the rows are unique.
    bool unique_index = false;
    // CREATE TABLE or ALTER TABLE with an EXCLUDE constraint.
    bool exclusion_constraint = false;
    // ALTER TABLE ADD COLUMN to an existing table whose default is not
    // immutable (now(), random(), nextval(): serial and identity columns
    // too): each node would compute its own values for the existing rows.
    bool non_immutable_default = false;
    // ALTER TABLE ALTER COLUMN TYPE whose USING expression or cast is not
    // immutable.
    bool non_immutable_conversion = false;
    // ALTER TABLE (or ALTER FOREIGN TABLE, ALTER TYPE on a composite type)
    // with a subcommand that changes what rows look like or which rows are
    // valid: columns, constraints, types, defaults, inheritance, partitions,
    // RENAME. False when every subcommand is metadata only (owner, storage
    // parameters, statistics, triggers on and off, replica identity, ...).
    bool changes_table_shape = false;
    // ALTER TABLE/INDEX/MATERIALIZED VIEW ... SET TABLESPACE and nothing else:
    // physical placement, each node's own.
    bool only_tablespace = false;
    // ALTER TABLE SET LOGGED / SET UNLOGGED: moves a table into or out of
    // replication on one node.
    bool changes_logged = false;
    // DROP ... CASCADE (and DROP OWNED): may drop columns or tables that were
    // not named.
    bool cascade = false;
    // The statement checks rows that are already there, and fails if one
    // does not fit: CREATE TABLE ... PARTITION OF a table with a default
    // partition (whose rows must not belong to the new one), ALTER DOMAIN
    // ADD CONSTRAINT (unless NOT VALID), VALIDATE CONSTRAINT and SET NOT
    // NULL. Every node must check the same rows.
    bool checks_existing_rows = false;
    // The statement is about pgmesh itself: the pgmesh extension, or objects
    // in schema pgmesh.
    bool targets_pgmesh = false;
    // GRANT, REVOKE, COMMENT or SECURITY LABEL on an object pgmesh never
    // replicates: a database, tablespace, role, subscription or publication,
    // or a configuration parameter (GRANT ... ON PARAMETER). Such statements
    // share their tag with per-database ones; like the kNever tags, they run
    // here only.
    bool cluster_wide = false;
};

struct Decision {
    Action action = Action::kRefuse;
    // For kRefuse: the error message and its hint, which names a safe
    // alternative. Empty otherwise.
    std::string message;
    std::string hint;
};

Decision classify(const Command &command);

// Every command tag the table knows, in the table's order (for tests and
// docs). A tag classify() has never heard of is refused: a newer
// PostgreSQL's command is not replicated by guesswork.
std::vector<std::string_view> known_tags();

// "DDL lock", "write lock", "local", "never", "refuse": docs and errors.
std::string_view name(Action action);

}  // namespace pgmesh::ddl
