// libpq connection strings: parsing, quoting, masking secrets, and handing a
// connection to a child program without putting a secret on its command line.
//
// Everything here asks libpq (PQconninfoParse and its option table) rather
// than parsing by hand, so that what counts as a keyword, a URI or a secret
// (dispchar "*") is exactly what the linked libpq thinks. Only libpq-fe.h and
// the standard library are used: the extension (src/pg) and the CLI share it.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmesh::conninfo {

// What mask() writes instead of a secret value.
inline constexpr std::string_view kMaskedValue = "********";
// What mask() returns for text that does not parse.
inline constexpr std::string_view kInvalidConnectionString = "(invalid connection string)";

// One option given in a libpq connection string, as PQconninfoParse reports it.
struct Option {
    std::string keyword;
    std::string value;
    bool secret = false;  // libpq marks it secret (dispchar "*"): password, sslpassword, ...
    std::string envvar;   // libpq's environment variable for it (e.g. PGPASSWORD), "" if none

    bool operator==(const Option &) const = default;
};

// Parses a keyword/value string or a postgresql:// / postgres:// URI with
// PQconninfoParse. Returns only the options that were given, in libpq's option
// order; std::nullopt when it does not parse, with libpq's message (trailing
// newline removed) in *error when error is not null. Text with a NUL byte does
// not parse either (libpq would silently ignore everything after it).
//
// libpq's message can quote pieces of the input, including a password (e.g.
// `missing "=" after "secret"` for "password=my secret"): show it only through
// redact_parse_error().
std::optional<std::vector<Option>> parse(std::string_view dsn, std::string *error = nullptr);

// libpq's parse error with everything from its first to its last double quote
// replaced by "...", because libpq puts the pieces of the input it quotes
// (which can be a secret) between double quotes. When the message has any
// non-ASCII byte it is a translation whose quotes may differ (»%s«, « %s »),
// and only "invalid connection string" is returned.
std::string redact_parse_error(std::string_view libpq_message);

// A value for a keyword/value connection string: returned as is when it is a
// non-empty run of characters other than whitespace, quotes and backslashes;
// otherwise single-quoted, with ' and \ escaped by a backslash (libpq's rule).
// Control characters and non-ASCII bytes are quoted too: libpq ends an
// unquoted value at isspace(), which depends on the locale of the process.
std::string quote_value(std::string_view value);

// "keyword=value keyword=value ..." with values through quote_value.
std::string format(std::span<const Option> options);

// The connection string in keyword/value form with the value of every secret
// option replaced by ********; "(invalid connection string)" when it does not
// parse (never echo text that could hold a secret).
std::string mask(std::string_view dsn);

// Keywords of every option this libpq marks secret (dispchar "*" in its option
// table, the one PQconndefaults reports). Tests use it to check masking
// against all of them.
std::vector<std::string> secret_keywords();

// How a child program (pg_dump, pg_restore) is given a connection without any
// secret on its command line (which every local user can read in /proc).
struct ChildConnection {
    std::string conninfo;  // for --dbname=...: holds no secret
    std::vector<std::pair<std::string, std::string>> environment;  // e.g. {"PGPASSWORD", "..."}
    // When not empty: the text of a service file that the caller must write
    // (mode 0600) and point PGSERVICEFILE at; `conninfo` then names
    // service_name with service=...
    std::string service_file;
};

// Splits dsn for a child program:
// - secret options that have an environment variable go to `environment`;
// - secret options without one (sslpassword) go to a service file section
//   "[service_name]" with one "keyword=value" line each, and conninfo gets
//   service=<service_name>;
// - every other option stays in conninfo.
// Throws std::invalid_argument with a message that names the option (never its
// value) when: the dsn does not parse (the message is libpq's, through
// redact_parse_error); a secret needs the service file but the dsn already
// names a service; or a value cannot be written to a service file (libpq's
// service-file reader trims leading/trailing whitespace, has no quoting, and
// reads lines shorter than 1024 bytes: refuse values with a newline or
// carriage return, leading or trailing whitespace, or that would make the line
// 1000 bytes or longer). Also throws when service_name is empty or has
// characters other than ASCII letters, digits, '_', '-' and '.'.
//
// libpq fills options that the connection string leaves out from the service
// (service=... or PGSERVICE) before it looks at environment variables, so the
// caller must start the child without PGSERVICE, and a service named by dsn
// must not set the secrets that go to `environment`.
ChildConnection for_child(std::string_view dsn, std::string_view service_name);

}  // namespace pgmesh::conninfo
