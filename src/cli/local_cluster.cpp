#include "local_cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "pq.hpp"
#include "process.hpp"

#ifndef PGMESH_DEFAULT_PG_BINDIR
#define PGMESH_DEFAULT_PG_BINDIR "/usr/lib/postgresql/15/bin"
#endif

namespace fs = std::filesystem;

namespace pgmesh::local {

namespace {

using namespace std::chrono_literals;

// Version 2 lists the node numbers (there are gaps once a node was
// discarded) and the state of each node that is not a member. Version 1 (all
// members, numbered 1..nodes) is still read; a CLI that only knows version 1
// refuses version 2 instead of starting parted nodes.
constexpr int kStateFileVersion = 2;
constexpr int kMaxNodes = 64;
// Parted nodes stay recorded, so numbers grow past kMaxNodes; each recorded
// node had a pgmesh node_number in the group, which ends at 1023.
constexpr int kMaxNodeNumber = 1023;
constexpr std::string_view kLockFileName = "pgmesh-local.lock";
// Starts the block of settings write_configuration() appends to
// postgresql.conf; `local add` copies the block from there on.
constexpr std::string_view kSettingsHeader =
    "# --- pgmesh local cluster settings (later lines win over earlier ones) ---";
constexpr std::string_view kStartTimeoutSeconds = "120";
constexpr std::string_view kStopTimeoutSeconds = "60";
// sockaddr_un.sun_path is 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPathLength = 107;

// Closes a file descriptor when it goes out of scope.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    FileDescriptor(const FileDescriptor &) = delete;
    FileDescriptor &operator=(const FileDescriptor &) = delete;
    ~FileDescriptor() {
        if (fd_ >= 0) close(fd_);
    }
    int get() const { return fd_; }

private:
    int fd_;
};

std::string trim(std::string_view text) {
    size_t begin = text.find_first_not_of(" \t\r\n");
    if (begin == std::string_view::npos) return {};
    size_t end = text.find_last_not_of(" \t\r\n");
    return std::string(text.substr(begin, end - begin + 1));
}

// The last few lines of a program's output, for error messages.
std::string output_tail(const std::string &output, size_t lines = 20) {
    std::string text = trim(output);
    size_t pos = text.size();
    for (size_t seen = 0; seen < lines && pos != std::string::npos && pos > 0; ++seen) {
        pos = text.rfind('\n', pos - 1);
    }
    return pos == std::string::npos || pos == 0 ? text : text.substr(pos + 1);
}

// A value for postgresql.conf: always single-quoted, which the configuration
// file parser accepts for settings of any type.
std::string quote_setting_value(std::string_view value) {
    std::string quoted = "'";
    for (char c : value) {
        if (c == '\'') {
            quoted += "''";
        } else if (c == '\\') {
            quoted += "\\\\";
        } else {
            quoted += c;
        }
    }
    quoted += '\'';
    return quoted;
}

// The state file has one key=value per line and read_key_values() trims
// values, so a value with a line break or surrounding whitespace would come
// back different (or set other keys, such as pg_bindir, whose programs run).
void check_state_file_value(std::string_view what, std::string_view value) {
    const bool has_control = std::any_of(value.begin(), value.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
    });
    if (has_control || (!value.empty() && trim(value) != value)) {
        throw std::invalid_argument(std::string(what) +
                                    " must not contain control characters or begin or end with "
                                    "whitespace");
    }
}

// Settings are written as `name = 'value'` lines of postgresql.conf: a name
// that is not a setting name, or a value with a line break (which no quoted
// string there can hold), would be a different line than the one asked for.
void check_setting(const Setting &setting) {
    auto is_name_character = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '.';
    };
    const std::string &name = setting.name;
    const bool valid_name = !name.empty() && !(name.front() >= '0' && name.front() <= '9') &&
                            name.front() != '.' &&
                            std::all_of(name.begin(), name.end(), is_name_character);
    if (!valid_name) {
        throw std::invalid_argument("\"" + name +
                                    "\" is not a setting name (letters, digits, '_' and '.')");
    }
    if (setting.value.find_first_of(std::string_view("\n\r\0", 3)) != std::string::npos) {
        throw std::invalid_argument("the value of " + name + " must not contain a line break");
    }
}

bool list_contains(std::string_view comma_separated, std::string_view item) {
    std::stringstream stream{std::string(comma_separated)};
    std::string element;
    while (std::getline(stream, element, ',')) {
        if (trim(element) == item) return true;
    }
    return false;
}

std::string node_name(int number) {
    return "node" + std::to_string(number);
}

std::string_view state_file_word(NodeState state) {
    switch (state) {
        case NodeState::kMember:
            return "member";
        case NodeState::kAdding:
            return "adding";
        case NodeState::kParted:
            return "parted";
    }
    return "member";
}

