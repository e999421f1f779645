// pgmesh: command-line tool for pgmesh groups (local clusters, status, verify).
//
// Exit status: 0 success, 1 failure (including "tables differ" for verify and
// "a node is down" for local status), 2 usage error.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "conninfo.hpp"
#include "local_cluster.hpp"
#include "pq.hpp"
#include "process.hpp"
#include "table_format.hpp"
#include "verify.hpp"

namespace fs = std::filesystem;
using namespace pgmesh;

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr size_t kLogTailLines = 40;
constexpr int kDefaultNodes = 3;
constexpr int kDefaultBasePort = 5433;

constexpr std::string_view kVersion = "0.1.0";

constexpr std::string_view kMainHelp =
    R"(pgmesh - asynchronous multi-master logical replication for PostgreSQL

Usage:
  pgmesh local up     --dir DIR [--nodes N] [--base-port P] [--db NAME] [--set NAME=VALUE ...]
  pgmesh local add    --dir DIR [--set NAME=VALUE ...]
  pgmesh local part   --dir DIR --node NAME
  pgmesh local start  --dir DIR
  pgmesh local down   --dir DIR [--purge]
  pgmesh local status --dir DIR
  pgmesh status       --dsn DSN
  pgmesh verify       --dsn DSN --dsn DSN [--dsn DSN ...]

Commands:
  local up      create, start and connect N local nodes into one pgmesh group
  local add     create one more node in a local cluster and join it to the group
  local part    part a node of a local cluster from the group and stop it
  local start   start the nodes of an existing local cluster again
  local down    stop a local cluster (--purge also removes its directory)
  local status  show each local node and its pgmesh.nodes / pgmesh.status
  status        print pgmesh.status of one node
  verify        compare every user table (row count and content hash) across nodes

Run `pgmesh <command> --help` for a command's options.
Exit status: 0 success, 1 failure, 2 usage error.
)";

constexpr std::string_view kLocalUpHelp = R"(Usage: pgmesh local up --dir DIR [options]

Creates N PostgreSQL nodes in DIR (initdb, pgmesh settings in postgresql.conf),
starts them on 127.0.0.1, creates the database and the pgmesh extension on
each, makes node1 the first node of a group and joins the others through it.
Servers run as the "postgres" OS user when started by root.

Options:
  --dir DIR          cluster directory; must be new or empty (required)
  --nodes N          number of nodes (default 3)
  --base-port P      first TCP port to try; busy ports are skipped (default 5433)
  --db NAME          database to replicate (default pgmesh)
  --set NAME=VALUE   extra postgresql.conf setting for every node (repeatable;
                     written last, so it overrides pgmesh's own settings)
  --pg-bindir DIR    PostgreSQL programs to use (default: the build's pg_config
                     bindir, or $PGMESH_PG_BINDIR)

Prints one psql command per node. If a step fails, prints the failing node's
server log, stops the nodes and keeps DIR for inspection.
)";

constexpr std::string_view kLocalAddHelp =
    R"(Usage: pgmesh local add --dir DIR [--set NAME=VALUE ...]

Adds one node to the running local cluster in DIR (made by `pgmesh local up`):
initdb in DIR/node<N>, the settings of the other nodes, start on the next free
port above theirs, create the database and the pgmesh extension, then
pgmesh.join_group through the first running node that is ready, and
pgmesh.wait_for_ready. Node numbers are never reused: after node3 was parted,
the next node is node4.

Options:
  --dir DIR          cluster directory (required)
  --set NAME=VALUE   extra postgresql.conf setting for the new node (repeatable;
                     written after the settings copied from the other nodes)

Prints a psql command for the new node. If a step fails, prints the new node's
server log, then stops it and removes its directory: the cluster is as before.
)";

constexpr std::string_view kLocalPartHelp = R"(Usage: pgmesh local part --dir DIR --node NAME

