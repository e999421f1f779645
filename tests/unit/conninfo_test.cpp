// Unit tests of libpq connection string handling (src/conninfo/conninfo.*).
// They run against the linked libpq, so "secret" means whatever this libpq
// marks with dispchar "*".
#include "conninfo.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace pgmesh::conninfo {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::string_literals;

std::vector<Option> parsed(std::string_view dsn) {
    std::string error;
    std::optional<std::vector<Option>> options = parse(dsn, &error);
    EXPECT_TRUE(options.has_value()) << dsn << ": " << error;
    return options.value_or(std::vector<Option>{});
}

// keyword -> value of the options given in dsn.
std::map<std::string, std::string> values_of(std::string_view dsn) {
    std::map<std::string, std::string> values;
    for (const Option &option : parsed(dsn)) values[option.keyword] = option.value;
    return values;
}

// Options from keyword/value pairs, the rest of each Option left default.
std::vector<Option> options_of(
    std::initializer_list<std::pair<std::string, std::string>> keyword_values) {
    std::vector<Option> options;
    for (const auto &[keyword, value] : keyword_values) {
        Option option;
        option.keyword = keyword;
        option.value = value;
        options.push_back(std::move(option));
    }
    return options;
}

std::string parse_error(std::string_view dsn) {
    std::string error;
    EXPECT_FALSE(parse(dsn, &error).has_value()) << dsn;
    return error;
}

// Values that break naive quoting, one per kind of trouble.
const std::vector<std::string> &hostile_values() {
    static const std::vector<std::string> values = {
        "",
        "'",
        "''",
        "it's",
        "\\",
        "\\'",
        "ends with backslash\\",
        "back\\slash",
        "a b",
        " leading space",
        "trailing space ",
        "\ttab",
        "line\nbreak",
        "carriage\rreturn",
        "semi;colon",
        "=",
        "a=b",
        "x=y z=w",
        "'; DROP TABLE accounts; --",
        "\"double quotes\"",
        "#hash",
        "naïve ünïcödé 日本語 🐘",
        "\xc3\xa0",  // "à": ends in 0xa0, a space in some single-byte locales
        "postgresql://u:p@h/db",
    };
    return values;
}

// ---------------------------------------------------------------------------
// parse

TEST(ConninfoParse, KeywordValueFormInLibpqOrder) {
    std::vector<Option> options = parsed("host=db.example port=5433 dbname=app user=alice");
    std::vector<Option> expected = {
        {"user", "alice", false, "PGUSER"},
        {"dbname", "app", false, "PGDATABASE"},
        {"host", "db.example", false, "PGHOST"},
        {"port", "5433", false, "PGPORT"},
    };
    EXPECT_EQ(options, expected);
}

TEST(ConninfoParse, KeywordValueQuotingAndSpaces) {
    auto values = values_of(R"(dbname = 'my db'  application_name='it\'s \\ here' user=bob\ by)");
    EXPECT_EQ(values["dbname"], "my db");
    EXPECT_EQ(values["application_name"], R"(it's \ here)");
    EXPECT_EQ(values["user"], "bob by");
}

TEST(ConninfoParse, PostgresqlUri) {
    std::vector<Option> options = parsed(
        "postgresql://alice:s3cret@db.example:5433/app?sslmode=require&application_name=a%20b");
    std::vector<Option> expected = {
        {"user", "alice", false, "PGUSER"},         {"password", "s3cret", true, "PGPASSWORD"},
        {"dbname", "app", false, "PGDATABASE"},     {"host", "db.example", false, "PGHOST"},
        {"port", "5433", false, "PGPORT"},          {"application_name", "a b", false, "PGAPPNAME"},
        {"sslmode", "require", false, "PGSSLMODE"},
    };
    EXPECT_EQ(options, expected);
}

TEST(ConninfoParse, PostgresUriWithPercentEncodingAndSeveralHosts) {
    auto values = values_of("postgres://u:p%40ss%3Aword@[::1]:5432,h2:5433/d?sslpassword=k%20p");
    EXPECT_EQ(values["user"], "u");
    EXPECT_EQ(values["password"], "p@ss:word");
    EXPECT_EQ(values["host"], "::1,h2");
    EXPECT_EQ(values["port"], "5432,5433");
    EXPECT_EQ(values["dbname"], "d");
    EXPECT_EQ(values["sslpassword"], "k p");
}

