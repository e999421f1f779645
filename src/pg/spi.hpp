// pgmesh's own SQL, run through SPI with parameters: values never become
// part of the statement text.
//
// Every statement runs as the bootstrap superuser with search_path = ''
// (user_context::switch_to_pgmesh), whoever the session's user is, so write
// it with schema-qualified names. It is meant for pgmesh's catalogs and fixed
// statements only: user code has no place in it. An error leaves the
// transaction to be aborted, as any error inside SPI does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "postgres_headers.hpp"

namespace pgmesh::spi {

// One parameter ($1, $2, ...): a text, or a 64-bit integer carried by value
// (bigint, timestamptz, pg_lsn).
struct Param {
    Oid type = TEXTOID;
    bool is_null = true;
    std::string text;
    int64_t integer = 0;
};

Param text(std::string_view value);
Param text_or_null(const std::optional<std::string> &value);
Param int8(int64_t value);
Param timestamptz_or_null(TimestampTz value);  // 0 is NULL
Param lsn(uint64_t value);

using Value = std::optional<std::string>;  // std::nullopt is SQL NULL
using Row = std::vector<Value>;
using Rows = std::vector<Row>;

// Runs one statement; returns its rows (if any) as text.
Rows query(const char *sql, const std::vector<Param> &params = {});

}  // namespace pgmesh::spi
