// Local PostgreSQL nodes for `pgmesh local ...` and the integration tests:
// initdb, configuration, start/stop/crash, forming a pgmesh group, and a state
// file so that a cluster directory can be managed again later from the
// directory alone.
//
// Layout of a cluster directory DIR:
//   DIR/pgmesh-local.conf      state file (key=value lines)
//   DIR/node<i>/data/          the data directory of node i
//   DIR/node<i>/postgres.log   its server log (pg_ctl -l; appended on restarts)
//   DIR/node<i>/.s.PGSQL.<port> its Unix socket (when the path is short enough)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pgmesh::local {

inline constexpr std::string_view kStateFileName = "pgmesh-local.conf";
inline constexpr std::string_view kDefaultDatabase = "pgmesh";
inline constexpr std::string_view kSignalTerminationMarker = "terminated by signal";

// A failure that belongs to one node: callers show that node's log tail.
class NodeError : public std::runtime_error {
public:
    NodeError(int node_number, const std::string &message)
        : std::runtime_error(message), node_number_(node_number) {}
    int node_number() const { return node_number_; }

private:
    int node_number_;
};

// One postgresql.conf setting. The value is the plain value (logical, 16,
// pgmesh,pgoutput); it is written single-quoted, which PostgreSQL accepts for
// settings of every type.
struct Setting {
    std::string name;
    std::string value;
};

struct ClusterOptions {
    std::filesystem::path dir;  // created if missing; must not hold anything yet
    int node_count = 3;
    // 0: free ports starting at a random place in [20000, 30000), which is
    // below Linux's ephemeral range; otherwise the first free ports from here.
    int base_port = 0;
    std::string db_name = std::string(kDefaultDatabase);
    // Empty means plain servers without pgmesh (fixture self-tests).
    std::string shared_preload_libraries = "pgmesh";
    // fsync=off and initdb --no-sync: for throwaway test clusters. Data still
    // survives kill -9 of the server (the OS keeps it), just not an OS crash.
    bool fast_unsafe_storage = false;
    // Written after pgmesh's own settings, so these win.
    std::vector<Setting> extra_settings;
    // Where initdb, pg_ctl, postgres and pg_config live; empty: default_pg_bindir().
    std::filesystem::path pg_bindir;
};

struct NodeInfo {
    int number = 0;    // 1-based
    std::string name;  // "node<number>", also the pgmesh node name
    int port = 0;
    std::filesystem::path node_dir;
    std::filesystem::path data_dir() const { return node_dir / "data"; }
    std::filesystem::path log_file() const { return node_dir / "postgres.log"; }
};

enum class StopMode { kFast, kImmediate };

class LocalCluster {
public:
    using Progress = std::function<void(std::string_view message)>;

    // Creates the directory, picks ports, runs initdb and writes the
    // configuration and the state file. Starts nothing. Throws if dir already
    // holds a cluster or any other file.
    static LocalCluster create(const ClusterOptions &options, Progress progress = {});
    // Reads the state file of an existing cluster directory.
    static LocalCluster open(const std::filesystem::path &dir, Progress progress = {});
    // Whether dir holds a state file.
    static bool exists(const std::filesystem::path &dir);

    const std::filesystem::path &dir() const { return dir_; }
    const std::string &db_name() const { return db_name_; }
    const std::filesystem::path &pg_bindir() const { return pg_bindir_; }
    int node_count() const { return static_cast<int>(nodes_.size()); }
    const std::vector<NodeInfo> &nodes() const { return nodes_; }
    const NodeInfo &node(int number) const;
    // Whether form_mesh() completed for this cluster (recorded in the state file).
    bool formed() const { return formed_; }

    // "host=127.0.0.1 port=P dbname=<db> user=postgres"
    std::string dsn(int number) const { return dsn(number, db_name_); }
    std::string dsn(int number, std::string_view dbname) const;

    // Server control. start/stop are no-ops when already running/stopped.
    void start(int number);
    void stop(int number, StopMode mode = StopMode::kFast);
    void restart(int number);
    // SIGKILL the postmaster, as a crash would, then wait until its children
    // (which notice their parent's death) are gone too, so that start() can
    // run crash recovery. Children still alive after child_grace are killed
    // too and their pids returned: PostgreSQL's own processes leave within a
    // second, so a non-empty result means some process ignored postmaster
    // death.
    std::vector<pid_t> kill9(int number,
                             std::chrono::seconds child_grace = std::chrono::seconds(30));
    void start_all();
    void stop_all(StopMode mode = StopMode::kFast);
    bool is_running(int number) const;
    std::optional<pid_t> postmaster_pid(int number) const;

    // Forming a group, step by step (form_mesh() runs them all).
    void create_database(int number);  // CREATE DATABASE <db> unless it exists
    void create_extension(int number);
    void create_group(int number);
    void join_group(int number, int via_number,
                    std::chrono::seconds ready_timeout = std::chrono::seconds(120));
    // Database and extension on every node, create_group on node 1, then each
    // further node joins through node 1 and waits until ready. Records
    // formed=1 in the state file.
    void form_mesh(std::chrono::seconds ready_timeout = std::chrono::seconds(120));

    // The last `lines` lines of the node's server log.
    std::string log_tail(int number, size_t lines) const;

private:
    LocalCluster() = default;
    void write_state_file() const;
    void report(std::string_view message) const;
    void write_configuration(const NodeInfo &node, const ClusterOptions &options,
                             bool server_has_output_plugin_libraries) const;

    std::filesystem::path dir_;
    std::string db_name_;
    std::filesystem::path pg_bindir_;
    std::vector<NodeInfo> nodes_;
    bool formed_ = false;
    Progress progress_;
};

// The PostgreSQL bindir compiled in (PG_BINDIR from CMake), overridden by the
// environment variable PGMESH_PG_BINDIR.
std::filesystem::path default_pg_bindir();

// Whether `postgres --describe-config` of that installation lists the setting
// (e.g. output_plugin_libraries, which only some builds have).
bool server_has_setting(const std::filesystem::path &pg_bindir, std::string_view name);

// Output of `pg_config --<item>` of that installation (e.g. "pkglibdir").
std::string pg_config_value(const std::filesystem::path &pg_bindir, std::string_view item);

// True when nothing listens on 127.0.0.1:port and we can bind it.
bool port_is_free(int port);
// count distinct free ports; see ClusterOptions::base_port for base_port.
std::vector<int> find_free_ports(int count, int base_port);

// The last `lines` lines of a text file ("" if it does not exist).
std::string read_tail(const std::filesystem::path &file, size_t lines);

// Lines of a server log that report a process killed by a signal
// ("server process (PID 123) was terminated by signal 11: Segmentation
// fault"): each one is a crash.
std::vector<std::string> find_signal_terminations(const std::filesystem::path &log_file);

}  // namespace pgmesh::local