TEST(ConninfoParse, MarksSecretsAndTheirEnvironmentVariables) {
    std::vector<std::string> seen;
    for (const Option &option : parsed("password=a sslpassword=b host=h")) {
        seen.push_back(option.keyword);
        if (option.keyword == "password") {
            EXPECT_TRUE(option.secret);
            EXPECT_EQ(option.envvar, "PGPASSWORD");
        } else if (option.keyword == "sslpassword") {
            EXPECT_TRUE(option.secret);
            EXPECT_EQ(option.envvar, "");
        } else {
            EXPECT_EQ(option.keyword, "host");
            EXPECT_FALSE(option.secret);
        }
    }
    // Each option once: the checks above ran for all three.
    EXPECT_THAT(seen, ::testing::UnorderedElementsAre("password", "sslpassword", "host"));
}

TEST(ConninfoParse, EmptyStringHasNoOptions) {
    EXPECT_TRUE(parsed("").empty());
    EXPECT_TRUE(parsed("   ").empty());
}

TEST(ConninfoParse, ErrorsCarryLibpqsMessageWithoutTrailingNewline) {
    for (std::string_view dsn : {"host=h password", "nosuchoption=1", "password='unterminated",
                                 "postgresql://h/db?novalue", "postgresql://h/db?x=1=2",
                                 "postgresql://u:pa%zzss@h/db", "mydb"}) {
        std::string error = parse_error(dsn);
        EXPECT_FALSE(error.empty()) << dsn;
        EXPECT_NE(error.back(), '\n') << dsn;
    }
    EXPECT_THAT(parse_error("nosuchoption=1"), HasSubstr("nosuchoption"));
    EXPECT_THAT(parse_error("password='x"), HasSubstr("unterminated quoted string"));
}

TEST(ConninfoParse, ErrorPointerIsOptional) {
    EXPECT_FALSE(parse("nosuchoption=1").has_value());
}

TEST(ConninfoParse, RefusesNulBytes) {
    // libpq would stop at the NUL and silently drop what follows.
    std::string error;
    EXPECT_FALSE(parse("host=h\0 password=x"s, &error).has_value());
    EXPECT_THAT(error, HasSubstr("NUL"));
}

// ---------------------------------------------------------------------------
// redact_parse_error

TEST(ConninfoRedactParseError, HidesTheQuotedInputThatCanHoldASecret) {
    // Each of these makes libpq quote a piece of the password.
    for (std::string_view dsn :
         {"host=h password=hunter2 topsecret", "password=a=b topsecret=1",
          "postgresql://u:topsecret%zz@h/db", "postgresql://u:topsecret@[::1/db",
          "postgresql://u:topsecret@[::1]x/db"}) {
        std::string error = parse_error(dsn);
        EXPECT_THAT(error, HasSubstr("topsecret"))
            << "libpq no longer quotes it; fine, but " << dsn;
        std::string redacted = redact_parse_error(error);
        EXPECT_THAT(redacted, Not(HasSubstr("topsecret"))) << dsn;
        EXPECT_THAT(redacted, HasSubstr("\"...\"")) << dsn;
    }
}

TEST(ConninfoRedactParseError, KeepsMessagesWithoutQuotes) {
    EXPECT_EQ(redact_parse_error("unterminated quoted string in connection info string"),
              "unterminated quoted string in connection info string");
}

TEST(ConninfoRedactParseError, KeepsTheTextAroundTheQuotes) {
    EXPECT_EQ(redact_parse_error("invalid connection option \"pasword\""),
              "invalid connection option \"...\"");
    EXPECT_EQ(redact_parse_error("missing \"=\" after \"x\" in connection info string"),
              "missing \"...\" in connection info string");
    // Quotes inside the quoted input: everything up to the last quote goes.
    EXPECT_EQ(redact_parse_error("invalid URI query parameter: \"a\"b\" end"),
              "invalid URI query parameter: \"...\" end");
    EXPECT_EQ(redact_parse_error("dangling \"secret"), "dangling \"...\"");
}

TEST(ConninfoRedactParseError, TranslatedOrEmptyMessagesBecomeGeneric) {
    EXPECT_EQ(redact_parse_error("fehlendes »=« nach »geheim« in der Zeichenkette"),
              "invalid connection string");
    EXPECT_EQ(redact_parse_error("jeton encodé en pourcentage invalide : « geheim »"),
              "invalid connection string");
    EXPECT_EQ(redact_parse_error(""), "invalid connection string");
}