Parts node NAME (e.g. node3) of the local cluster in DIR from the group:
pgmesh.part_node on the first running ready node other than NAME, then stops
NAME's server. The cluster keeps NAME's directory and records it as parted:
`local start` no longer starts it, `local status` shows it as parted, and
`local down --purge` removes it with the rest.

Options:
  --dir DIR     cluster directory (required)
  --node NAME   the node to part (required)
)";

constexpr std::string_view kLocalStartHelp = R"(Usage: pgmesh local start --dir DIR

Starts every node of the local cluster in DIR that is not running (after
`pgmesh local down` or a reboot), except parted ones, and prints one psql
command per node.
)";

constexpr std::string_view kLocalDownHelp = R"(Usage: pgmesh local down --dir DIR [--purge]

Stops every node of the local cluster in DIR (fast shutdown).

Options:
  --purge   also remove DIR with all data and logs
)";

constexpr std::string_view kLocalStatusHelp = R"(Usage: pgmesh local status --dir DIR

For each node of the local cluster in DIR: whether it runs (or was parted),
its port and data directory, and when it runs the rows of pgmesh.nodes and
pgmesh.status. Exit status 0 when every node that is not parted runs, 1
otherwise.
)";

constexpr std::string_view kStatusHelp = R"(Usage: pgmesh status --dsn DSN

Prints SELECT * FROM pgmesh.status of the node at DSN (a libpq connection
string, e.g. "host=127.0.0.1 port=5433 dbname=pgmesh user=postgres").
)";

constexpr std::string_view kVerifyHelp = R"(Usage: pgmesh verify --dsn DSN --dsn DSN [--dsn DSN ...]

Compares every user table (all schemas except pg_catalog, information_schema,
pgmesh, pg_toast*; tables of extensions skipped) across the nodes: row count
and an md5 hash of the rows, both computed by each server in one snapshot.
A table missing on a node counts as different. Stop writes and let
replication catch up (SELECT pgmesh.wait_for_sync(60)) before verifying.

Exit status 0 when all tables are equal, 1 when some differ (they are named).
)";

class UsageError : public std::runtime_error {
public:
    UsageError(const std::string &message, std::string command)
        : std::runtime_error(message), command_(std::move(command)) {}
    const std::string &command() const { return command_; }

private:
    std::string command_;
};

// Options of one command: "--name value", "--name=value" or "--flag".
class Options {
public:
    Options(std::string command, std::set<std::string> value_options,
            std::set<std::string> flag_options)
        : command_(std::move(command)),
          value_options_(std::move(value_options)),
          flag_options_(std::move(flag_options)) {}

    // Returns false when --help was given.
    bool parse(const std::vector<std::string> &arguments) {
        for (size_t i = 0; i < arguments.size(); ++i) {
            std::string argument = arguments[i];
            if (argument == "--help" || argument == "-h") return false;
            if (!argument.starts_with("--")) {
                throw UsageError("unexpected argument \"" + argument + "\"", command_);
            }
            std::optional<std::string> inline_value;
            if (size_t equals = argument.find('='); equals != std::string::npos) {
                inline_value = argument.substr(equals + 1);
                argument.resize(equals);
            }
            const std::string name = argument.substr(2);
            if (flag_options_.contains(name)) {
                if (inline_value) throw UsageError(argument + " takes no value", command_);
                flags_.insert(name);
            } else if (value_options_.contains(name)) {
                if (!inline_value && i + 1 >= arguments.size()) {
                    throw UsageError(argument + " needs a value", command_);
                }
                values_[name].push_back(inline_value ? *inline_value : arguments[++i]);
            } else {
                throw UsageError("unknown option " + argument, command_);
            }
        }
        return true;
    }

