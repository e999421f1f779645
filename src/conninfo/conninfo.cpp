#include "conninfo.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>

namespace pgmesh::conninfo {

namespace {

struct OptionsDeleter {
    void operator()(PQconninfoOption *options) const noexcept { PQconninfoFree(options); }
};
using OptionsPtr = std::unique_ptr<PQconninfoOption, OptionsDeleter>;

constexpr std::string_view kWhitespace = " \t\n\v\f\r";
constexpr std::string_view kGenericParseError = "invalid connection string";
// libpq's service-file reader (parseServiceFile) reads into a 1024-byte buffer
// and refuses longer lines; staying well below leaves room for other libpq
// versions and the newline.
constexpr size_t kMaxServiceFileLine = 1000;

bool is_secret(const PQconninfoOption &option) {
    return option.dispchar != nullptr && std::strchr(option.dispchar, '*') != nullptr;
}

// Bytes that can stand unquoted in a value whatever the locale: printable
// ASCII without libpq's quote and escape characters (and without '"', which
// means nothing to libpq but much to shells and logs that show the string).
bool is_plain(char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte > 0x20 && byte < 0x7f && c != '\'' && c != '"' && c != '\\';
}

bool is_service_name_character(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
}

void check_service_name(std::string_view service_name) {
    // It becomes a "[name]" line of the service file and a service=... value.
    const bool valid =
        !service_name.empty() && service_name.size() + 2 < kMaxServiceFileLine &&
        std::all_of(service_name.begin(), service_name.end(), is_service_name_character);
    if (!valid) {
        throw std::invalid_argument("invalid service name \"" + std::string(service_name) +
                                    "\" for a child connection: use ASCII letters, digits, '_', "
                                    "'-' and '.'");
    }
}

// The service-file reader has no quoting: each line is trimmed, then split at
// its first '='. A value survives only if trimming and line splitting leave
// it alone.
void check_service_file_value(const Option &option) {
    auto refuse = [&](std::string_view why) {
        throw std::invalid_argument(
            "the value of " + option.keyword +
            " cannot be passed to a child program in a service file: " + std::string(why));
    };
    const std::string &value = option.value;
    if (value.find_first_of("\n\r") != std::string::npos) {
        refuse("it contains a line break");
    }
    if (!value.empty() && (kWhitespace.find(value.front()) != std::string_view::npos ||
                           kWhitespace.find(value.back()) != std::string_view::npos)) {
        refuse("it begins or ends with whitespace");
    }
    if (option.keyword.size() + 1 + value.size() >= kMaxServiceFileLine) {
        refuse("it is too long for a service file line");
    }
}

}  // namespace

std::optional<std::vector<Option>> parse(std::string_view dsn, std::string *error) {
    if (dsn.find('\0') != std::string_view::npos) {
        if (error != nullptr) *error = "connection string contains a NUL byte";
        return std::nullopt;
    }
    const std::string text(dsn);
    char *message = nullptr;
    OptionsPtr parsed(PQconninfoParse(text.c_str(), &message));
    if (!parsed) {
        // No message at all means libpq ran out of memory.
        std::string reason = message != nullptr ? message : "out of memory";
        PQfreemem(message);
        while (!reason.empty() && (reason.back() == '\n' || reason.back() == '\r')) {
            reason.pop_back();
        }
        if (error != nullptr) *error = std::move(reason);
        return std::nullopt;
    }
    std::vector<Option> options;
    for (const PQconninfoOption *option = parsed.get(); option->keyword != nullptr; ++option) {
        if (option->val == nullptr) continue;  // not given
        options.push_back(Option{option->keyword, option->val, is_secret(*option),
                                 option->envvar != nullptr ? option->envvar : ""});
    }
    return options;
}

std::string redact_parse_error(std::string_view libpq_message) {
    const bool translated = std::any_of(libpq_message.begin(), libpq_message.end(), [](char c) {
        return static_cast<unsigned char>(c) >= 0x80;
    });
    if (libpq_message.empty() || translated) return std::string(kGenericParseError);
    const size_t first = libpq_message.find('"');
    if (first == std::string_view::npos) return std::string(libpq_message);
    // From the first to the last quote, because the quoted input may itself
    // hold quotes; an unmatched quote hides the rest of the message.
    const size_t last = libpq_message.rfind('"');
    std::string redacted(libpq_message.substr(0, first));
    redacted += "\"...\"";
    if (last != first) redacted += libpq_message.substr(last + 1);
    return redacted;
}

std::string quote_value(std::string_view value) {
    if (!value.empty() && std::all_of(value.begin(), value.end(), is_plain)) {
        return std::string(value);
    }
    std::string quoted = "'";
    for (char c : value) {
        if (c == '\'' || c == '\\') quoted += '\\';
        quoted += c;
    }
    quoted += '\'';
    return quoted;
}

std::string format(std::span<const Option> options) {
    std::string text;
    for (const Option &option : options) {
        if (!text.empty()) text += ' ';
        text += option.keyword;
        text += '=';
        text += quote_value(option.value);
    }
    return text;
}

std::string mask(std::string_view dsn) {
    std::optional<std::vector<Option>> options = parse(dsn);
    if (!options) return std::string(kInvalidConnectionString);
    for (Option &option : *options) {
        if (option.secret) option.value = kMaskedValue;
    }
    return format(*options);
}

std::vector<std::string> secret_keywords() {
    // An empty string parses to libpq's whole option table, the one that
    // PQconndefaults copies, without PQconndefaults' environment and service
    // file lookups (which make it return NULL when PGSERVICE names a missing
    // service).
    OptionsPtr table(PQconninfoParse("", nullptr));
    if (!table) throw std::bad_alloc();
    std::vector<std::string> keywords;
    for (const PQconninfoOption *option = table.get(); option->keyword != nullptr; ++option) {
        if (is_secret(*option)) keywords.emplace_back(option->keyword);
    }
    return keywords;
}

ChildConnection for_child(std::string_view dsn, std::string_view service_name) {
    check_service_name(service_name);
    std::string error;
    std::optional<std::vector<Option>> options = parse(dsn, &error);
    if (!options) {
        throw std::invalid_argument("invalid connection string for a child program: " +
                                    redact_parse_error(error));
    }

    ChildConnection child;
    std::vector<Option> kept;
    std::vector<Option> in_service_file;
    bool names_service = false;
    for (Option &option : *options) {
        if (option.keyword == "service") names_service = true;
        if (!option.secret) {
            kept.push_back(std::move(option));
        } else if (!option.envvar.empty()) {
            child.environment.emplace_back(option.envvar, std::move(option.value));
        } else {
            in_service_file.push_back(std::move(option));
        }
    }

    if (!in_service_file.empty()) {
        if (names_service) {
            // A connection names one service only, and libpq does not nest them.
            throw std::invalid_argument(
                in_service_file.front().keyword +
                " cannot be passed to a child program: it needs a service file, but the "
                "connection string already names a service");
        }
        for (const Option &option : in_service_file) check_service_file_value(option);
        child.service_file = "[" + std::string(service_name) + "]\n";
        for (const Option &option : in_service_file) {
            child.service_file += option.keyword + "=" + option.value + "\n";
        }
        // "service" comes first in libpq's option order.
        kept.insert(kept.begin(), Option{"service", std::string(service_name), false, "PGSERVICE"});
    }
    child.conninfo = format(kept);
    return child;
}

}  // namespace pgmesh::conninfo