// ---------------------------------------------------------------------------
// quote_value and format

TEST(ConninfoQuoteValue, PlainValuesStayAsTheyAre) {
    EXPECT_EQ(quote_value("abc"), "abc");
    EXPECT_EQ(quote_value("127.0.0.1"), "127.0.0.1");
    EXPECT_EQ(quote_value("a=b"), "a=b");
    EXPECT_EQ(quote_value("/var/run/postgresql"), "/var/run/postgresql");
}

TEST(ConninfoQuoteValue, QuotesAndEscapesTheRest) {
    EXPECT_EQ(quote_value(""), "''");
    EXPECT_EQ(quote_value("a b"), "'a b'");
    EXPECT_EQ(quote_value("it's"), R"('it\'s')");
    EXPECT_EQ(quote_value(R"(a\b)"), R"('a\\b')");
    EXPECT_EQ(quote_value(R"(\')"), R"('\\\'')");
    EXPECT_EQ(quote_value("\"x\""), "'\"x\"'");
    EXPECT_EQ(quote_value("tab\there"), "'tab\there'");
    EXPECT_EQ(quote_value("日本"), "'日本'");
}

TEST(ConninfoFormat, JoinsKeywordValuePairs) {
    EXPECT_EQ(format({}), "");
    const std::vector<Option> options =
        options_of({{"host", "h"}, {"dbname", "my db"}, {"password", ""}});
    EXPECT_EQ(format(options), "host=h dbname='my db' password=''");
}

TEST(ConninfoFormat, HostileValuesRoundTripThroughLibpq) {
    for (const std::string &value : hostile_values()) {
        for (const char *keyword : {"application_name", "dbname", "password", "sslpassword"}) {
            const std::vector<Option> options =
                options_of({{"host", "h"}, {keyword, value}, {"port", "1"}});
            const std::string text = format(options);
            std::map<std::string, std::string> expected = {
                {"host", "h"}, {keyword, value}, {"port", "1"}};
            EXPECT_EQ(values_of(text), expected) << text;
        }
    }
}

TEST(ConninfoFormat, RandomBytesRoundTripThroughLibpq) {
    std::mt19937 random(20240515);
    std::uniform_int_distribution<int> length(0, 24);
    std::uniform_int_distribution<int> byte(1, 255);  // a value cannot hold NUL
    for (int round = 0; round < 2000; ++round) {
        std::string value;
        for (int i = length(random); i > 0; --i) value += static_cast<char>(byte(random));
        const std::vector<Option> options = options_of({{"application_name", value}});
        const std::string text = format(options);
        EXPECT_EQ(values_of(text)["application_name"], value) << text;
    }
}

TEST(ConninfoFormat, FormatOfParseGivesTheSameOptions) {
    for (std::string_view dsn :
         {"host=h port=5 dbname='my db' user=u password='p w'",
          "postgresql://alice:s%27cr%5Cet@[::1]:5432,h2:5433/app?sslmode=require&"
          "application_name=a%20b&sslpassword=%3B%3D",
          "postgres:///db?host=/var/run/postgresql", "service=x options='-c search_path=a\\,b'"}) {
        const std::vector<Option> options = parsed(dsn);
        EXPECT_EQ(parsed(format(options)), options) << dsn;
    }
}

// ---------------------------------------------------------------------------
// secret_keywords and mask

TEST(ConninfoSecretKeywords, HasPasswordAndSslpassword) {
    std::vector<std::string> keywords = secret_keywords();
    EXPECT_THAT(keywords, ::testing::Contains("password"));
    EXPECT_THAT(keywords, ::testing::Contains("sslpassword"));
    for (const std::string &keyword : keywords) {
        std::vector<Option> options = parsed(keyword + "=x");
        ASSERT_EQ(options.size(), 1u) << keyword;
        EXPECT_TRUE(options[0].secret) << keyword;
    }
}