    bool flag(const std::string &name) const { return flags_.contains(name); }
    const std::vector<std::string> &all(const std::string &name) const {
        static const std::vector<std::string> kNone;
        auto found = values_.find(name);
        return found == values_.end() ? kNone : found->second;
    }
    std::optional<std::string> value(const std::string &name) const {
        const auto &values = all(name);
        if (values.size() > 1) throw UsageError("--" + name + " given more than once", command_);
        return values.empty() ? std::nullopt : std::optional(values.front());
    }
    std::string required(const std::string &name) const {
        std::optional<std::string> found = value(name);
        if (!found || found->empty()) throw UsageError("--" + name + " is required", command_);
        return *found;
    }
    int integer(const std::string &name, int fallback, int min, int max) const {
        std::optional<std::string> text = value(name);
        if (!text) return fallback;
        try {
            size_t used = 0;
            int number = std::stoi(*text, &used);
            if (used == text->size() && number >= min && number <= max) return number;
        } catch (const std::exception &) {
        }
        throw UsageError("--" + name + " must be a whole number from " + std::to_string(min) +
                             " to " + std::to_string(max) + ", not \"" + *text + "\"",
                         command_);
    }

private:
    std::string command_;
    std::set<std::string> value_options_;
    std::set<std::string> flag_options_;
    std::set<std::string> flags_;
    std::map<std::string, std::vector<std::string>> values_;
};

std::string count_of(int count, std::string_view noun) {
    return std::to_string(count) + " " + std::string(noun) + (count == 1 ? "" : "s");
}

void print_progress(std::string_view message) {
    std::cerr << "pgmesh: " << message << "\n";
}

void print_log_tail(const local::LocalCluster &cluster, int node_number) {
    const local::NodeInfo &node = cluster.node(node_number);
    std::string tail = cluster.log_tail(node_number, kLogTailLines);
    if (tail.empty()) {
        std::cerr << "(" << node.log_file().string() << " is empty or missing)\n";
        return;
    }
    std::cerr << "--- last " << kLogTailLines << " lines of " << node.log_file().string()
              << " ---\n"
              << tail << "--- end of " << node.name << "'s log ---\n";
}

void print_connection_line(const local::LocalCluster &cluster, const local::NodeInfo &node) {
    std::cout << "psql " << local::shell_quote(cluster.dsn(node.number)) << "    # " << node.name
              << "\n";
}

void print_connection_lines(const local::LocalCluster &cluster) {
    for (const local::NodeInfo &node : cluster.nodes()) {
        if (node.is_member()) print_connection_line(cluster, node);
    }
    std::cout << "Stop with: pgmesh local down --dir " << local::shell_quote(cluster.dir().string())
              << "   (add --purge to delete it)\n";
}

// The --set NAME=VALUE options of a command.
std::vector<local::Setting> setting_options(const Options &options, const std::string &command) {
    std::vector<local::Setting> settings;
    for (const std::string &setting : options.all("set")) {
        size_t equals = setting.find('=');
        if (equals == std::string::npos || equals == 0) {
            throw UsageError("--set expects NAME=VALUE, not \"" + setting + "\"", command);
        }
        settings.push_back({setting.substr(0, equals), setting.substr(equals + 1)});
    }
    return settings;
}