sockaddr_in loopback_address(int port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

std::map<std::string, std::string> read_key_values(const fs::path &file) {
    std::ifstream input(file);
    if (!input) throw std::runtime_error("cannot read " + file.string());
    std::map<std::string, std::string> values;
    std::string line;
    int line_number = 0;
    while (std::getline(input, line)) {
        ++line_number;
        std::string text = trim(line);
        if (text.empty() || text.front() == '#') continue;
        size_t equals = text.find('=');
        if (equals == std::string::npos) {
            throw std::runtime_error(file.string() + ":" + std::to_string(line_number) +
                                     ": expected key=value, found \"" + text + "\"");
        }
        values[trim(text.substr(0, equals))] = trim(text.substr(equals + 1));
    }
    return values;
}

int parse_int(const std::map<std::string, std::string> &values, const std::string &key,
              const fs::path &file) {
    auto found = values.find(key);
    if (found == values.end()) {
        throw std::runtime_error(file.string() + ": missing \"" + key + "\"");
    }
    try {
        size_t used = 0;
        int value = std::stoi(found->second, &used);
        if (used == found->second.size()) return value;
    } catch (const std::exception &) {
    }
    throw std::runtime_error(file.string() + ": \"" + key + "\" is not a number: " + found->second);
}

std::string required(const std::map<std::string, std::string> &values, const std::string &key,
                     const fs::path &file) {
    auto found = values.find(key);
    if (found == values.end() || found->second.empty()) {
        throw std::runtime_error(file.string() + ": missing \"" + key + "\"");
    }
    return found->second;
}

}  // namespace

// ---------------------------------------------------------------------------
// Free functions

fs::path default_pg_bindir() {
    const char *from_environment = std::getenv("PGMESH_PG_BINDIR");
    if (from_environment != nullptr && *from_environment != '\0') return from_environment;
    return PGMESH_DEFAULT_PG_BINDIR;
}

bool server_has_setting(const fs::path &pg_bindir, std::string_view name) {
    // `postgres --describe-config` prints one tab-separated line per setting.
    static std::mutex cache_mutex;
    static std::map<std::string, std::string> describe_config_cache;
    std::string described;
    {
        std::lock_guard lock(cache_mutex);
        auto cached = describe_config_cache.find(pg_bindir.string());
        if (cached != describe_config_cache.end()) described = cached->second;
    }
    if (described.empty()) {
        const std::array<std::string, 2> argv = {(pg_bindir / "postgres").string(),
                                                 "--describe-config"};
        CommandResult result = run_as_server_user(argv, "/");
        if (!result.ok()) {
            throw std::runtime_error(describe_command(argv) +
                                     " failed: " + output_tail(result.output));
        }
        described = std::move(result.output);
        std::lock_guard lock(cache_mutex);
        describe_config_cache[pg_bindir.string()] = described;
    }
    std::istringstream lines(described);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.starts_with(name) && line.size() > name.size() && line[name.size()] == '\t') {
            return true;
        }
    }
    return false;
}

std::string pg_config_value(const fs::path &pg_bindir, std::string_view item) {
    const std::array<std::string, 2> argv = {(pg_bindir / "pg_config").string(),
                                             "--" + std::string(item)};
    CommandResult result = run_as_server_user(argv, "/");
    if (!result.ok()) {
        throw std::runtime_error(describe_command(argv) + " failed: " + output_tail(result.output));
    }
    return trim(result.output);
}