TEST(ConninfoMask, HidesEverySecretKeywordInKeywordValueForm) {
    for (const std::string &keyword : secret_keywords()) {
        const std::string secret = "Leak-" + keyword + "-Value";
        for (const std::string &value : {secret, "'" + secret + " with spaces'"}) {
            const std::string dsn = "host=h " + keyword + "=" + value + " dbname=d";
            const std::string masked = mask(dsn);
            EXPECT_THAT(masked, Not(HasSubstr("Leak-"))) << dsn;
            EXPECT_THAT(masked, HasSubstr(keyword + "=********")) << dsn;
            EXPECT_THAT(masked, HasSubstr("host=h"));
            EXPECT_THAT(masked, HasSubstr("dbname=d"));
        }
    }
}

TEST(ConninfoMask, HidesEverySecretKeywordInUriForm) {
    for (const std::string &keyword : secret_keywords()) {
        const std::string dsn = "postgresql://u@h/db?" + keyword + "=UriLeak" + keyword;
        const std::string masked = mask(dsn);
        EXPECT_THAT(masked, Not(HasSubstr("UriLeak"))) << dsn;
        EXPECT_THAT(masked, HasSubstr(keyword + "=********")) << dsn;
    }
}

TEST(ConninfoMask, HidesTheUriPasswordAndQueryParameters) {
    const std::string masked = mask("postgresql://u:secret@h/db?sslpassword=x");
    EXPECT_EQ(masked, "user=u password=******** dbname=db host=h sslpassword=********");
    const std::string both = mask("postgres://u:first%20one@h:5/db?password=second&port=6");
    EXPECT_THAT(both, Not(HasSubstr("first")));
    EXPECT_THAT(both, Not(HasSubstr("second")));
    EXPECT_THAT(both, HasSubstr("password=********"));
}

TEST(ConninfoMask, KeepsEverythingElse) {
    const std::string dsn = "host=h port=5433 dbname='my db' user=u password=pw sslmode=require";
    std::map<std::string, std::string> expected = values_of(dsn);
    expected["password"] = "********";
    EXPECT_EQ(values_of(mask(dsn)), expected);
    EXPECT_EQ(mask("host=h dbname=d"), "dbname=d host=h");
    EXPECT_EQ(mask(""), "");
}

TEST(ConninfoMask, NeverEchoesUnparsableInput) {
    for (std::string_view dsn :
         {"host=h password=hunter2 topsecret", "password='hunter2", "postgresql://u:pa%zzss@h/db",
          "postgresql://u:hunter2@[::1/db", "hunter2"}) {
        EXPECT_EQ(mask(dsn), "(invalid connection string)") << dsn;
    }
    EXPECT_EQ(mask("password=hunter2\0x"s), "(invalid connection string)");
}

// ---------------------------------------------------------------------------
// for_child

// Sets (or unsets, with nullopt) an environment variable for one scope.
class ScopedEnvironment {
public:
    ScopedEnvironment(std::string name, std::optional<std::string> value) : name_(std::move(name)) {
        if (const char *old = std::getenv(name_.c_str())) old_ = old;
        if (value) {
            setenv(name_.c_str(), value->c_str(), 1);
        } else {
            unsetenv(name_.c_str());
        }
    }
    ScopedEnvironment(const ScopedEnvironment &) = delete;
    ScopedEnvironment &operator=(const ScopedEnvironment &) = delete;
    ~ScopedEnvironment() {
        if (old_) {
            setenv(name_.c_str(), old_->c_str(), 1);
        } else {
            unsetenv(name_.c_str());
        }
    }

private:
    std::string name_;
    std::optional<std::string> old_;
};

// The options libpq ends up with when a child connects with `child`: its
// environment and service file applied as the caller would apply them. Uses a
// Unix socket directory that does not exist, so nothing goes on the network.
std::map<std::string, std::string> options_seen_by_libpq(const ChildConnection &child) {
    namespace fs = std::filesystem;
    const fs::path service_file =
        fs::temp_directory_path() / ("pgmesh_conninfo_test_" + std::to_string(getpid()) + ".conf");
    {
        std::ofstream output(service_file, std::ios::trunc);
        output << child.service_file;
    }
    fs::permissions(service_file, fs::perms::owner_read | fs::perms::owner_write);
    std::map<std::string, std::string> seen;
    {
        ScopedEnvironment no_service("PGSERVICE", std::nullopt);
        ScopedEnvironment file("PGSERVICEFILE", service_file.string());
        ScopedEnvironment no_password("PGPASSWORD", std::nullopt);
        std::vector<std::unique_ptr<ScopedEnvironment>> environment;
        for (const auto &[name, value] : child.environment) {
            environment.push_back(std::make_unique<ScopedEnvironment>(name, value));
        }
        const std::string conninfo = "host=/nonexistent/pgmesh-conninfo-test " + child.conninfo;
        std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectStart(conninfo.c_str()),
                                                          &PQfinish);
        EXPECT_NE(conn, nullptr);
        if (conn) {
            std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(
                PQconninfo(conn.get()), &PQconninfoFree);
            for (const PQconninfoOption *o = options.get(); o && o->keyword; ++o) {
                if (o->val != nullptr) seen[o->keyword] = o->val;
            }
        }
    }
    fs::remove(service_file);
    return seen;
}