int local_up(const std::vector<std::string> &arguments) {
    Options options("local up", {"dir", "nodes", "base-port", "db", "set", "pg-bindir"}, {});
    if (!options.parse(arguments)) {
        std::cout << kLocalUpHelp;
        return kExitOk;
    }
    local::ClusterOptions cluster_options;
    cluster_options.dir = options.required("dir");
    cluster_options.node_count = options.integer("nodes", kDefaultNodes, 1, 64);
    cluster_options.base_port = options.integer("base-port", kDefaultBasePort, 1024, 65535);
    cluster_options.db_name = options.value("db").value_or(std::string(local::kDefaultDatabase));
    if (cluster_options.db_name.empty()) throw UsageError("--db must not be empty", "local up");
    if (auto bindir = options.value("pg-bindir")) cluster_options.pg_bindir = *bindir;
    cluster_options.extra_settings = setting_options(options, "local up");

    const fs::path dir = fs::absolute(cluster_options.dir).lexically_normal();
    const bool existed_before = local::LocalCluster::exists(dir);
    std::optional<local::LocalCluster> cluster;
    try {
        cluster = local::LocalCluster::create(cluster_options, print_progress);
        cluster->start_all();
        cluster->form_mesh();
    } catch (const std::exception &error) {
        std::cerr << "pgmesh: local up failed: " << error.what() << "\n";
        if (existed_before || !local::LocalCluster::exists(dir)) return kExitFailure;
        // We made this directory: show why, and leave no server running.
        try {
            local::LocalCluster partial =
                cluster ? std::move(*cluster) : local::LocalCluster::open(dir);
            if (const auto *node_error = dynamic_cast<const local::NodeError *>(&error)) {
                print_log_tail(partial, node_error->node_number());
                // A join involves a second node; point at every other log.
                for (const local::NodeInfo &node : partial.nodes()) {
                    if (node.number == node_error->node_number()) continue;
                    std::cerr << "pgmesh: " << node.name << "'s log: " << node.log_file().string()
                              << "\n";
                }
            }
            partial.stop_all(local::StopMode::kImmediate);
        } catch (const std::exception &cleanup_error) {
            std::cerr << "pgmesh: while cleaning up: " << cleanup_error.what() << "\n";
        }
        std::cerr << "pgmesh: the nodes are stopped; " << dir.string()
                  << " is kept for inspection. Remove it with: pgmesh local down --dir "
                  << local::shell_quote(dir.string()) << " --purge\n";
        return kExitFailure;
    }
    std::cout << "pgmesh group of " << count_of(cluster->node_count(), "node") << " is up in "
              << cluster->dir().string() << " (database \"" << cluster->db_name()
              << "\"). Connect with:\n";
    print_connection_lines(*cluster);
    return kExitOk;
}

int local_start(const std::vector<std::string> &arguments) {
    Options options("local start", {"dir"}, {});
    if (!options.parse(arguments)) {
        std::cout << kLocalStartHelp;
        return kExitOk;
    }
    local::LocalCluster cluster =
        local::LocalCluster::open(options.required("dir"), print_progress);
    if (!cluster.formed()) {
        throw std::runtime_error("the cluster in " + cluster.dir().string() +
                                 " was never fully set up (pgmesh local up failed); remove it "
                                 "with `pgmesh local down --dir " +
                                 local::shell_quote(cluster.dir().string()) +
                                 " --purge` and run local up again");
    }
    try {
        cluster.start_all();
    } catch (const local::NodeError &error) {
        std::cerr << "pgmesh: " << error.what() << "\n";
        print_log_tail(cluster, error.node_number());
        return kExitFailure;
    }
    std::cout << "pgmesh group of " << count_of(cluster.member_count(), "node") << " is running in "
              << cluster.dir().string() << ". Connect with:\n";
    print_connection_lines(cluster);
    return kExitOk;
}

// Nodes come and go only in a cluster whose group was formed.
void require_formed(const local::LocalCluster &cluster, std::string_view command) {
    if (!cluster.formed()) {
        throw std::runtime_error("the cluster in " + cluster.dir().string() +
                                 " was never fully set up (pgmesh local up failed); " +
                                 std::string(command) + " needs a group");
    }
}

std::string start_hint(const local::LocalCluster &cluster) {
    return "start the cluster with `pgmesh local start --dir " +
           local::shell_quote(cluster.dir().string()) + "`";
}

