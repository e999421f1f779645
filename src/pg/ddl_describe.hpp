// Reads a utility statement's parse tree into what the DDL classification
// (core/ddl.hpp) decides on: its command tag, the persistence of the objects
// it touches, and the facts that make it unsafe to replicate (volatile
// defaults, exclusion constraints, CONCURRENTLY, ...). Also which tables a
// write lock must block, and the primary-key warning after CREATE TABLE.
#pragma once

#include <vector>

#include "ddl.hpp"
#include "postgres_headers.hpp"

namespace pgmesh::ddl_describe {

struct Statement {
    // command.tag points at PostgreSQL's static tag name.
    ddl::Command command;
    // The tables a write lock on this statement blocks writes to, by OID on
    // this node: the tables it alters or drops, with their partitions and
    // inheritance children and the partitioned tables above them. Tables
    // that do not exist (yet) are left out.
    std::vector<Oid> tables;
    // The statement may change tables it does not name (DROP ... CASCADE,
    // DROP SCHEMA, DROP OWNED, ALTER TYPE on a type tables use, ...): a
    // write lock blocks writes to every table.
    bool all_tables = false;
};

// Describes a statement before it runs. Calls PostgreSQL through pg::call;
// throws pg::Error. `query_string` is the source text the statement came
// from (for error positions).
Statement describe(const PlannedStmt &stmt, const char *query_string);

// After a statement ran: a WARNING (with a hint) for each permanent table it
// created without a primary key, since UPDATE and DELETE on it are refused.
// Calls PostgreSQL through pg::call.
void warn_if_keyless(const PlannedStmt &stmt);

}  // namespace pgmesh::ddl_describe