void expect_no_secret_in_conninfo(const ChildConnection &child, std::string_view dsn) {
    for (const Option &option : parsed(child.conninfo)) {
        EXPECT_FALSE(option.secret) << option.keyword << " in " << child.conninfo;
    }
    for (const Option &option : parsed(dsn)) {
        // Short values ("=", "a") occur in any connection string.
        if (option.secret && option.value.size() >= 6) {
            EXPECT_THAT(child.conninfo, Not(HasSubstr(option.value))) << dsn;
        }
    }
}

TEST(ConninfoForChild, PasswordGoesToPgpassword) {
    const std::string dsn = "host=h port=5 user=u password=pw-One dbname=d";
    ChildConnection child = for_child(dsn, "pgmesh_child");
    using Environment = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(child.environment, (Environment{{"PGPASSWORD", "pw-One"}}));
    EXPECT_EQ(child.service_file, "");
    EXPECT_EQ(child.conninfo, "user=u dbname=d host=h port=5");
    expect_no_secret_in_conninfo(child, dsn);
}

TEST(ConninfoForChild, SslpasswordGoesToTheServiceFile) {
    const std::string dsn = "host=h sslkey=/k.pem sslpassword=kp-One dbname=d";
    ChildConnection child = for_child(dsn, "pgmesh_child");
    EXPECT_TRUE(child.environment.empty());
    EXPECT_EQ(child.service_file, "[pgmesh_child]\nsslpassword=kp-One\n");
    EXPECT_EQ(child.conninfo, "service=pgmesh_child dbname=d host=h sslkey=/k.pem");
    expect_no_secret_in_conninfo(child, dsn);
}

TEST(ConninfoForChild, BothSecretsFromAUri) {
    const std::string dsn = "postgresql://u:pw%20Two@h:7/db?sslpassword=kp%27Two&sslmode=require";
    ChildConnection child = for_child(dsn, "svc-1.a");
    using Environment = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(child.environment, (Environment{{"PGPASSWORD", "pw Two"}}));
    EXPECT_EQ(child.service_file, "[svc-1.a]\nsslpassword=kp'Two\n");
    EXPECT_THAT(child.conninfo, HasSubstr("service=svc-1.a"));
    expect_no_secret_in_conninfo(child, dsn);
}

TEST(ConninfoForChild, EverySecretKeywordLeavesTheConninfo) {
    for (const std::string &keyword : secret_keywords()) {
        const std::string dsn = "host=h " + keyword + "=ChildLeak" + keyword;
        ChildConnection child = for_child(dsn, "pgmesh_child");
        EXPECT_THAT(child.conninfo, Not(HasSubstr("ChildLeak"))) << keyword;
        const bool in_environment =
            !child.environment.empty() && child.environment[0].second == "ChildLeak" + keyword;
        const bool in_service_file =
            child.service_file.find(keyword + "=ChildLeak" + keyword + "\n") != std::string::npos;
        EXPECT_TRUE(in_environment != in_service_file) << keyword;
    }
}

TEST(ConninfoForChild, NoSecretsMeansNoEnvironmentAndNoServiceFile) {
    const std::string dsn = "postgresql://u@h:5/db?application_name=it%27s";
    ChildConnection child = for_child(dsn, "pgmesh_child");
    EXPECT_TRUE(child.environment.empty());
    EXPECT_EQ(child.service_file, "");
    EXPECT_EQ(parsed(child.conninfo), parsed(dsn));
}