int local_add(const std::vector<std::string> &arguments) {
    Options options("local add", {"dir", "set"}, {});
    if (!options.parse(arguments)) {
        std::cout << kLocalAddHelp;
        return kExitOk;
    }
    const std::string dir = options.required("dir");
    const std::vector<local::Setting> extra_settings = setting_options(options, "local add");
    local::check_settings(extra_settings);
    local::LocalCluster cluster = local::LocalCluster::open(dir, print_progress);
    local::ChangeLock lock = cluster.lock_for_changes();
    require_formed(cluster, "local add");
    cluster.discard_unfinished_nodes();
    std::optional<int> via = cluster.first_ready_node();
    if (!via) {
        throw std::runtime_error("no node of " + cluster.dir().string() +
                                 " runs and is ready to join through; " + start_hint(cluster));
    }
    const int number = cluster.reserve_node(*via);
    const std::string name = cluster.node(number).name;
    try {
        cluster.add_node(number, *via, extra_settings);
    } catch (const std::exception &error) {
        std::cerr << "pgmesh: local add failed: " << error.what() << "\n";
        if (const auto *node_error = dynamic_cast<const local::NodeError *>(&error)) {
            print_log_tail(cluster, node_error->node_number());
            // A join involves the node joined through too.
            const local::NodeInfo &other =
                cluster.node(node_error->node_number() == number ? *via : number);
            std::cerr << "pgmesh: " << other.name << "'s log: " << other.log_file().string()
                      << "\n";
        }
        try {
            cluster.discard_node(number);
            std::cerr << "pgmesh: removed " << name << "; the cluster is as it was\n";
        } catch (const std::exception &cleanup_error) {
            std::cerr << "pgmesh: while cleaning up: " << cleanup_error.what() << "\n"
                      << "pgmesh: " << name << " stays recorded as being added; the next "
                      << "`pgmesh local add` removes it\n";
            return kExitFailure;
        }
        // A join that fails undoes its row on the node joined through; when
        // it could not, the next join under the same name clears it.
        try {
            auto states = cluster.group_node_states(*via);
            if (auto left = states.find(name); left != states.end()) {
                std::cerr << "pgmesh: the group still lists " << name << " (" << left->second
                          << "); the next `pgmesh local add` joins under that name again\n";
            }
        } catch (const pq::Error &) {
            // Only a note; the add failed either way.
        }
        return kExitFailure;
    }
    std::cout << name << " joined the pgmesh group in " << cluster.dir().string() << " through "
              << cluster.node(*via).name << "; the group has "
              << count_of(cluster.member_count(), "node") << ". Connect with:\n";
    print_connection_line(cluster, cluster.node(number));
    return kExitOk;
}

int local_part(const std::vector<std::string> &arguments) {
    Options options("local part", {"dir", "node"}, {});
    if (!options.parse(arguments)) {
        std::cout << kLocalPartHelp;
        return kExitOk;
    }
    const std::string dir = options.required("dir");
    const std::string name = options.required("node");
    local::LocalCluster cluster = local::LocalCluster::open(dir, print_progress);
    local::ChangeLock lock = cluster.lock_for_changes();
    const local::NodeInfo *node = cluster.find_node(name);
    if (node == nullptr) {
        std::string known;
        for (const local::NodeInfo &info : cluster.nodes()) {
            known += (known.empty() ? "" : ", ") + info.name;
        }
        throw UsageError(
            "no node \"" + name + "\" in " + cluster.dir().string() + " (nodes: " + known + ")",
            "local part");
    }
    if (node->state == local::NodeState::kParted) {
        throw std::runtime_error(name + " is parted already");
    }
    if (node->state == local::NodeState::kAdding) {
        throw std::runtime_error(name +
                                 " was never fully added (an interrupted `pgmesh local "
                                 "add`); the next `pgmesh local add` removes it");
    }
    require_formed(cluster, "local part");
    const int number = node->number;
    std::optional<int> via = cluster.first_ready_node(number);
    if (!via) {
        throw std::runtime_error("no node other than " + name +
                                 " runs and is ready to part it from; " + start_hint(cluster));
    }
    try {
        cluster.part_node(number, *via);
    } catch (const local::NodeError &error) {
        const bool parted = cluster.node(number).state == local::NodeState::kParted;
        std::cerr << "pgmesh: " << (parted ? "parted " + name + ", but " : "local part failed: ")
                  << error.what() << "\n";
        print_log_tail(cluster, error.node_number());
        return kExitFailure;
    }
    std::cout << "parted " << name << " from the pgmesh group in " << cluster.dir().string()
              << " through " << cluster.node(*via).name << " and stopped it; "
              << cluster.node(number).node_dir.string()
              << " is kept until `pgmesh local down --purge`. The group has "
              << count_of(cluster.member_count(), "node") << ":\n";
    print_connection_lines(cluster);
    return kExitOk;
}

