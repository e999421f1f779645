// libpq connections from inside the server (apply workers, join): RAII
// handles, interruptible waits, and remote errors turned into pg::Error
// with the remote SQLSTATE.
#pragma once

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

// Runs one command and waits for its result interruptibly. Throws pg::Error
// with the remote SQLSTATE unless the status is one of the expected ones.
Result exec(PGconn *conn, const std::string &sql, ExecStatusType expected = PGRES_TUPLES_OK);

std::optional<std::string> value(const PGresult *res, int row, int col);

// Waits until the connection's socket is readable (or writable) or the
// latch is set; handles interrupts. Returns after at most timeout_ms.
void wait_socket(PGconn *conn, bool for_write, long timeout_ms);

// Checks a conninfo string; throws 22023 with libpq's complaint.
void check_dsn(const std::string &dsn, const char *what);
// The DSN with password=... replaced by ********.
std::string mask_dsn(const std::string &dsn);
// The DSN without its password, and the password (if any), so that child
// programs get it from the environment and not their command line.
std::pair<std::string, std::optional<std::string>> split_password(const std::string &dsn);

std::string quote_literal(std::string_view s);

}  // namespace pgmesh::remote