bool port_is_free(int port) {
    if (port <= 0 || port > 65535) return false;
    sockaddr_in address = loopback_address(port);
    {
        FileDescriptor probe(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (probe.get() < 0) return false;
        // No SO_REUSEADDR: a port with lingering connections is skipped too.
        if (bind(probe.get(), reinterpret_cast<const sockaddr *>(&address), sizeof address) != 0) {
            return false;
        }
    }
    // A successful bind can still hide a listener on another address family
    // setup; a refused connection makes sure nothing answers on the port.
    FileDescriptor client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (client.get() < 0) return false;
    return connect(client.get(), reinterpret_cast<const sockaddr *>(&address), sizeof address) != 0;
}

std::vector<int> find_free_ports(int count, int base_port) {
    int first = base_port;
    if (first <= 0) {
        // Random start so that concurrent test processes rarely collide;
        // below the ephemeral range (32768+) so outgoing connections do not
        // take our ports between this check and the server's start.
        std::random_device seed;
        first = std::uniform_int_distribution<int>(20000, 29999)(seed);
    }
    std::vector<int> ports;
    for (int port = first; port <= 65535 && static_cast<int>(ports.size()) < count; ++port) {
        if (port_is_free(port)) ports.push_back(port);
    }
    if (static_cast<int>(ports.size()) < count) {
        throw std::runtime_error("found only " + std::to_string(ports.size()) + " of " +
                                 std::to_string(count) + " free TCP ports from " +
                                 std::to_string(first) + " up");
    }
    return ports;
}

std::string read_tail(const fs::path &file, size_t lines) {
    std::ifstream input(file, std::ios::binary);
    if (!input || lines == 0) return {};
    input.seekg(0, std::ios::end);
    const std::streamoff size = input.tellg();
    // Read backwards in blocks until enough newlines are seen.
    constexpr std::streamoff kBlock = 64 * 1024;
    std::string tail;
    std::streamoff position = size;
    size_t newlines = 0;
    while (position > 0 && newlines <= lines) {
        std::streamoff length = std::min(kBlock, position);
        position -= length;
        std::string block(static_cast<size_t>(length), '\0');
        input.seekg(position);
        input.read(block.data(), length);
        newlines += static_cast<size_t>(std::count(block.begin(), block.end(), '\n'));
        tail.insert(0, block);
    }
    // Keep the last `lines` complete lines (the first one read may be partial).
    std::vector<std::string_view> all_lines;
    std::string_view rest(tail);
    while (!rest.empty()) {
        size_t newline = rest.find('\n');
        all_lines.push_back(rest.substr(0, newline));
        rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    }
    std::string result;
    size_t first = all_lines.size() > lines ? all_lines.size() - lines : 0;
    for (size_t i = first; i < all_lines.size(); ++i) {
        result.append(all_lines[i]);
        result += '\n';
    }
    return result;
}

std::vector<std::string> find_signal_terminations(const fs::path &log_file) {
    std::vector<std::string> found;
    std::ifstream input(log_file);
    std::string line;
    while (std::getline(input, line)) {
        if (line.find(kSignalTerminationMarker) != std::string::npos) found.push_back(line);
    }
    return found;
}

void check_settings(const std::vector<Setting> &settings) {
    for (const Setting &setting : settings) check_setting(setting);
}

ChangeLock::~ChangeLock() {
    if (fd_ >= 0) close(fd_);  // releases the flock
}

int ChangeLock::try_lock() const {
    return flock(fd_, LOCK_EX | LOCK_NB);
}

// ---------------------------------------------------------------------------
// LocalCluster: creation and the state file

bool LocalCluster::exists(const fs::path &dir) {
    return fs::exists(dir / kStateFileName);
}

LocalCluster LocalCluster::create(const ClusterOptions &options, Progress progress) {
    if (options.node_count < 1 || options.node_count > kMaxNodes) {
        throw std::invalid_argument("the number of nodes must be between 1 and " +
                                    std::to_string(kMaxNodes));
    }
    if (options.db_name.empty()) throw std::invalid_argument("the database name is empty");
    if (options.dir.empty()) throw std::invalid_argument("no cluster directory given");

    check_settings(options.extra_settings);

    LocalCluster cluster;
    cluster.progress_ = std::move(progress);
    cluster.dir_ = fs::absolute(options.dir).lexically_normal();
    if (cluster.dir_.has_filename() == false) cluster.dir_ = cluster.dir_.parent_path();
    cluster.db_name_ = options.db_name;
    cluster.pg_bindir_ = options.pg_bindir.empty() ? default_pg_bindir() : options.pg_bindir;
    const fs::path &dir = cluster.dir_;
    check_state_file_value("the database name", cluster.db_name_);
    check_state_file_value("the cluster directory", dir.string());
    check_state_file_value("the PostgreSQL program directory", cluster.pg_bindir_.string());

    if (exists(dir)) {
        throw std::runtime_error(dir.string() +
                                 " already holds a pgmesh local cluster; stop and remove it "
                                 "with `pgmesh local down --dir " +
                                 shell_quote(dir.string()) +
                                 " --purge`, or choose another directory");
    }
    if (fs::exists(dir) && !fs::is_empty(dir)) {
        throw std::runtime_error(dir.string() +
                                 " exists and is not empty; choose a new or empty directory");
    }
    for (std::string_view program : {"initdb", "pg_ctl", "postgres"}) {
        if (!fs::exists(cluster.pg_bindir_ / program)) {
            throw std::runtime_error("no " + std::string(program) + " in " +
                                     cluster.pg_bindir_.string() +
                                     " (install postgresql-15, or set PGMESH_PG_BINDIR)");
        }
    }
    // Extra settings are written last, so theirs is the value the server uses.
    std::string preload_libraries = options.shared_preload_libraries;
    for (const Setting &setting : options.extra_settings) {
        if (setting.name == "shared_preload_libraries") preload_libraries = setting.value;
    }
    if (list_contains(preload_libraries, "pgmesh")) {
        fs::path library = fs::path(pg_config_value(cluster.pg_bindir_, "pkglibdir")) / "pgmesh.so";
        if (!fs::exists(library)) {
            throw std::runtime_error(
                "the pgmesh extension is not installed into this PostgreSQL (no " +
                library.string() +
                "); build and install it first: `cmake --build build && cmake --install build` "
                "(scripts/setup does both)");
        }
    }

    // The topmost directory this call creates, removed again if the server
    // user turns out not to be able to use it.
    fs::path first_created;
    for (fs::path ancestor = dir; !ancestor.empty() && !fs::exists(ancestor);
         ancestor = ancestor.parent_path()) {
        first_created = ancestor;
        if (ancestor == ancestor.parent_path()) break;
    }
    fs::create_directories(dir);
    give_to_server_user(dir);
    if (!server_user_can_write(dir)) {
        if (!first_created.empty()) {
            std::error_code ignored;
            fs::remove_all(first_created, ignored);
        }
        throw std::runtime_error("the OS user \"" + server_user().name +
                                 "\" that runs PostgreSQL cannot write into " + dir.string() +
                                 " (every parent directory must be searchable by it); choose a "
                                 "directory under /tmp");
    }

    const bool has_output_plugin_libraries =
        server_has_setting(cluster.pg_bindir_, "output_plugin_libraries");
    const std::vector<int> ports = find_free_ports(options.node_count, options.base_port);
    for (int number = 1; number <= options.node_count; ++number) {
        NodeInfo node;
        node.number = number;
        node.name = node_name(number);
        node.port = ports[static_cast<size_t>(number - 1)];
        node.node_dir = dir / node.name;
        fs::create_directory(node.node_dir);
        give_to_server_user(node.node_dir);
        cluster.nodes_.push_back(std::move(node));
    }
    // Written before initdb so that `local down --purge` can clean up a
    // cluster whose creation failed halfway.
    cluster.write_state_file();

    // The nodes' initdb runs side by side: each is a separate data directory,
    // and the bootstrap is most of the time it takes to set up a cluster.
    std::vector<std::future<CommandResult>> initdbs;
    for (const NodeInfo &node : cluster.nodes_) {
        cluster.report(node.name + ": initdb in " + node.data_dir().string());
        std::vector<std::string> argv = cluster.initdb_argv(node, options.fast_unsafe_storage);
        initdbs.push_back(std::async(std::launch::async, [argv = std::move(argv), &node] {
            return run_as_server_user(argv, node.node_dir);
        }));
    }
    // Every initdb is waited for before anything is thrown, and failures are
    // reported in node order.
    std::vector<CommandResult> results;
    for (std::future<CommandResult> &initdb : initdbs) results.push_back(initdb.get());
    for (const NodeInfo &node : cluster.nodes_) {
        const CommandResult &result = results[static_cast<size_t>(node.number - 1)];
        if (!result.ok()) {
            throw NodeError(node.number, node.name + ": initdb failed (exit " +
                                             std::to_string(result.exit_code) + "):\n" +
                                             output_tail(result.output));
        }
        cluster.write_configuration(node, options, has_output_plugin_libraries);
    }
    return cluster;
}

std::vector<std::string> LocalCluster::initdb_argv(const NodeInfo &node, bool no_sync) const {
    std::vector<std::string> argv = {(pg_bindir_ / "initdb").string(),
                                     "--pgdata=" + node.data_dir().string(),
                                     "--username=postgres",
                                     "--auth=trust",
                                     "--encoding=UTF8",
                                     "--locale=C",
                                     "--no-instructions"};
    if (no_sync) argv.push_back("--no-sync");
    return argv;
}

namespace {

// The settings by which one node differs from the others: where it listens.
std::vector<Setting> address_settings(const NodeInfo &node) {
    // Unix sockets live next to the data directory unless the path would be
    // too long for sockaddr_un; TCP on 127.0.0.1 is what DSNs use anyway.
    std::string socket_dir = node.node_dir.string();
    if (socket_dir.size() + std::string_view("/.s.PGSQL.65535").size() > kMaxSocketPathLength) {
        socket_dir.clear();
    }
    return {
        {"port", std::to_string(node.port)},
        {"listen_addresses", "127.0.0.1"},
        {"unix_socket_directories", socket_dir},
    };
}

// Appends lines to the node's postgresql.conf.
void append_to_configuration(const NodeInfo &node, std::string_view text) {
    const fs::path file = node.data_dir() / "postgresql.conf";
    std::ofstream conf(file, std::ios::app);
    conf << text;
    if (!conf.flush()) throw NodeError(node.number, "cannot write " + file.string());
}

std::string setting_lines(const std::vector<Setting> &settings) {
    std::string lines;
    for (const Setting &setting : settings) {
        lines += setting.name + " = " + quote_setting_value(setting.value) + "\n";
    }
    return lines;
}

}  // namespace

void LocalCluster::write_configuration(const NodeInfo &node, const ClusterOptions &options,
                                       bool server_has_output_plugin_libraries) const {
    const int n = static_cast<int>(nodes_.size());
    std::vector<Setting> settings = {
        {"shared_preload_libraries", options.shared_preload_libraries},
        {"wal_level", "logical"},
        {"track_commit_timestamp", "on"},
        // Each node has a slot and walsender per peer and an apply worker per
        // peer; the margin leaves room for joins and ordinary use.
        {"max_replication_slots", std::to_string(2 * n + 10)},
        {"max_wal_senders", std::to_string(2 * n + 10)},
        {"max_worker_processes", std::to_string(2 * n + 16)},
        {"logging_collector", "off"},  // everything goes to pg_ctl's -l file
        {"log_line_prefix", "%m [%p] %b "},
    };
    const std::vector<Setting> address = address_settings(node);
    settings.insert(settings.begin(), address.begin(), address.end());
    if (server_has_output_plugin_libraries) {
        // Debian's 15.20 only lets listed plugins be used for logical decoding.
        settings.push_back({"output_plugin_libraries", "pgoutput, test_decoding, pgmesh"});
    }
    if (options.fast_unsafe_storage) settings.push_back({"fsync", "off"});
    for (const Setting &extra : options.extra_settings) settings.push_back(extra);

    append_to_configuration(node,
                            "\n" + std::string(kSettingsHeader) + "\n" + setting_lines(settings));
}

void LocalCluster::write_added_configuration(const NodeInfo &node,
                                             const std::vector<Setting> &extra_settings) const {
    // The settings the other nodes were made with (the --set settings of
    // `local up`, fsync=off in test clusters, slot and worker limits) are not
    // in the state file, but in their postgresql.conf: copy that block.
    for (const NodeInfo &other : nodes_) {
        if (other.state == NodeState::kAdding) continue;
        std::ifstream conf(other.data_dir() / "postgresql.conf");
        if (!conf) continue;
        std::stringstream text;
        text << conf.rdbuf();
        const std::string all = text.str();
        const size_t header = all.find(kSettingsHeader);
        if (header == std::string::npos) continue;
        std::string copied = all.substr(header);
        if (!copied.ends_with('\n')) copied += '\n';
        std::vector<Setting> own = address_settings(node);
        own.insert(own.end(), extra_settings.begin(), extra_settings.end());
        append_to_configuration(
            node, "\n# --- copied from " + other.name + " by `pgmesh local add` ---\n" + copied +
                      "# --- " + node.name + "'s own settings (win over the copied ones) ---\n" +
                      setting_lines(own));
        return;
    }
    throw NodeError(node.number, node.name +
                                     ": no other node's postgresql.conf has pgmesh's settings (\"" +
                                     std::string(kSettingsHeader) + "\") to copy");
}

void LocalCluster::write_state_file() const {
    std::ostringstream text;
    text << "# pgmesh local cluster: read by `pgmesh local status|start|down --dir "
         << dir_.string() << "`\n";
    text << "version=" << kStateFileVersion << "\n";
    text << "db=" << db_name_ << "\n";
    text << "pg_bindir=" << pg_bindir_.string() << "\n";
    text << "formed=" << (formed_ ? 1 : 0) << "\n";
    std::string_view separator;
    text << "node_numbers=";
    for (const NodeInfo &node : nodes_) {
        text << separator << node.number;
        separator = ",";
    }
    text << "\n";
    for (const NodeInfo &node : nodes_) {
        text << node.name << ".port=" << node.port << "\n";
        text << node.name << ".dir=" << node.node_dir.string() << "\n";
        if (!node.is_member()) {
            text << node.name << ".state=" << state_file_word(node.state) << "\n";
        }
    }
    // Replace atomically: a half-written state file would orphan servers.
    const fs::path target = dir_ / kStateFileName;
    const fs::path temporary = dir_ / (std::string(kStateFileName) + ".tmp");
    {
        std::ofstream output(temporary, std::ios::trunc);
        output << text.str();
        if (!output.flush()) throw std::runtime_error("cannot write " + temporary.string());
    }
    fs::rename(temporary, target);
}

LocalCluster LocalCluster::open(const fs::path &dir, Progress progress) {
    LocalCluster cluster;
    cluster.progress_ = std::move(progress);
    cluster.dir_ = fs::absolute(dir).lexically_normal();
    if (!cluster.dir_.has_filename()) cluster.dir_ = cluster.dir_.parent_path();
    cluster.read_state_file();
    return cluster;
}

void LocalCluster::read_state_file() {
    const fs::path file = dir_ / kStateFileName;
    if (!fs::exists(file)) {
        throw std::runtime_error("no pgmesh local cluster in " + dir_.string() + " (no " +
                                 std::string(kStateFileName) +
                                 "); create one with `pgmesh local up`");
    }
    const auto values = read_key_values(file);
    const int version = parse_int(values, "version", file);
    if (version != 1 && version != kStateFileVersion) {
        throw std::runtime_error(file.string() + ": unsupported version " +
                                 std::to_string(version));
    }
    db_name_ = required(values, "db", file);
    pg_bindir_ = required(values, "pg_bindir", file);
    formed_ = parse_int(values, "formed", file) != 0;
    std::vector<int> numbers;
    if (version == 1) {
        const int count = parse_int(values, "nodes", file);
        if (count < 1 || count > kMaxNodes) throw std::runtime_error(file.string() + ": bad nodes");
        for (int number = 1; number <= count; ++number) numbers.push_back(number);
    } else {
        std::stringstream list(required(values, "node_numbers", file));
        std::string item;
        while (std::getline(list, item, ',')) {
            size_t used = 0;
            int number = 0;
            try {
                number = std::stoi(item, &used);
            } catch (const std::exception &) {
            }
            // Ascending, so that each number is there once and nodes list in order.
            if (used != item.size() || number < 1 || number > kMaxNodeNumber ||
                (!numbers.empty() && number <= numbers.back())) {
                throw std::runtime_error(file.string() + ": bad node_numbers");
            }
            numbers.push_back(number);
        }
        if (numbers.empty()) throw std::runtime_error(file.string() + ": bad node_numbers");
    }
    nodes_.clear();
    for (int number : numbers) {
        NodeInfo node;
        node.number = number;
        node.name = node_name(number);
        node.port = parse_int(values, node.name + ".port", file);
        node.node_dir = required(values, node.name + ".dir", file);
        auto state = values.find(node.name + ".state");
        if (state != values.end()) {
            if (state->second == state_file_word(NodeState::kParted)) {
                node.state = NodeState::kParted;
            } else if (state->second == state_file_word(NodeState::kAdding)) {
                node.state = NodeState::kAdding;
            } else if (state->second != state_file_word(NodeState::kMember)) {
                throw std::runtime_error(file.string() + ": unknown state of " + node.name + ": " +
                                         state->second);
            }
        }
        nodes_.push_back(std::move(node));
    }
}

const NodeInfo &LocalCluster::node(int number) const {
    auto found = std::find_if(nodes_.begin(), nodes_.end(),
                              [number](const NodeInfo &info) { return info.number == number; });
    if (found == nodes_.end()) {
        std::string known;
        for (const NodeInfo &info : nodes_) known += (known.empty() ? "" : ", ") + info.name;
        throw std::out_of_range("no node " + std::to_string(number) + " (nodes: " + known + ")");
    }
    return *found;
}

NodeInfo &LocalCluster::mutable_node(int number) {
    return const_cast<NodeInfo &>(std::as_const(*this).node(number));
}

const NodeInfo *LocalCluster::find_node(std::string_view name) const {
    for (const NodeInfo &info : nodes_) {
        if (info.name == name) return &info;
    }
    return nullptr;
}

int LocalCluster::member_count() const {
    return static_cast<int>(std::count_if(nodes_.begin(), nodes_.end(),
                                          [](const NodeInfo &info) { return info.is_member(); }));
}

std::string LocalCluster::dsn(int number, std::string_view dbname) const {
    return "host=127.0.0.1 port=" + std::to_string(node(number).port) +
           " dbname=" + pq::quote_conninfo_value(dbname) + " user=postgres";
}

void LocalCluster::report(std::string_view message) const {
    if (progress_) progress_(message);
}

std::string LocalCluster::log_tail(int number, size_t lines) const {
    return read_tail(node(number).log_file(), lines);
}

// ---------------------------------------------------------------------------
// Server control

std::optional<pid_t> LocalCluster::postmaster_pid(int number) const {
    std::ifstream pid_file(node(number).data_dir() / "postmaster.pid");
    long pid = 0;
    if (!pid_file || !(pid_file >> pid) || pid <= 0) return std::nullopt;
    std::optional<ProcessInfo> info = process_info(static_cast<pid_t>(pid));
    // A stale file can name a pid that now belongs to something else.
    if (!info || info->state == 'Z' || info->state == 'X') return std::nullopt;
    if (info->command != "postgres" && info->command != "postmaster") return std::nullopt;
    return static_cast<pid_t>(pid);
}

bool LocalCluster::is_running(int number) const {
    return postmaster_pid(number).has_value();
}

void LocalCluster::set_server_environment(int number, std::vector<std::string> variables) {
    node(number);  // throws for an unknown node
    server_environment_[number] = std::move(variables);
}

void LocalCluster::start(int number) {
    const NodeInfo &info = node(number);
    if (is_running(number)) return;
    report(info.name + ": starting on port " + std::to_string(info.port));
    const std::vector<std::string> argv = {(pg_bindir_ / "pg_ctl").string(),
                                           "start",
                                           "--pgdata=" + info.data_dir().string(),
                                           "--log=" + info.log_file().string(),
                                           "--wait",
                                           "--timeout=" + std::string(kStartTimeoutSeconds),
                                           "--silent"};
    const auto environment = server_environment_.find(number);
    CommandResult result =
        run_as_server_user(argv, info.node_dir,
                           environment == server_environment_.end()
                               ? std::span<const std::string>{}
                               : std::span<const std::string>(environment->second));
    if (!result.ok()) {
        throw NodeError(number, info.name + ": the server did not start (pg_ctl exit " +
                                    std::to_string(result.exit_code) +
                                    "): " + output_tail(result.output) +
                                    "\nserver log: " + info.log_file().string());
    }
}

void LocalCluster::stop(int number, StopMode mode) {
    const NodeInfo &info = node(number);
    if (!is_running(number)) return;
    report(info.name + ": stopping");
    for (StopMode attempt : {mode, StopMode::kImmediate}) {
        const std::vector<std::string> argv = {
            (pg_bindir_ / "pg_ctl").string(),
            "stop",
            "--pgdata=" + info.data_dir().string(),
            std::string("--mode=") + (attempt == StopMode::kFast ? "fast" : "immediate"),
            "--wait",
            "--timeout=" + std::string(kStopTimeoutSeconds),
            "--silent"};
        CommandResult result = run_as_server_user(argv, info.node_dir);
        if (result.ok() || !is_running(number)) return;
        report(info.name + ": pg_ctl stop failed: " + output_tail(result.output, 3));
    }
    throw NodeError(
        number, info.name + ": the server did not stop; server log: " + info.log_file().string());
}

void LocalCluster::restart(int number) {
    stop(number);
    start(number);
}

std::vector<pid_t> LocalCluster::kill9(int number, std::chrono::seconds child_grace) {
    const NodeInfo &info = node(number);
    std::optional<pid_t> postmaster = postmaster_pid(number);
    if (!postmaster) throw NodeError(number, info.name + ": kill9: the server is not running");
    report(info.name + ": kill -9 " + std::to_string(*postmaster));
    // Remember the children now: once their parent is gone they are
    // re-parented and can no longer be found by parent pid.
    const std::vector<pid_t> children = child_processes(*postmaster);
    if (::kill(*postmaster, SIGKILL) != 0) {
        throw NodeError(number, info.name + ": kill -9 " + std::to_string(*postmaster) +
                                    " failed: " + std::strerror(errno));
    }
    auto all_gone = [&] {
        if (process_alive(*postmaster)) return false;
        return std::none_of(children.begin(), children.end(), process_alive);
    };
    const auto deadline = std::chrono::steady_clock::now() + child_grace;
    while (!all_gone() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(20ms);
    }
    std::vector<pid_t> lingering;
    for (pid_t child : children) {
        if (process_alive(child)) {
            lingering.push_back(child);
            ::kill(child, SIGKILL);
        }
    }
    while (!all_gone()) std::this_thread::sleep_for(20ms);

    // Whoever adopted the postmaster may never reap it (some container init
    // processes do not). PostgreSQL would take the zombie's pid in its lock
    // files (postmaster.pid, the socket's .lock) for a live postmaster and
    // refuse to start; all its children are gone, so the lock files protect
    // nothing any more.
    std::optional<ProcessInfo> remains = process_info(*postmaster);
    if (remains && remains->state == 'Z') {
        std::error_code ignored;
        fs::remove(info.data_dir() / "postmaster.pid", ignored);
        fs::remove(info.node_dir / (".s.PGSQL." + std::to_string(info.port) + ".lock"), ignored);
    }
    return lingering;
}

void LocalCluster::start_all() {
    // A parted node must stay down: survivors fence it anyway, and its data
    // is only for the operator to look at. A node being added is started by
    // its `local add` alone.
    for (const NodeInfo &info : nodes_) {
        if (info.is_member()) start(info.number);
    }
}

void LocalCluster::stop_all(StopMode mode) {
    // Try every node even when one fails, then report the first failure.
    std::optional<NodeError> first_failure;
    for (const NodeInfo &info : nodes_) {
        try {
            stop(info.number, mode);
        } catch (const NodeError &error) {
            if (!first_failure) first_failure = error;
        }
    }
    if (first_failure) throw *first_failure;
}

// ---------------------------------------------------------------------------
// Forming a group

void LocalCluster::create_database(int number) {
    const NodeInfo &info = node(number);
    try {
        pq::Connection conn = pq::Connection::open(dsn(number, "postgres"));
        const std::array<pq::Value, 1> params = {db_name_};
        pq::Result found =
            conn.exec_params("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", params);
        if (found.row_count() == 0) {
            report(info.name + ": CREATE DATABASE " + db_name_);
            conn.exec("CREATE DATABASE " + conn.quote_identifier(db_name_));
        }
    } catch (const pq::Error &error) {
        throw NodeError(
            number, info.name + ": creating database \"" + db_name_ + "\" failed: " + error.what());
    }
}

void LocalCluster::create_extension(int number) {
    const NodeInfo &info = node(number);
    report(info.name + ": CREATE EXTENSION pgmesh");
    try {
        pq::Connection conn = pq::Connection::open(dsn(number));
        conn.exec("CREATE EXTENSION IF NOT EXISTS pgmesh");
    } catch (const pq::Error &error) {
        // 0A000: "extension is not available" (no control file).
        const bool not_installed = error.sqlstate() == "0A000";
        throw NodeError(number, info.name + ": CREATE EXTENSION pgmesh failed: " + error.what() +
                                    (not_installed ? "\npgmesh is not installed into the "
                                                     "PostgreSQL in " +
                                                         pg_bindir_.string() +
                                                         "; `cmake --install build` installs it."
                                                   : ""));
    }
}

void LocalCluster::create_group(int number) {
    const NodeInfo &info = node(number);
    report(info.name + ": pgmesh.create_group");
    try {
        pq::Connection conn = pq::Connection::open(dsn(number));
        const std::array<pq::Value, 2> params = {info.name, dsn(number)};
        conn.exec_params("SELECT pgmesh.create_group($1, $2)", params);
    } catch (const pq::Error &error) {
        throw NodeError(number, info.name + ": pgmesh.create_group failed: " + error.what());
    }
}

void LocalCluster::join_group(int number, int via_number, std::chrono::seconds ready_timeout) {
    const NodeInfo &info = node(number);
    report(info.name + ": pgmesh.join_group via " + node(via_number).name);
    bool ready = false;
    try {
        pq::Connection conn = pq::Connection::open(dsn(number));
        const std::array<pq::Value, 3> join_params = {info.name, dsn(number), dsn(via_number)};
        conn.exec_params("SELECT pgmesh.join_group($1, $2, $3)", join_params);
        const std::array<pq::Value, 1> wait_params = {std::to_string(ready_timeout.count())};
        pq::Result result =
            conn.exec_params("SELECT pgmesh.wait_for_ready($1::integer)", wait_params);
        ready = result.row_count() == 1 && result.get(0, 0) == "t";
    } catch (const pq::Error &error) {
        throw NodeError(number, info.name + ": joining the group failed: " + error.what());
    }
    if (!ready) {
        throw NodeError(number, info.name + ": not ready after " +
                                    std::to_string(ready_timeout.count()) +
                                    " s (pgmesh.wait_for_ready returned false); see "
                                    "pgmesh.status on the node and its server log");
    }
}

void LocalCluster::form_mesh(std::chrono::seconds ready_timeout) {
    for (const NodeInfo &info : nodes_) {
        create_database(info.number);
        create_extension(info.number);
    }
    create_group(1);
    // One join at a time: each joiner copies from node 1 and must be ready
    // before the next one appears in the group.
    for (const NodeInfo &info : nodes_) {
        if (info.number != 1) join_group(info.number, 1, ready_timeout);
    }
    formed_ = true;
    write_state_file();
}

// ---------------------------------------------------------------------------
// Adding and parting nodes

ChangeLock LocalCluster::lock_for_changes() {
    const fs::path file = dir_ / kLockFileName;
    ChangeLock lock(::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (!lock.valid()) {
        throw std::runtime_error("cannot open " + file.string() + ": " + std::strerror(errno));
    }
    if (lock.try_lock() != 0) {
        const int error = errno;
        if (error == EWOULDBLOCK) {
            throw std::runtime_error("another `pgmesh local add` or `pgmesh local part` runs on " +
                                     dir_.string() + "; run this when it is done");
        }
        throw std::runtime_error("cannot lock " + file.string() + ": " + std::strerror(error));
    }
    // Another command may have changed the nodes since open() read them.
    read_state_file();
    return lock;
}

std::optional<int> LocalCluster::first_ready_node(std::optional<int> except) const {
    for (const NodeInfo &info : nodes_) {
        if (!info.is_member() || info.number == except || !is_running(info.number)) continue;
        try {
            pq::Connection conn = pq::Connection::open(dsn(info.number));
            pq::Result result = conn.exec("SELECT state FROM pgmesh.nodes WHERE is_local");
            const pq::Value state = result.row_count() == 1 ? result.get(0, 0) : std::nullopt;
            if (state == "ready") return info.number;
            report(info.name + ": not ready (its state in pgmesh.nodes: " + state.value_or("none") +
                   ")");
        } catch (const pq::Error &error) {
            report(info.name + ": not usable: " + error.message());
        }
    }
    return std::nullopt;
}

std::map<std::string, std::string> LocalCluster::group_node_states(int via_number) const {
    pq::Connection conn = pq::Connection::open(dsn(via_number));
    pq::Result result = conn.exec("SELECT node_name, state FROM pgmesh.nodes");
    std::map<std::string, std::string> states;
    for (int row = 0; row < result.row_count(); ++row) {
        states[std::string(result.text(row, 0))] = std::string(result.text(row, 1));
    }
    return states;
}

void LocalCluster::discard_unfinished_nodes() {
    std::vector<int> unfinished;
    for (const NodeInfo &info : nodes_) {
        if (info.state == NodeState::kAdding) unfinished.push_back(info.number);
    }
    for (int number : unfinished) {
        report(node(number).name + ": left behind by an interrupted `pgmesh local add`");
        discard_node(number);
    }
}

int LocalCluster::reserve_node(int via_number) {
    if (member_count() >= kMaxNodes) {
        throw std::runtime_error("the cluster has " + std::to_string(member_count()) +
                                 " nodes, the most a local cluster can have");
    }
    std::map<std::string, std::string> group;
    try {
        group = group_node_states(via_number);
    } catch (const pq::Error &error) {
        throw NodeError(via_number,
                        node(via_number).name + ": reading pgmesh.nodes failed: " + error.what());
    }
    // nodes_ is in ascending order of number, parted nodes included.
    int number = nodes_.back().number + 1;
    for (;; ++number) {
        auto known = group.find(node_name(number));
        if (known == group.end() || known->second == "joining") break;
    }
    if (number > kMaxNodeNumber) {
        throw std::runtime_error("no node number is left (the last one is " +
                                 std::to_string(kMaxNodeNumber) + ")");
    }
    int highest_port = 0;
    for (const NodeInfo &info : nodes_) highest_port = std::max(highest_port, info.port);

    NodeInfo info;
    info.number = number;
    info.name = node_name(number);
    info.port = find_free_ports(1, highest_port + 1).front();
    info.node_dir = dir_ / info.name;
    info.state = NodeState::kAdding;
    if (fs::exists(info.node_dir)) {
        throw std::runtime_error(info.node_dir.string() + " exists, but " +
                                 std::string(kStateFileName) +
                                 " has no such node; move it out of the way first");
    }
    fs::create_directory(info.node_dir);
    try {
        give_to_server_user(info.node_dir);
        nodes_.push_back(info);
        write_state_file();
    } catch (...) {
        if (!nodes_.empty() && nodes_.back().number == number) nodes_.pop_back();
        std::error_code ignored;
        fs::remove_all(info.node_dir, ignored);
        throw;
    }
    return number;
}

void LocalCluster::add_node(int number, int via_number, const std::vector<Setting> &extra_settings,
                            std::chrono::seconds ready_timeout) {
    check_settings(extra_settings);
    const NodeInfo &info = node(number);
    if (info.state != NodeState::kAdding) {
        throw std::logic_error(info.name + " was not reserved by reserve_node()");
    }
    report(info.name + ": initdb in " + info.data_dir().string());
    CommandResult result = run_as_server_user(initdb_argv(info, /*no_sync=*/false), info.node_dir);
    if (!result.ok()) {
        throw NodeError(number, info.name + ": initdb failed (exit " +
                                    std::to_string(result.exit_code) + "):\n" +
                                    output_tail(result.output));
    }
    write_added_configuration(info, extra_settings);
    start(number);
    create_database(number);
    create_extension(number);
    join_group(number, via_number, ready_timeout);
    mutable_node(number).state = NodeState::kMember;
    write_state_file();
}

void LocalCluster::discard_node(int number) {
    const NodeInfo &info = node(number);
    if (info.state != NodeState::kAdding) {
        throw std::logic_error(info.name + " is not being added; only such a node is discarded");
    }
    // Its directory stays when the server cannot be stopped (stop() throws),
    // and so does its record: both are still needed to stop it.
    stop(number, StopMode::kImmediate);
    // Only the directory reserve_node() made, whatever an edited state file says.
    if (info.node_dir == dir_ / info.name) {
        report(info.name + ": removing " + info.node_dir.string());
        fs::remove_all(info.node_dir);
    } else {
        report(info.name + ": keeping " + info.node_dir.string() +
               " (not the directory `pgmesh local add` makes)");
    }
    std::erase_if(nodes_, [number](const NodeInfo &other) { return other.number == number; });
    write_state_file();
}

void LocalCluster::part_node(int number, int via_number) {
    const NodeInfo &info = node(number);
    const NodeInfo &via = node(via_number);
    report(info.name + ": pgmesh.part_node on " + via.name);
    try {
        pq::Connection conn = pq::Connection::open(dsn(via_number));
        const std::array<pq::Value, 1> params = {info.name};
        conn.exec_params("SELECT pgmesh.part_node($1)", params);
    } catch (const pq::Error &error) {
        throw NodeError(via_number, via.name + ": parting " + info.name +
                                        " (pgmesh.part_node) failed: " + error.what());
    }
    // Recorded before its server stops: the group has let the node go,
    // whatever happens to its server now, and `local start` must not start it
    // again.
    mutable_node(number).state = NodeState::kParted;
    write_state_file();
    stop(number);
}

}  // namespace pgmesh::local
