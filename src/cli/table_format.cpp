#include "table_format.hpp"

#include <algorithm>

namespace pgmesh::local {

namespace {

// Width on a terminal, counting UTF-8 code points rather than bytes.
size_t display_width(std::string_view text) {
    return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    }));
}

// Keeps each row on one line.
std::string one_line(std::string_view text) {
    std::string line;
    for (char c : text) {
        if (c == '\n') {
            line += "\\n";
        } else if (c == '\r' || c == '\t') {
            line += ' ';
        } else {
            line += c;
        }
    }
    return line;
}

bool is_numeric_type(Oid type) {
    // int8, int2, int4, oid, float4, float8, money, numeric
    constexpr Oid kNumericTypes[] = {20, 21, 23, 26, 700, 701, 790, 1700};
    return std::find(std::begin(kNumericTypes), std::end(kNumericTypes), type) !=
           std::end(kNumericTypes);
}

void rstrip(std::string &line) {
    while (!line.empty() && line.back() == ' ') line.pop_back();
}

}  // namespace

std::string format_table(const TextTable &table, bool with_row_count) {
    const size_t columns = table.headers.size();
    std::vector<size_t> widths(columns, 0);
    for (size_t c = 0; c < columns; ++c) widths[c] = display_width(table.headers[c]);
    for (const auto &row : table.rows) {
        for (size_t c = 0; c < columns && c < row.size(); ++c) {
            widths[c] = std::max(widths[c], display_width(row[c]));
        }
    }
    auto padded = [&](std::string_view text, size_t c, bool center) {
        size_t padding = widths[c] - std::min(widths[c], display_width(text));
        bool right = c < table.right_aligned.size() && table.right_aligned[c];
        size_t left = center ? padding / 2 : (right ? padding : 0);
        return std::string(left, ' ') + std::string(text) + std::string(padding - left, ' ');
    };

    std::string out;
    std::string line;
    for (size_t c = 0; c < columns; ++c) {
        line += (c == 0 ? " " : " | ") + padded(table.headers[c], c, /*center=*/true);
    }
    rstrip(line);
    out += line + "\n";
    line.clear();
    for (size_t c = 0; c < columns; ++c) {
        line += (c == 0 ? "" : "+") + std::string(widths[c] + 2, '-');
    }
    out += line + "\n";
    for (const auto &row : table.rows) {
        line.clear();
        for (size_t c = 0; c < columns; ++c) {
            std::string_view value = c < row.size() ? std::string_view(row[c]) : "";
            line += (c == 0 ? " " : " | ") + padded(value, c, /*center=*/false);
        }
        rstrip(line);
        out += line + "\n";
    }
    if (with_row_count) {
        out += "(" + std::to_string(table.rows.size()) +
               (table.rows.size() == 1 ? " row)\n" : " rows)\n");
    }
    return out;
}

TextTable table_from_result(const pq::Result &result) {
    TextTable table;
    for (int c = 0; c < result.column_count(); ++c) {
        table.headers.push_back(result.column_name(c));
        table.right_aligned.push_back(is_numeric_type(result.column_type(c)));
    }
    for (int r = 0; r < result.row_count(); ++r) {
        std::vector<std::string> row;
        for (int c = 0; c < result.column_count(); ++c) {
            row.push_back(result.is_null(r, c) ? std::string() : one_line(result.text(r, c)));
        }
        table.rows.push_back(std::move(row));
    }
    return table;
}

}  // namespace pgmesh::local
