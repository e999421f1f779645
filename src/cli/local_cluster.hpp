// Local PostgreSQL nodes for `pgmesh local ...` and the integration tests:
// initdb, configuration, start/stop/crash, forming a pgmesh group, and a state
// file so that a cluster directory can be managed again later from the
// directory alone.
//
// Layout of a cluster directory DIR:
//   DIR/pgmesh-local.conf      state file (key=value lines)
//   DIR/pgmesh-local.lock      locked while `local add` or `local part` runs
//   DIR/node<i>/data/          the data directory of node i
//   DIR/node<i>/postgres.log   its server log (pg_ctl -l; appended on restarts)
//   DIR/node<i>/.s.PGSQL.<port> its Unix socket (when the path is short enough)
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
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

// Nodes come and go (`pgmesh local add`, `local part`), but a local
// cluster keeps a parted node's record, so that its number, and with it its
// name, is never given to another node: the group keeps a parted node's row
// under that name for good.
enum class NodeState {
    kMember,
    // Recorded before `local add` runs initdb, so that an add that is
    // interrupted leaves no server that the state file does not know of; the
    // next `local add` removes such a node.
    kAdding,
    kParted,
};

struct NodeInfo {
    int number = 0;    // 1-based; never reused, so there can be gaps
    std::string name;  // "node<number>", also the pgmesh node name
    int port = 0;
    std::filesystem::path node_dir;
    NodeState state = NodeState::kMember;
    bool is_member() const { return state == NodeState::kMember; }
    std::filesystem::path data_dir() const { return node_dir / "data"; }
    std::filesystem::path log_file() const { return node_dir / "postgres.log"; }
};

// An exclusive lock on a cluster directory, held while a command changes
// which nodes the cluster has, so that two such commands never pick the same
// node number or remove each other's node being added.
class ChangeLock {
public:
    explicit ChangeLock(int fd) : fd_(fd) {}
    ChangeLock(ChangeLock &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    ChangeLock &operator=(ChangeLock &&) = delete;
    ~ChangeLock();
    bool valid() const { return fd_ >= 0; }
    // flock without waiting: 0, or -1 with errno (EWOULDBLOCK: held elsewhere).
    int try_lock() const;

private:
    int fd_;
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
    // Every recorded node, parted ones included.
    int node_count() const { return static_cast<int>(nodes_.size()); }
    // The nodes that are in the group: neither parted nor being added.
    int member_count() const;
    const std::vector<NodeInfo> &nodes() const { return nodes_; }
    const NodeInfo &node(int number) const;
    const NodeInfo *find_node(std::string_view name) const;
    // Whether form_mesh() completed for this cluster (recorded in the state file).
    bool formed() const { return formed_; }

    // "host=127.0.0.1 port=P dbname=<db> user=postgres"
    std::string dsn(int number) const { return dsn(number, db_name_); }
    std::string dsn(int number, std::string_view dbname) const;

    // Variables ("NAME=value") that start() gives the node's server, which
    // its backends and workers inherit: the fault harness points each node's
    // PGSERVICEFILE at its own service file, so that every node reaches its
    // peers through that node's own proxies. Kept in this object only.
    void set_server_environment(int number, std::vector<std::string> variables);

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
    // Starts the members; stops every node that runs.
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

    // Adding and parting nodes (`pgmesh local add`, `local part`). Take the
    // lock first: it reads the state file again under the lock.
    ChangeLock lock_for_changes();
    // The first running member other than `except` whose own row in
    // pgmesh.nodes says 'ready': the one to join through or part from.
    std::optional<int> first_ready_node(std::optional<int> except = std::nullopt) const;
    // node name -> state, from pgmesh.nodes of that node.
    std::map<std::string, std::string> group_node_states(int via_number) const;
    // Removes the nodes an interrupted `local add` left (NodeState::kAdding).
    void discard_unfinished_nodes();
    // Picks the next node: one number above every node the cluster has had
    // and whose name the group does not have already (except as 'joining',
    // left by a failed join, which a join under that name clears), and the
    // first free port above the other nodes'. Creates its directory and
    // records it as being added. Returns its number.
    int reserve_node(int via_number);
    // initdb for a reserved node, with the settings of the other nodes (their
    // pgmesh block of postgresql.conf) and then its own and extra_settings;
    // starts it, creates the database and the extension, joins through
    // via_number, waits until ready, and records it as a member.
    void add_node(int number, int via_number, const std::vector<Setting> &extra_settings,
                  std::chrono::seconds ready_timeout = std::chrono::seconds(120));
    // Stops a node that is being added (immediate), removes its directory and
    // forgets it: after a failed add, the cluster is as it was before.
    void discard_node(int number);
    // pgmesh.part_node(name) on via_number, then records the node as parted
    // and stops its server. Its directory stays until `local down --purge`.
    void part_node(int number, int via_number);

    // The last `lines` lines of the node's server log.
    std::string log_tail(int number, size_t lines) const;

private:
    LocalCluster() = default;
    void read_state_file();
    void write_state_file() const;
    void report(std::string_view message) const;
    NodeInfo &mutable_node(int number);
    std::vector<std::string> initdb_argv(const NodeInfo &node, bool no_sync) const;
    void write_configuration(const NodeInfo &node, const ClusterOptions &options,
                             bool server_has_output_plugin_libraries) const;
    void write_added_configuration(const NodeInfo &node,
                                   const std::vector<Setting> &extra_settings) const;

    std::filesystem::path dir_;
    std::string db_name_;
    std::filesystem::path pg_bindir_;
    std::vector<NodeInfo> nodes_;
    std::map<int, std::vector<std::string>> server_environment_;
    bool formed_ = false;
    Progress progress_;
};

// Throws std::invalid_argument unless each setting can be written as one
// `name = 'value'` line of postgresql.conf.
void check_settings(const std::vector<Setting> &settings);

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