int local_down(const std::vector<std::string> &arguments) {
    Options options("local down", {"dir"}, {"purge"});
    if (!options.parse(arguments)) {
        std::cout << kLocalDownHelp;
        return kExitOk;
    }
    // Refuses directories without a state file, so --purge never removes
    // something that is not a pgmesh local cluster.
    local::LocalCluster cluster =
        local::LocalCluster::open(options.required("dir"), print_progress);
    cluster.stop_all();
    std::cout << "stopped " << count_of(cluster.node_count(), "node") << " in "
              << cluster.dir().string() << "\n";
    if (options.flag("purge")) {
        fs::remove_all(cluster.dir());
        std::cout << "removed " << cluster.dir().string() << "\n";
    }
    return kExitOk;
}

void print_query_table(pq::Connection &conn, const std::string &title, const std::string &sql) {
    std::cout << title << ":\n";
    try {
        std::cout << local::format_table(local::table_from_result(conn.exec(sql)));
    } catch (const pq::Error &error) {
        std::cout << "  (cannot read: " << error.message() << ")\n";
    }
}

int local_status(const std::vector<std::string> &arguments) {
    Options options("local status", {"dir"}, {});
    if (!options.parse(arguments)) {
        std::cout << kLocalStatusHelp;
        return kExitOk;
    }
    local::LocalCluster cluster = local::LocalCluster::open(options.required("dir"));
    const int others = cluster.node_count() - cluster.member_count();
    std::cout << "local cluster " << cluster.dir().string() << ": "
              << count_of(cluster.member_count(), "node")
              << (others == 0 ? "" : " (and " + std::to_string(others) + " parted or being added)")
              << ", database \"" << cluster.db_name() << "\""
              << (cluster.formed() ? "" : " (never fully set up: local up failed)") << "\n";
    local::TextTable overview;
    overview.headers = {"node", "state", "pid", "port", "data directory"};
    overview.right_aligned = {false, false, true, true, false};
    bool all_running = true;
    for (const local::NodeInfo &node : cluster.nodes()) {
        std::optional<pid_t> pid = cluster.postmaster_pid(node.number);
        std::string state = pid ? "running" : "stopped";
        if (node.is_member()) {
            all_running = all_running && pid.has_value();
        } else {
            // A node being added runs only while its `local add` does.
            state = (node.state == local::NodeState::kParted ? "parted" : "being added") +
                    (pid ? std::string(", running") : std::string());
        }
        overview.rows.push_back({node.name, state, pid ? std::to_string(*pid) : "",
                                 std::to_string(node.port), node.data_dir().string()});
    }
    std::cout << local::format_table(overview, /*with_row_count=*/false);
    for (const local::NodeInfo &node : cluster.nodes()) {
        if (!cluster.is_running(node.number)) continue;
        std::cout << "\n== " << node.name << " (" << cluster.dsn(node.number) << ")\n";
        try {
            pq::Connection conn = pq::Connection::open(cluster.dsn(node.number));
            print_query_table(conn, "pgmesh.nodes",
                              "SELECT * FROM pgmesh.nodes ORDER BY node_name");
            print_query_table(conn, "pgmesh.status",
                              "SELECT * FROM pgmesh.status ORDER BY peer_node_name");
        } catch (const pq::Error &error) {
            std::cout << "  (cannot connect: " << error.message() << ")\n";
        }
    }
    return all_running ? kExitOk : kExitFailure;
}

