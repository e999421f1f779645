// Comparing table contents across nodes (`pgmesh verify` and the test
// fixture's verify_all()): every user table's row count and a content hash,
// computed by each server.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pq.hpp"

namespace pgmesh::local {

struct TableFingerprint {
    long long row_count = 0;
    std::string hash;  // md5 over the sorted md5s of the rows' text forms
    bool operator==(const TableFingerprint &) const = default;
};

// Quoted "schema"."table" name -> fingerprint.
using NodeFingerprints = std::map<std::string, TableFingerprint>;

// Fingerprints every user table: permanent ordinary tables (partitions
// included, partitioned parents not, so each row counts once) outside
// pg_catalog, information_schema, pgmesh, pg_toast* and pg_temp*, and not
// belonging to an extension (extensions keep node-local state in theirs).
// Everything is read in one REPEATABLE READ snapshot, with the session's
// output settings (DateStyle, TimeZone, ...) fixed so that equal rows print
// equally on differently configured nodes.
NodeFingerprints fingerprint_tables(pq::Connection &conn);

struct NodeToVerify {
    std::string label;  // shown in the report, e.g. "node1" or "127.0.0.1:5433"
    std::string dsn;
};

struct VerifyReport {
    std::vector<std::string> node_labels;
    // Every table seen on any node; per node (in node_labels order) its
    // fingerprint, nullopt when the table is missing there.
    std::map<std::string, std::vector<std::optional<TableFingerprint>>> tables;
    std::vector<std::string> differing_tables;

    bool all_equal() const { return differing_tables.empty(); }
    // The table (table, node, rows, hash) and a summary line.
    std::string format() const;
};

VerifyReport compare_fingerprints(std::vector<std::string> node_labels,
                                  std::span<const NodeFingerprints> per_node);

// Connects to every node and compares. Throws (naming the node) when a node
// cannot be reached or read.
VerifyReport verify_nodes(std::span<const NodeToVerify> nodes);

}  // namespace pgmesh::local