TEST(ConninfoForChild, PasswordWithANamedServiceUsesTheEnvironment) {
    ChildConnection child = for_child("service=prod password=pw", "pgmesh_child");
    EXPECT_EQ(child.conninfo, "service=prod");
    ASSERT_EQ(child.environment.size(), 1u);
    EXPECT_EQ(child.environment[0].second, "pw");
}

TEST(ConninfoForChild, LibpqSeesTheOriginalSecrets) {
    // Values at the edge of what a service file line can carry.
    const std::string longest(1000 - std::string("sslpassword=").size() - 1, 'k');
    for (const std::string &sslpassword :
         {std::string("kp"), std::string("a b\tc"), std::string("'\"\\=#;[x]"),
          std::string("日本語"), std::string(""), longest}) {
        for (const std::string &password : hostile_values()) {
            const std::vector<Option> options = options_of({{"user", "u"},
                                                            {"password", password},
                                                            {"dbname", "d"},
                                                            {"sslpassword", sslpassword}});
            const std::string dsn = format(options);
            ChildConnection child = for_child(dsn, "pgmesh_child");
            expect_no_secret_in_conninfo(child, dsn);
            std::map<std::string, std::string> seen = options_seen_by_libpq(child);
            for (const Option &option : options) {
                EXPECT_EQ(seen[option.keyword], option.value) << option.keyword << " of " << dsn;
            }
        }
    }
}

// Expects for_child to refuse dsn with a message that names `names` and does
// not contain `secret`.
void expect_refused(std::string_view dsn, std::string_view names, std::string_view secret) {
    try {
        ChildConnection child = for_child(dsn, "pgmesh_child");
        ADD_FAILURE() << "accepted " << dsn << " as " << child.conninfo;
    } catch (const std::invalid_argument &error) {
        EXPECT_THAT(error.what(), HasSubstr(std::string(names))) << dsn;
        EXPECT_THAT(error.what(), Not(HasSubstr(std::string(secret)))) << dsn;
    }
}

TEST(ConninfoForChild, RefusesUnparsableInputWithoutEchoingIt) {
    expect_refused("host=h password=hunter2 topsecret", "invalid connection string", "topsecret");
    expect_refused("host=h password=hunter2 topsecret", "invalid connection string", "hunter2");
    expect_refused("postgresql://u:topsecret%zz@h/db", "invalid connection string", "secret");
    expect_refused("postgresql://u:topsecret@[::1/db", "invalid connection string", "topsecret");
    expect_refused("sslpassword='topsecret", "invalid connection string", "topsecret");
}

TEST(ConninfoForChild, RefusesAServiceFileSecretWhenTheDsnNamesAService) {
    expect_refused("service=prod sslpassword=kp-Three", "sslpassword", "kp-Three");
    expect_refused("postgresql://h/db?service=prod&sslpassword=kp-Three", "sslpassword",
                   "kp-Three");
}

TEST(ConninfoForChild, RefusesValuesAServiceFileCannotHold) {
    expect_refused("sslpassword='kp-Four\nnext'", "sslpassword", "kp-Four");
    expect_refused("sslpassword='kp-Four\rnext'", "sslpassword", "kp-Four");
    expect_refused("sslpassword='kp-Four\n'", "sslpassword", "kp-Four");
    expect_refused("sslpassword=' kp-Four'", "sslpassword", "kp-Four");
    expect_refused("sslpassword='kp-Four '", "sslpassword", "kp-Four");
    expect_refused("sslpassword='\tkp-Four'", "sslpassword", "kp-Four");
    expect_refused("sslpassword='kp-Four\t'", "sslpassword", "kp-Four");
    expect_refused("postgresql://h/db?sslpassword=kp-Four%0Anext", "sslpassword", "kp-Four");
    // "sslpassword=" plus the value: 1000 bytes is too long, 999 is fine.
    const std::string too_long = "kp-Four" + std::string(1000 - 12 - 7, 'x');
    expect_refused("sslpassword=" + too_long, "sslpassword", "kp-Four");
    EXPECT_NO_THROW(for_child("sslpassword=" + too_long.substr(1), "pgmesh_child"));
}

TEST(ConninfoForChild, RefusesBadServiceNames) {
    for (std::string_view name : {"", "a b", "x]", "a\nb", "[x", "naïve"}) {
        EXPECT_THROW(for_child("host=h", name), std::invalid_argument) << name;
    }
}

}  // namespace
}  // namespace pgmesh::conninfo
