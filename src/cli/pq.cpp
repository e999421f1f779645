#include "pq.hpp"

#include <cstdlib>

#include "conninfo.hpp"

namespace pgmesh::pq {

namespace {

std::string field(const PGresult *result, int code) {
    const char *value = result != nullptr ? PQresultErrorField(result, code) : nullptr;
    return value != nullptr ? std::string(value) : std::string();
}

std::string trim_trailing_newlines(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
}

std::string describe(const std::string &sqlstate, const std::string &message,
                     const std::string &detail, const std::string &hint,
                     const std::string &context) {
    std::string text = message;
    if (!sqlstate.empty()) text = "[" + sqlstate + "] " + text;
    if (!detail.empty()) text += "\nDETAIL:  " + detail;
    if (!hint.empty()) text += "\nHINT:  " + hint;
    if (!context.empty()) text += "\nCONTEXT:  " + context;
    return text;
}

// libpq takes dbname for a connection string to expand when it has a URI
// prefix or an '=' (recognized_connection_string in fe-connect.c); anything
// else is a database name.
bool is_connection_string(std::string_view dsn) {
    return dsn.starts_with("postgresql://") || dsn.starts_with("postgres://") ||
           dsn.find('=') != std::string_view::npos;
}

}  // namespace

Error::Error(std::string sqlstate, std::string message, std::string detail, std::string hint,
             std::string context)
    : std::runtime_error(describe(sqlstate, message, detail, hint, context)),
      sqlstate_(std::move(sqlstate)),
      message_(std::move(message)),
      detail_(std::move(detail)),
      hint_(std::move(hint)),
      context_(std::move(context)) {}

Error Error::from_result(const PGresult *result, PGconn *conn) {
    std::string sqlstate = field(result, PG_DIAG_SQLSTATE);
    std::string message = field(result, PG_DIAG_MESSAGE_PRIMARY);
    if (message.empty()) {
        // libpq-side failures (lost connection, out of memory) carry no
        // fields, only a message text.
        const char *text = result != nullptr ? PQresultErrorMessage(result) : "";
        if (text == nullptr || *text == '\0') text = PQerrorMessage(conn);
        message = trim_trailing_newlines(text != nullptr ? text : "unknown libpq error");
    }
    if (sqlstate.empty()) {
        bool connection_broken = conn == nullptr || PQstatus(conn) != CONNECTION_OK;
        sqlstate = connection_broken ? std::string(kSqlstateConnectionLost) : "XX000";
    }
    return Error(std::move(sqlstate), std::move(message), field(result, PG_DIAG_MESSAGE_DETAIL),
                 field(result, PG_DIAG_MESSAGE_HINT), field(result, PG_DIAG_CONTEXT));
}

Rows Result::rows() const {
    Rows all_rows;
    all_rows.reserve(static_cast<size_t>(row_count()));
    for (int row = 0; row < row_count(); ++row) {
        Row values;
        values.reserve(static_cast<size_t>(column_count()));
        for (int column = 0; column < column_count(); ++column) values.push_back(get(row, column));
        all_rows.push_back(std::move(values));
    }
    return all_rows;
}

std::vector<std::string> Result::column_names() const {
    std::vector<std::string> names;
    for (int column = 0; column < column_count(); ++column) names.push_back(column_name(column));
    return names;
}

long Result::affected_rows() const {
    const char *tuples = PQcmdTuples(result_.get());
    return tuples != nullptr && *tuples != '\0' ? std::strtol(tuples, nullptr, 10) : 0;
}

Connection Connection::open(std::string_view dsn, std::chrono::seconds connect_timeout) {
    // libpq's parse errors quote pieces of the string, which can be a password
    // ("password=my secret": missing "=" after "secret"), so a string that
    // does not parse is reported here, redacted, before libpq sees it.
    if (std::string error; is_connection_string(dsn) && !conninfo::parse(dsn, &error)) {
        throw Error(std::string(kSqlstateConnectionFailed),
                    "invalid connection string: " + conninfo::redact_parse_error(error));
    }
    // Keywords are processed in order and later ones win, so the defaults come
    // first and the caller's string (expanded from "dbname") overrides them.
    std::string timeout = std::to_string(connect_timeout.count());
    std::string conninfo(dsn);
    const char *keywords[] = {"connect_timeout", "fallback_application_name", "dbname", nullptr};
    const char *values[] = {timeout.c_str(), "pgmesh", conninfo.c_str(), nullptr};
    ConnectionPtr conn(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
    if (conn == nullptr) {
        throw Error(std::string(kSqlstateConnectionFailed),
                    "out of memory connecting to " + mask_password(dsn));
    }
    if (PQstatus(conn.get()) != CONNECTION_OK) {
        // libpq's message names host and port but never the password.
        throw Error(std::string(kSqlstateConnectionFailed),
                    "could not connect (" + mask_password(dsn) +
                        "): " + trim_trailing_newlines(PQerrorMessage(conn.get())));
    }
    return Connection(std::move(conn));
}

Result Connection::check(PGresult *raw_result) {
    ResultPtr result(raw_result);
    ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
    switch (status) {
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_EMPTY_QUERY:
        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
            return Result(std::move(result));
        default:
            throw Error::from_result(result.get(), conn_.get());
    }
}

Result Connection::exec(std::string_view sql) {
    std::string text(sql);
    return check(PQexec(conn_.get(), text.c_str()));
}

Result Connection::exec_params(std::string_view sql, std::span<const Value> params) {
    std::string text(sql);
    std::vector<const char *> values;
    values.reserve(params.size());
    for (const Value &param : params) values.push_back(param ? param->c_str() : nullptr);
    return check(PQexecParams(conn_.get(), text.c_str(), static_cast<int>(values.size()),
                              /*paramTypes=*/nullptr, values.data(), /*paramLengths=*/nullptr,
                              /*paramFormats=*/nullptr, /*resultFormat=*/0));
}

Value Connection::query_value(std::string_view sql) {
    Result result = exec(sql);
    if (result.row_count() != 1 || result.column_count() != 1) {
        throw std::runtime_error("expected one row with one column, got " +
                                 std::to_string(result.row_count()) + " rows and " +
                                 std::to_string(result.column_count()) +
                                 " columns from: " + std::string(sql));
    }
    return result.get(0, 0);
}

std::string Connection::quote_identifier(std::string_view identifier) {
    std::unique_ptr<char, decltype(&PQfreemem)> quoted(
        PQescapeIdentifier(conn_.get(), identifier.data(), identifier.size()), &PQfreemem);
    if (!quoted) throw Error::from_result(nullptr, conn_.get());
    return quoted.get();
}

std::string Connection::quote_literal(std::string_view literal) {
    std::unique_ptr<char, decltype(&PQfreemem)> quoted(
        PQescapeLiteral(conn_.get(), literal.data(), literal.size()), &PQfreemem);
    if (!quoted) throw Error::from_result(nullptr, conn_.get());
    return quoted.get();
}

std::string Connection::host() const {
    const char *value = PQhost(conn_.get());
    return value != nullptr ? value : "";
}
std::string Connection::port() const {
    const char *value = PQport(conn_.get());
    return value != nullptr ? value : "";
}
std::string Connection::dbname() const {
    const char *value = PQdb(conn_.get());
    return value != nullptr ? value : "";
}

std::string mask_password(std::string_view dsn) {
    return conninfo::mask(dsn);
}

std::string quote_conninfo_value(std::string_view value) {
    return conninfo::quote_value(value);
}

}  // namespace pgmesh::pq
