// libpq connections from inside the server (apply workers, join): RAII
// handles, interruptible waits, and remote errors turned into pg::Error
// with the remote SQLSTATE.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "guard.hpp"

namespace pgmesh::remote {

struct ConnCloser {
    void operator()(PGconn *c) const { PQfinish(c); }
};
struct ResultCloser {
    void operator()(PGresult *r) const { PQclear(r); }
};
using Connection = std::unique_ptr<PGconn, ConnCloser>;
using Result = std::unique_ptr<PGresult, ResultCloser>;

// Connects (interruptibly) to `dsn`; replication=database when asked.
// Throws pg::Error 08001 naming the masked DSN when it cannot.
Connection connect(const std::string &dsn, bool replication, const std::string &application_name,
                   int timeout_seconds = 30);

// Runs one command through the simple query protocol and waits for its
// result interruptibly: for commands without values (replication commands,
// which cannot take parameters, and fixed SQL). Throws pg::Error with the
// remote SQLSTATE unless the status is one of the expected ones.
Result exec(PGconn *conn, const std::string &sql, ExecStatusType expected = PGRES_TUPLES_OK);

// One statement with text parameters ($1, $2, ...; std::nullopt is NULL):
// every value goes this way, never pasted into the statement.
using Params = std::vector<std::optional<std::string>>;
Result exec_params(PGconn *conn, const std::string &sql, const Params &params,
                   ExecStatusType expected = PGRES_TUPLES_OK);

// Throws the error a failed result carries as pg::Error, with the remote
// SQLSTATE, message, detail and hint.
[[noreturn]] void throw_result_error(PGconn *conn, const PGresult *result);

// Quoted for the connection's server by libpq (PQescapeLiteral,
// PQescapeIdentifier), for the commands that cannot take parameters.
std::string quote_literal(PGconn *conn, std::string_view value);
std::string quote_identifier(PGconn *conn, std::string_view name);

std::optional<std::string> value(const PGresult *res, int row, int col);

// A logical slot that the pgmesh output plugin decodes, created on the
// replication connection `conn`. kExport exports a snapshot to copy data as
// of the slot's start; it lives until the next command on `conn`.
enum class SlotSnapshot { kNothing, kExport };
struct CreatedSlot {
    uint64_t consistent_point = 0;
    std::string snapshot;  // exported snapshot name, empty unless asked for
};
CreatedSlot create_logical_slot(PGconn *conn, const std::string &slot, SlotSnapshot snapshot);

// Waits until the connection's socket is readable (or writable) or the
// latch is set; handles interrupts. Returns after at most timeout_ms.
void wait_socket(PGconn *conn, bool for_write, long timeout_ms);

// Checks a conninfo string; throws 22023 with libpq's complaint.
void check_dsn(const std::string &dsn, const char *what);
// The DSN with the value of every option libpq marks secret (password,
// sslpassword) replaced by ********: the only form a DSN may take in a
// message.
std::string mask_dsn(const std::string &dsn);

}  // namespace pgmesh::remote
