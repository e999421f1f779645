#include "verify.hpp"

#include "table_format.hpp"

namespace pgmesh::local {

namespace {

constexpr const char *kSessionSettings =
    "SET search_path = ''; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; "
    "SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET bytea_output = 'hex'; "
    "SET lc_monetary = 'C'";

constexpr const char *kListTables = R"sql(
SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence = 'p'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgmesh')
  AND n.nspname !~ '^pg_toast'
  AND n.nspname !~ '^pg_temp_'
  AND NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1
)sql";

// Hashing each row first keeps the aggregate small (32 bytes per row) and the
// sort order independent of collations; ROW(v.*) is used instead of the
// bare alias because a column could carry the alias' name.
//
// qualified_table is pasted because a table name cannot be a parameter. It is
// safe: it comes from kListTables' format('%I.%I', ...) on this same
// connection, so the server that runs the query quoted it (every double quote
// doubled, any name quoted when needed), and a server that lied about it
// could only lie about its own fingerprint.
std::string fingerprint_query(const std::string &qualified_table) {
    return "SELECT count(*), pg_catalog.md5(coalesce(pg_catalog.string_agg(row_hash, '' "
           "ORDER BY row_hash COLLATE \"C\"), '')) FROM (SELECT pg_catalog.md5(ROW(v.*)::text) "
           "AS row_hash FROM " +
           qualified_table + " AS v) AS row_hashes";
}

}  // namespace

NodeFingerprints fingerprint_tables(pq::Connection &conn) {
    conn.exec(kSessionSettings);
    conn.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    NodeFingerprints fingerprints;
    try {
        pq::Result tables = conn.exec(kListTables);
        for (int row = 0; row < tables.row_count(); ++row) {
            std::string table(tables.text(row, 0));
            pq::Result result = conn.exec(fingerprint_query(table));
            TableFingerprint fingerprint;
            fingerprint.row_count = std::stoll(std::string(result.text(0, 0)));
            fingerprint.hash = std::string(result.text(0, 1));
            fingerprints.emplace(std::move(table), std::move(fingerprint));
        }
        conn.exec("COMMIT");
    } catch (...) {
        try {
            conn.exec("ROLLBACK");
        } catch (const pq::Error &) {
            // The connection is broken; the first error says why.
        }
        throw;
    }
    return fingerprints;
}

VerifyReport compare_fingerprints(std::vector<std::string> node_labels,
                                  std::span<const NodeFingerprints> per_node) {
    VerifyReport report;
    report.node_labels = std::move(node_labels);
    for (size_t node = 0; node < per_node.size(); ++node) {
        for (const auto &[table, fingerprint] : per_node[node]) {
            auto &slots = report.tables[table];
            slots.resize(per_node.size());
            slots[node] = fingerprint;
        }
    }
    for (auto &[table, slots] : report.tables) {
        slots.resize(per_node.size());
        bool equal = true;
        for (const auto &slot : slots) equal = equal && slot.has_value() && slot == slots.front();
        if (!equal) report.differing_tables.push_back(table);
    }
    return report;
}

VerifyReport verify_nodes(std::span<const NodeToVerify> nodes) {
    std::vector<std::string> labels;
    std::vector<NodeFingerprints> per_node;
    for (const NodeToVerify &node : nodes) {
        try {
            pq::Connection conn = pq::Connection::open(node.dsn);
            per_node.push_back(fingerprint_tables(conn));
        } catch (const std::exception &error) {
            throw std::runtime_error(node.label + ": " + error.what());
        }
        labels.push_back(node.label);
    }
    return compare_fingerprints(std::move(labels), per_node);
}

std::string VerifyReport::format() const {
    TextTable table;
    table.headers = {"table", "node", "rows", "hash"};
    table.right_aligned = {false, false, true, false};
    for (const auto &[name, slots] : tables) {
        for (size_t node = 0; node < slots.size(); ++node) {
            const auto &slot = slots[node];
            table.rows.push_back({name, node_labels[node],
                                  slot ? std::to_string(slot->row_count) : "missing",
                                  slot ? slot->hash : ""});
        }
    }
    std::string text = format_table(table, /*with_row_count=*/false);
    if (tables.empty()) {
        text += "no user tables on any of the " + std::to_string(node_labels.size()) + " nodes\n";
    } else if (all_equal()) {
        text += "all " + std::to_string(tables.size()) + " tables are equal on " +
                std::to_string(node_labels.size()) + " nodes\n";
    } else {
        text += std::to_string(differing_tables.size()) + " of " + std::to_string(tables.size()) +
                " tables differ:";
        for (size_t i = 0; i < differing_tables.size(); ++i) {
            text += (i == 0 ? " " : ", ") + differing_tables[i];
        }
        text += "\n";
    }
    return text;
}

}  // namespace pgmesh::local