int status(const std::vector<std::string> &arguments) {
    Options options("status", {"dsn"}, {});
    if (!options.parse(arguments)) {
        std::cout << kStatusHelp;
        return kExitOk;
    }
    pq::Connection conn = pq::Connection::open(options.required("dsn"));
    pq::Result result = conn.exec("SELECT * FROM pgmesh.status ORDER BY peer_node_name");
    std::cout << local::format_table(local::table_from_result(result));
    return kExitOk;
}

// "host:port/dbname" of a connection string, for reports (never a password).
std::string dsn_label(const std::string &dsn) {
    std::string error;
    std::optional<std::vector<conninfo::Option>> options = conninfo::parse(dsn, &error);
    if (!options) {
        // libpq's message can quote the password; neither it nor the DSN is
        // shown as is.
        throw UsageError("bad --dsn: " + conninfo::redact_parse_error(error), "verify");
    }
    std::map<std::string, std::string> values;
    for (const conninfo::Option &option : *options) values[option.keyword] = option.value;
    std::string host = values.contains("host") ? values["host"] : values["hostaddr"];
    return (host.empty() ? "local" : host) + ":" +
           (values["port"].empty() ? "5432" : values["port"]) + "/" + values["dbname"];
}

int verify(const std::vector<std::string> &arguments) {
    Options options("verify", {"dsn"}, {});
    if (!options.parse(arguments)) {
        std::cout << kVerifyHelp;
        return kExitOk;
    }
    const std::vector<std::string> &dsns = options.all("dsn");
    if (dsns.size() < 2) throw UsageError("verify needs at least two --dsn", "verify");
    std::vector<local::NodeToVerify> nodes;
    std::map<std::string, int> label_uses;
    for (const std::string &dsn : dsns) {
        std::string label = dsn_label(dsn);
        if (int uses = ++label_uses[label]; uses > 1) label += " #" + std::to_string(uses);
        nodes.push_back({label, dsn});
    }
    local::VerifyReport report = local::verify_nodes(nodes);
    std::cout << report.format();
    return report.all_equal() ? kExitOk : kExitFailure;
}

int dispatch(const std::vector<std::string> &arguments) {
    if (arguments.empty()) throw UsageError("no command given", "");
    const std::string &command = arguments[0];
    if (command == "--help" || command == "-h" || command == "help") {
        std::cout << kMainHelp;
        return kExitOk;
    }
    if (command == "--version") {
        std::cout << "pgmesh " << kVersion << "\n";
        return kExitOk;
    }
    std::vector<std::string> rest(arguments.begin() + 1, arguments.end());
    if (command == "status") return status(rest);
    if (command == "verify") return verify(rest);
    if (command == "local") {
        if (rest.empty()) {
            throw UsageError("local needs a subcommand: up, add, part, start, down, status", "");
        }
        const std::string subcommand = rest[0];
        std::vector<std::string> local_arguments(rest.begin() + 1, rest.end());
        if (subcommand == "up") return local_up(local_arguments);
        if (subcommand == "add") return local_add(local_arguments);
        if (subcommand == "part") return local_part(local_arguments);
        if (subcommand == "start") return local_start(local_arguments);
        if (subcommand == "down") return local_down(local_arguments);
        if (subcommand == "status") return local_status(local_arguments);
        if (subcommand == "--help" || subcommand == "-h") {
            std::cout << kMainHelp;
            return kExitOk;
        }
        throw UsageError("unknown local subcommand \"" + subcommand + "\"", "");
    }
    throw UsageError("unknown command \"" + command + "\"", "");
}

}  // namespace

int main(int argc, char **argv) {
    std::vector<std::string> arguments(argv + 1, argv + argc);
    try {
        return dispatch(arguments);
    } catch (const UsageError &error) {
        std::cerr << "pgmesh: " << error.what() << "\n";
        std::cerr << "Try `pgmesh " << (error.command().empty() ? "" : error.command() + " ")
                  << "--help`.\n";
        return kExitUsage;
    } catch (const std::exception &error) {
        std::cerr << "pgmesh: " << error.what() << "\n";
        return kExitFailure;
    }
}
