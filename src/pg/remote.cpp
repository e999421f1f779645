#include "remote.hpp"

#include "conninfo.hpp"
#include "walstream.hpp"

namespace pgmesh::remote {

namespace {

std::string connection_error(PGconn *conn) {
    std::string msg = conn ? PQerrorMessage(conn) : "out of memory";
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return msg;
}

}  // namespace

void check_dsn(const std::string &dsn, const char *what) {
    std::string error;
    if (!conninfo::parse(dsn, &error))
        // libpq's message can quote a piece of the DSN, password included.
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE,
                        std::string("invalid ") + what + ": " + conninfo::redact_parse_error(error),
                        {},
                        "Give a libpq connection string such as 'host=... port=... dbname=...'.");
}

std::string mask_dsn(const std::string &dsn) {
    return conninfo::mask(dsn);
}

namespace {

// libpq's escaping for this connection's server, or an error naming `what`.
std::string escaped(PGconn *conn, std::string_view text,
                    char *(*escape)(PGconn *, const char *, size_t), const char *what) {
    std::unique_ptr<char, decltype(&PQfreemem)> quoted(escape(conn, text.data(), text.size()),
                                                       PQfreemem);
    if (!quoted)
        throw pg::Error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            std::string("could not quote ") + what + " for the peer: " + connection_error(conn));
    return quoted.get();
}

}  // namespace

std::string quote_literal(PGconn *conn, std::string_view value) {
    return escaped(conn, value, PQescapeLiteral, "a value");
}

std::string quote_identifier(PGconn *conn, std::string_view name) {
    return escaped(conn, name, PQescapeIdentifier, "a name");
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

namespace {

// Collects the results of the command just sent; see exec().
Result finish(PGconn *conn, ExecStatusType expected) {
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
        (expected == PGRES_TUPLES_OK && st != PGRES_TUPLES_OK))
        throw_result_error(conn, last.get());
    return last;
}

}  // namespace

Result exec(PGconn *conn, const std::string &sql, ExecStatusType expected) {
    if (!PQsendQuery(conn, sql.c_str()))
        throw pg::Error(ERRCODE_CONNECTION_FAILURE,
                        "could not send query to peer: " + connection_error(conn));
    return finish(conn, expected);
}

Result exec_params(PGconn *conn, const std::string &sql, const Params &params,
                   ExecStatusType expected) {
    std::vector<const char *> values;
    values.reserve(params.size());
    for (const auto &p : params) values.push_back(p ? p->c_str() : nullptr);
    if (!PQsendQueryParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                           values.data(), nullptr, nullptr, 0))
        throw pg::Error(ERRCODE_CONNECTION_FAILURE,
                        "could not send query to peer: " + connection_error(conn));
    return finish(conn, expected);
}

void throw_result_error(PGconn *conn, const PGresult *result) {
    const char *state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char *detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL);
    const char *hint = PQresultErrorField(result, PG_DIAG_MESSAGE_HINT);
    const char *primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    int code = state && strlen(state) == 5
                   ? MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4])
                   : ERRCODE_CONNECTION_FAILURE;
    throw pg::Error(code,
                    std::string("on peer: ") + (primary ? primary : connection_error(conn).c_str()),
                    detail ? detail : "", hint ? hint : "");
}

std::optional<std::string> value(const PGresult *res, int row, int col) {
    if (PQgetisnull(res, row, col)) return std::nullopt;
    return std::string(PQgetvalue(res, row, col), PQgetlength(res, row, col));
}

CreatedSlot create_logical_slot(PGconn *conn, const std::string &slot, SlotSnapshot snapshot) {
    // Replication commands take no parameters: the name is quoted by libpq.
    Result created =
        exec(conn, "CREATE_REPLICATION_SLOT " + quote_identifier(conn, slot) +
                       " LOGICAL pgmesh (SNAPSHOT '" +
                       (snapshot == SlotSnapshot::kExport ? "export" : "nothing") + "')");
    CreatedSlot out;
    if (std::optional<std::string> point = value(created.get(), 0, 1))
        out.consistent_point = walstream::parse_lsn(*point).value_or(0);
    out.snapshot = value(created.get(), 0, 2).value_or("");
    return out;
}

}  // namespace pgmesh::remote
