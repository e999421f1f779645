// A small RAII layer over libpq for the CLI and the integration tests.
//
// Only libpq (libpq-fe.h) is used here, never PostgreSQL server headers: this
// code runs in client processes.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pgmesh::pq {

struct ConnectionDeleter {
    void operator()(PGconn *conn) const noexcept { PQfinish(conn); }
};
struct ResultDeleter {
    void operator()(PGresult *result) const noexcept { PQclear(result); }
};
using ConnectionPtr = std::unique_ptr<PGconn, ConnectionDeleter>;
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// SQLSTATEs given to failures that did not come from a server error report.
inline constexpr std::string_view kSqlstateConnectionFailed = "08001";
inline constexpr std::string_view kSqlstateConnectionLost = "08006";

// An error reported by the server (with its SQLSTATE and the fields of the
// error report) or by libpq itself (connection failures; see the SQLSTATEs
// above). what() holds a one-line-per-field human readable text.
class Error : public std::runtime_error {
public:
    Error(std::string sqlstate, std::string message, std::string detail = {}, std::string hint = {},
          std::string context = {});

    const std::string &sqlstate() const { return sqlstate_; }
    // The primary message, without "ERROR:" and without detail/hint.
    const std::string &message() const { return message_; }
    const std::string &detail() const { return detail_; }
    const std::string &hint() const { return hint_; }
    const std::string &context() const { return context_; }
    bool is_connection_error() const { return sqlstate_.starts_with("08"); }

    // Builds an Error from a failed result (or from the connection's error
    // message when libpq returned no result at all).
    static Error from_result(const PGresult *result, PGconn *conn);

private:
    std::string sqlstate_;
    std::string message_;
    std::string detail_;
    std::string hint_;
    std::string context_;
};

using Value = std::optional<std::string>;  // std::nullopt is SQL NULL
using Row = std::vector<Value>;
using Rows = std::vector<Row>;

class Result {
public:
    explicit Result(ResultPtr result) : result_(std::move(result)) {}

    int row_count() const { return PQntuples(result_.get()); }
    int column_count() const { return PQnfields(result_.get()); }
    std::string column_name(int column) const { return PQfname(result_.get(), column); }
    Oid column_type(int column) const { return PQftype(result_.get(), column); }
    bool is_null(int row, int column) const { return PQgetisnull(result_.get(), row, column) != 0; }
    // The text value; empty for NULL (use get() to tell NULL apart).
    std::string_view text(int row, int column) const {
        return {PQgetvalue(result_.get(), row, column),
                static_cast<size_t>(PQgetlength(result_.get(), row, column))};
    }
    Value get(int row, int column) const {
        if (is_null(row, column)) return std::nullopt;
        return std::string(text(row, column));
    }
    Rows rows() const;
    std::vector<std::string> column_names() const;
    // Number of rows affected by INSERT/UPDATE/DELETE/..., 0 when not applicable.
    long affected_rows() const;

    PGresult *native() const { return result_.get(); }

private:
    ResultPtr result_;
};

class Connection {
public:
    // Connects with a keyword/value or URI connection string (or a bare
    // database name). Adds connect_timeout and fallback_application_name
    // defaults that the string can override. Throws Error (SQLSTATE 08001) on
    // failure; the message never contains a password, also when the string
    // does not parse.
    static Connection open(std::string_view dsn,
                           std::chrono::seconds connect_timeout = std::chrono::seconds(10));

    // Runs one or more statements through the simple query protocol; returns
    // the result of the last one. Throws Error on any failure.
    Result exec(std::string_view sql);
    // One statement with text parameters ($1, $2, ...); nullopt sends NULL.
    Result exec_params(std::string_view sql, std::span<const Value> params);

    // Runs a query that must return exactly one row with one column.
    Value query_value(std::string_view sql);

    std::string quote_identifier(std::string_view identifier);
    std::string quote_literal(std::string_view literal);

    bool is_ok() const { return PQstatus(conn_.get()) == CONNECTION_OK; }
    int backend_pid() const { return PQbackendPID(conn_.get()); }
    std::string host() const;
    std::string port() const;
    std::string dbname() const;
    PGconn *native() const { return conn_.get(); }

private:
    explicit Connection(ConnectionPtr conn) : conn_(std::move(conn)) {}
    Result check(PGresult *raw_result);

    ConnectionPtr conn_;
};

// dsn in keyword/value form with the value of every option libpq marks
// secret (password, sslpassword, ...; also in a URI's user:password@ part)
// replaced by "********", for echoing connection strings safely;
// "(invalid connection string)" when libpq cannot parse it. See
// conninfo::mask.
std::string mask_password(std::string_view dsn);

// A value for a keyword/value connection string, quoted and escaped as libpq
// reads it back when it needs it (empty, or with whitespace, quotes,
// backslashes or non-ASCII bytes). See conninfo::quote_value.
std::string quote_conninfo_value(std::string_view value);

}  // namespace pgmesh::pq
