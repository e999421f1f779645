// Running PostgreSQL's programs (initdb, pg_ctl, postgres) as child processes.
//
// PostgreSQL refuses to run as root, so when this process is root the
// programs run as the "postgres" OS user (switched in the child between fork
// and exec) and the files they need must belong to that user.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pgmesh::local {

struct ServerUser {
    std::string name;
    uid_t uid = 0;
    gid_t gid = 0;
    // True when we are root and server programs must switch to this user.
    bool switch_needed = false;
};

// The OS user that runs server programs: "postgres" when we are root (throws
// if that user does not exist), otherwise the current user.
const ServerUser &server_user();

struct CommandResult {
    int exit_code = 0;   // exit status, or 128 + signal number
    std::string output;  // stdout and stderr, interleaved
    bool ok() const { return exit_code == 0; }
};

// Runs argv[0] (a full path) with argv, as the server user, in working
// directory cwd, stdin from /dev/null, and waits for it. Variables that would
// redirect PostgreSQL programs (PGDATA, PGPORT, PGHOST, ...) are removed from
// its environment; extra_environment ("NAME=value" each) is added after that.
// Throws std::system_error when the process cannot be made.
CommandResult run_as_server_user(std::span<const std::string> argv,
                                 const std::filesystem::path &cwd,
                                 std::span<const std::string> extra_environment = {});

// "initdb -D /x ..." for messages, each argument through shell_quote.
std::string describe_command(std::span<const std::string> argv);

// One argument of a command printed for people to paste into a POSIX shell:
// as is when no shell treats any of its characters specially, else in double
// quotes when it has none of " \ $ ` ! (so a DSN prints as psql "host=..."),
// else in single quotes with ' written as '\''.
std::string shell_quote(std::string_view argument);

// Gives path (not recursively) to the server user when we are root; no-op
// otherwise.
void give_to_server_user(const std::filesystem::path &path);

// Whether the server user can create files in dir (checked in a child process
// running as that user, so every parent directory's permissions count).
bool server_user_can_write(const std::filesystem::path &dir);

// Facts from /proc/<pid>/stat; nullopt when there is no such process.
struct ProcessInfo {
    char state = '?';  // 'R', 'S', 'Z' (zombie), ...
    pid_t parent_pid = 0;
    std::string command;  // comm, e.g. "postgres"
};
std::optional<ProcessInfo> process_info(pid_t pid);

// True when pid names a live process (zombies do not count).
bool process_alive(pid_t pid);

// Processes whose parent is parent_pid.
std::vector<pid_t> child_processes(pid_t parent_pid);

}  // namespace pgmesh::local
