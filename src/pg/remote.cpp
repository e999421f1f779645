#include "remote.hpp"

namespace pgmesh::remote {

namespace {

struct ConninfoFree {
    void operator()(PQconninfoOption *o) const { PQconninfoFree(o); }
};
using ConninfoOptions = std::unique_ptr<PQconninfoOption, ConninfoFree>;

ConninfoOptions parse_conninfo(const std::string &dsn, std::string *error) {
    char *err = nullptr;
    ConninfoOptions opts(PQconninfoParse(dsn.c_str(), &err));
    if (err) {
        *error = err;
        PQfreemem(err);
    }
    return opts;
}

std::string build_conninfo(const PQconninfoOption *opts, bool with_password) {
    std::string out;
    for (const PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val) continue;
        std::string_view key = o->keyword;
        if (!out.empty()) out += ' ';
        out += key;
        out += '=';
        out +=
            (key == "password" && !with_password) ? std::string("********") : quote_literal(o->val);
    }
    return out;
}

std::string connection_error(PGconn *conn) {
    std::string msg = conn ? PQerrorMessage(conn) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return msg;
}

}  // namespace

std::string quote_literal(std::string_view s) {
    std::string out = "'";
    for (char c : s) {
        if (c == '\'' || c == '\\') out += '\\';
        out += c;
    }
    out += '\'';
    return out;
}

void check_dsn(const std::string &dsn, const char *what) {
    std::string error;
    if (!parse_conninfo(dsn, &error))
        throw pg::Error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            std::string("invalid ") + what + ": " + (error.empty() ? "cannot parse" : error), {},
            "Give a libpq connection string such as 'host=... port=... dbname=...'.");
}

std::string mask_dsn(const std::string &dsn) {
    std::string error;
    ConninfoOptions opts = parse_conninfo(dsn, &error);
    if (!opts) return "(invalid dsn)";
    return build_conninfo(opts.get(), false);
}

std::pair<std::string, std::optional<std::string>> split_password(const std::string &dsn) {
    std::string error;
    ConninfoOptions opts = parse_conninfo(dsn, &error);
    if (!opts) return {dsn, std::nullopt};
    std::optional<std::string> password;
    std::string rest;
    for (const PQconninfoOption *o = opts.get(); o->keyword; o++) {
        if (!o->val) continue;
        if (std::string_view(o->keyword) == "password") {
            password = o->val;
            continue;
        }
        if (!rest.empty()) rest += ' ';
        rest += std::string(o->keyword) + "=" + quote_literal(o->val);
    }
    return {rest, password};
}

void wait_socket(PGconn *conn, bool for_write, long timeout_ms) {
    int socket = PQsocket(conn);
    pg::call([&] {
        int events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH |
                     (for_write ? WL_SOCKET_WRITEABLE : WL_SOCKET_READABLE);
        int rc = WaitLatchOrSocket(MyLatch, events, socket, timeout_ms, PG_WAIT_EXTENSION);
        if (rc & WL_LATCH_SET) ResetLatch(MyLatch);
    });
    pg::serve_interrupts();
}

Connection connect(const std::string &dsn, bool replication, const std::string &application_name,
                   int timeout_seconds) {
    check_dsn(dsn, "DSN");
    // Later keywords win over the DSN's own, so ours come after it.
    std::string timeout = std::to_string(timeout_seconds);
    std::vector<const char *> keys{"dbname", "application_name", "connect_timeout"};
    std::vector<const char *> values{dsn.c_str(), application_name.c_str(), timeout.c_str()};
    if (replication) {
        keys.push_back("replication");
        values.push_back("database");
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    Connection conn(PQconnectStartParams(keys.data(), values.data(), 1));
    if (!conn || PQstatus(conn.get()) == CONNECTION_BAD)
        throw pg::Error(
            ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
            "could not connect to \"" + mask_dsn(dsn) + "\": " + connection_error(conn.get()), {},
            "Check that the DSN is right and that the server accepts connections.");
    TimestampTz deadline = 0;
    deadline = pg::call([&] {
        return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_seconds * 1000L);
    });
    PostgresPollingStatusType status = PGRES_POLLING_WRITING;
    while (status != PGRES_POLLING_OK) {
        if (status == PGRES_POLLING_FAILED)
            throw pg::Error(
                ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                "could not connect to \"" + mask_dsn(dsn) + "\": " + connection_error(conn.get()),
                {},
                "Check that the DSN is right and that the server accepts "
                "connections.");
        if (pg::call([&] { return GetCurrentTimestamp() > deadline; }))
            throw pg::Error(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION,
                            "timed out connecting to \"" + mask_dsn(dsn) + "\"");
        wait_socket(conn.get(), status == PGRES_POLLING_WRITING, 1000);
        status = PQconnectPoll(conn.get());
    }
    return conn;
}

Result exec(PGconn *conn, const std::string &sql, ExecStatusType expected) {
    if (!PQsendQuery(conn, sql.c_str()))
        throw pg::Error(ERRCODE_CONNECTION_FAILURE,
                        "could not send query to peer: " + connection_error(conn));
    Result last;
    for (;;) {
        while (PQisBusy(conn)) {
            wait_socket(conn, false, 1000);
            if (!PQconsumeInput(conn))
                throw pg::Error(ERRCODE_CONNECTION_FAILURE,
                                "lost connection to peer: " + connection_error(conn));
        }
        Result res(PQgetResult(conn));
        if (!res) break;
        ExecStatusType st = PQresultStatus(res.get());
        if (st == PGRES_COPY_BOTH || st == PGRES_COPY_OUT || st == PGRES_COPY_IN) return res;
        last = std::move(res);
    }
    if (!last) throw pg::Error(ERRCODE_CONNECTION_FAILURE, "no result from peer");
    ExecStatusType st = PQresultStatus(last.get());
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR ||
        (expected == PGRES_TUPLES_OK && st != PGRES_TUPLES_OK)) {
        const char *state = PQresultErrorField(last.get(), PG_DIAG_SQLSTATE);
        const char *detail = PQresultErrorField(last.get(), PG_DIAG_MESSAGE_DETAIL);
        const char *hint = PQresultErrorField(last.get(), PG_DIAG_MESSAGE_HINT);
        const char *primary = PQresultErrorField(last.get(), PG_DIAG_MESSAGE_PRIMARY);
        int code = state && strlen(state) == 5
                       ? MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4])
                       : ERRCODE_CONNECTION_FAILURE;
        throw pg::Error(
            code, std::string("on peer: ") + (primary ? primary : connection_error(conn).c_str()),
            detail ? detail : "", hint ? hint : "");
    }
    return last;
}

std::optional<std::string> value(const PGresult *res, int row, int col) {
    if (PQgetisnull(res, row, col)) return std::nullopt;
    return std::string(PQgetvalue(res, row, col), PQgetlength(res, row, col));
}

}  // namespace pgmesh::remote
