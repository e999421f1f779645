// Aligned text tables in the style of psql's default output.
#pragma once

#include <string>
#include <vector>

#include "pq.hpp"

namespace pgmesh::local {

struct TextTable {
    std::vector<std::string> headers;
    std::vector<std::vector<std::string>> rows;
    // Per column; numbers read better right-aligned, as psql does.
    std::vector<bool> right_aligned;
};

// " a | b\n---+---\n 1 | 2\n(1 row)\n" (the row count line only when
// with_row_count is set).
std::string format_table(const TextTable &table, bool with_row_count = true);

// A query result as a table: NULL prints as empty, numeric columns are
// right-aligned.
TextTable table_from_result(const pq::Result &result);

}  // namespace pgmesh::local
