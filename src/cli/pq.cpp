#include "pq.hpp"

#include <cctype>
#include <cstdlib>

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

constexpr std::string_view kMask = "********";

bool is_space(char c) {
    return std::isspace(static_cast<unsigned char>(c)) != 0;
}

// Masks the password of a postgres:// or postgresql:// URI.
std::string mask_uri_password(std::string_view uri, size_t authority_start) {
    std::string masked(uri);
    size_t authority_end = masked.find_first_of("/?", authority_start);
    if (authority_end == std::string::npos) authority_end = masked.size();
    size_t at = masked.rfind('@', authority_end);
    if (at != std::string::npos && at >= authority_start) {
        size_t colon = masked.find(':', authority_start);
        if (colon != std::string::npos && colon < at) {
            masked.replace(colon + 1, at - colon - 1, kMask);
            authority_end = masked.find_first_of("/?", authority_start);
            if (authority_end == std::string::npos) authority_end = masked.size();
        }
    }
    size_t query = masked.find('?', authority_end);
    while (query != std::string::npos && query < masked.size()) {
        size_t param_start = query + 1;
        size_t param_end = masked.find('&', param_start);
        if (param_end == std::string::npos) param_end = masked.size();
        std::string_view param(masked.data() + param_start, param_end - param_start);
        if (param.starts_with("password=")) {
            size_t value_start = param_start + std::string_view("password=").size();
            masked.replace(value_start, param_end - value_start, kMask);
            param_end = value_start + kMask.size();
        }
        query = param_end < masked.size() ? param_end : std::string::npos;
    }
    return masked;
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
    for (std::string_view scheme : {"postgresql://", "postgres://"}) {
        if (dsn.starts_with(scheme)) return mask_uri_password(dsn, scheme.size());
    }
    // keyword = value pairs; values may be single-quoted with backslash escapes.
    std::string masked;
    size_t pos = 0;
    const size_t size = dsn.size();
    while (pos < size) {
        size_t token_start = pos;
        while (pos < size && is_space(dsn[pos])) ++pos;
        size_t key_start = pos;
        while (pos < size && dsn[pos] != '=' && !is_space(dsn[pos])) ++pos;
        std::string_view key = dsn.substr(key_start, pos - key_start);
        while (pos < size && is_space(dsn[pos])) ++pos;
        if (pos >= size || dsn[pos] != '=') {
            // Malformed: keep what parsed, hide the rest if it could hold a secret.
            std::string_view rest = dsn.substr(token_start);
            masked += rest.find("password") == std::string_view::npos ? std::string(rest)
                                                                      : " " + std::string(kMask);
            return masked;
        }
        ++pos;  // '='
        while (pos < size && is_space(dsn[pos])) ++pos;
        masked.append(dsn.substr(token_start, pos - token_start));
        size_t value_start = pos;
        if (pos < size && dsn[pos] == '\'') {
            ++pos;
            while (pos < size && dsn[pos] != '\'') pos += dsn[pos] == '\\' ? 2 : 1;
            pos = std::min(pos + 1, size);
        } else {
            while (pos < size && !is_space(dsn[pos])) pos += dsn[pos] == '\\' ? 2 : 1;
            pos = std::min(pos, size);
        }
        if (key == "password") {
            masked.append(kMask);
        } else {
            masked.append(dsn.substr(value_start, pos - value_start));
        }
    }
    return masked;
}

std::string quote_conninfo_value(std::string_view value) {
    bool needs_quotes = value.empty();
    for (char c : value) {
        if (is_space(c) || c == '\'' || c == '\\' || c == '=') needs_quotes = true;
    }
    if (!needs_quotes) return std::string(value);
    std::string quoted = "'";
    for (char c : value) {
        if (c == '\'' || c == '\\') quoted += '\\';
        quoted += c;
    }
    quoted += '\'';
    return quoted;
}

}  // namespace pgmesh::pq
