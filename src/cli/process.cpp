#include "process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <vector>

extern char **environ;

namespace pgmesh::local {

namespace {

std::system_error system_error(const std::string &what) {
    return std::system_error(errno, std::generic_category(), what);
}

ServerUser find_server_user() {
    ServerUser user;
    if (geteuid() != 0) {
        user.uid = geteuid();
        user.gid = getegid();
        const passwd *entry = getpwuid(user.uid);
        user.name = entry != nullptr ? entry->pw_name : std::to_string(user.uid);
        return user;
    }
    const passwd *entry = getpwnam("postgres");
    if (entry == nullptr) {
        throw std::runtime_error(
            "running as root, but there is no \"postgres\" OS user to run PostgreSQL as "
            "(PostgreSQL refuses to run as root); install postgresql-15 or run as another user");
    }
    user.name = entry->pw_name;
    user.uid = entry->pw_uid;
    user.gid = entry->pw_gid;
    user.switch_needed = true;
    return user;
}

// Supplementary groups of the server user, looked up before fork because
// getgrouplist is not safe to call in the child.
std::vector<gid_t> server_user_groups(const ServerUser &user) {
    int count = 32;
    std::vector<gid_t> groups(static_cast<size_t>(count));
    while (getgrouplist(user.name.c_str(), user.gid, groups.data(), &count) < 0) {
        groups.resize(static_cast<size_t>(count) * 2);
        count = static_cast<int>(groups.size());
    }
    groups.resize(static_cast<size_t>(count));
    return groups;
}

// Our environment minus variables that change what PostgreSQL programs do.
std::vector<std::string> child_environment() {
    static constexpr std::array kRemoved = {
        "PGDATA=",    "PGPORT=",    "PGHOST=",        "PGHOSTADDR=", "PGUSER=",    "PGDATABASE=",
        "PGOPTIONS=", "PGSERVICE=", "PGSERVICEFILE=", "PGPASSWORD=", "PGPASSFILE="};
    std::vector<std::string> variables;
    for (char **entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
        std::string_view variable(*entry);
        bool removed = false;
        for (std::string_view prefix : kRemoved) removed = removed || variable.starts_with(prefix);
        if (!removed) variables.emplace_back(variable);
    }
    return variables;
}

std::vector<char *> pointers(std::vector<std::string> &strings) {
    std::vector<char *> result;
    for (std::string &value : strings) result.push_back(value.data());
    result.push_back(nullptr);
    return result;
}

// Reports why the child could not become the server program and exits.
[[noreturn]] void fail_in_child(const char *step) {
    const char *reason = strerror(errno);
    for (const char *part : {"pgmesh: cannot run server program: ", step, ": ", reason, "\n"}) {
        ssize_t ignored = write(STDERR_FILENO, part, strlen(part));
        (void)ignored;
    }
    _exit(127);
}

// Only async-signal-safe calls between fork and exec.
[[noreturn]] void exec_child(int output_fd, const char *cwd, const ServerUser &user,
                             const std::vector<gid_t> &groups, char *const argv[],
                             char *const envp[]) {
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0) fail_in_child("stdin");
    if (dup2(output_fd, STDOUT_FILENO) < 0 || dup2(output_fd, STDERR_FILENO) < 0)
        fail_in_child("dup2");
    // Server processes must not inherit our descriptors (sockets, test logs).
    if (close_range(3, ~0U, 0) != 0) {
        for (int fd = 3; fd < 4096; ++fd) close(fd);
    }
    if (user.switch_needed) {
        if (setgroups(groups.size(), groups.data()) != 0) fail_in_child("setgroups");
        if (setgid(user.gid) != 0) fail_in_child("setgid");
        if (setuid(user.uid) != 0) fail_in_child("setuid");
    }
    if (chdir(cwd) != 0) fail_in_child("chdir");
    execve(argv[0], argv, envp);
    fail_in_child(argv[0]);
}

}  // namespace

const ServerUser &server_user() {
    static const ServerUser user = find_server_user();
    return user;
}

CommandResult run_as_server_user(std::span<const std::string> argv,
                                 const std::filesystem::path &cwd,
                                 std::span<const std::string> extra_environment) {
    if (argv.empty()) throw std::invalid_argument("run_as_server_user: empty argv");
    const ServerUser &user = server_user();
    std::vector<gid_t> groups =
        user.switch_needed ? server_user_groups(user) : std::vector<gid_t>{};
    std::vector<std::string> arguments(argv.begin(), argv.end());
    std::vector<char *> argument_pointers = pointers(arguments);
    std::vector<std::string> environment = child_environment();
    environment.insert(environment.end(), extra_environment.begin(), extra_environment.end());
    std::vector<char *> environment_pointers = pointers(environment);
    std::string directory = cwd.string();

    std::array<int, 2> pipe_fds{};
    if (pipe2(pipe_fds.data(), O_CLOEXEC) != 0) throw system_error("pipe2");
    pid_t pid = fork();
    if (pid < 0) {
        close(pipe_fds[0]);
        close(pipe_fds[1]);
        throw system_error("fork");
    }
    if (pid == 0) {
        exec_child(pipe_fds[1], directory.c_str(), user, groups, argument_pointers.data(),
                   environment_pointers.data());
    }
    close(pipe_fds[1]);

    CommandResult result;
    std::array<char, 4096> buffer{};
    for (;;) {
        ssize_t n = read(pipe_fds[0], buffer.data(), buffer.size());
        if (n > 0) {
            result.output.append(buffer.data(), static_cast<size_t>(n));
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    close(pipe_fds[0]);

    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw system_error("waitpid");
    }
    if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.exit_code = 128 + WTERMSIG(status);
    }
    return result;
}

std::string describe_command(std::span<const std::string> argv) {
    std::string text;
    for (const std::string &argument : argv) {
        if (!text.empty()) text += ' ';
        text += shell_quote(argument);
    }
    return text;
}

std::string shell_quote(std::string_view argument) {
    auto is_plain = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("_@%+=:,./-").find(c) != std::string_view::npos;
    };
    if (!argument.empty() && std::all_of(argument.begin(), argument.end(), is_plain)) {
        return std::string(argument);
    }
    // Inside double quotes only these keep a meaning (! in interactive bash).
    if (argument.find_first_of("\"\\$`!") == std::string_view::npos) {
        return "\"" + std::string(argument) + "\"";
    }
    std::string quoted = "'";
    for (char c : argument) {
        if (c == '\'') {
            quoted += "'\\''";
        } else {
            quoted += c;
        }
    }
    quoted += '\'';
    return quoted;
}

void give_to_server_user(const std::filesystem::path &path) {
    const ServerUser &user = server_user();
    if (!user.switch_needed) return;
    if (chown(path.c_str(), user.uid, user.gid) != 0) {
        throw system_error("chown " + path.string() + " to " + user.name);
    }
}

bool server_user_can_write(const std::filesystem::path &dir) {
    const ServerUser &user = server_user();
    if (!user.switch_needed) return access(dir.c_str(), W_OK | X_OK) == 0;
    std::vector<gid_t> groups = server_user_groups(user);
    pid_t pid = fork();
    if (pid < 0) throw system_error("fork");
    if (pid == 0) {
        bool switched = setgroups(groups.size(), groups.data()) == 0 && setgid(user.gid) == 0 &&
                        setuid(user.uid) == 0;
        _exit(switched && access(dir.c_str(), W_OK | X_OK) == 0 ? 0 : 1);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw system_error("waitpid");
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::optional<ProcessInfo> process_info(pid_t pid) {
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!stat_file || !std::getline(stat_file, line)) return std::nullopt;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
    // split at the last ')'.
    size_t open = line.find('(');
    size_t close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) {
        return std::nullopt;
    }
    ProcessInfo info;
    info.command = line.substr(open + 1, close - open - 1);
    std::istringstream rest(line.substr(close + 1));
    long parent = 0;
    rest >> info.state >> parent;
    info.parent_pid = static_cast<pid_t>(parent);
    return info;
}

bool process_alive(pid_t pid) {
    if (pid <= 0) return false;
    std::optional<ProcessInfo> info = process_info(pid);
    return info.has_value() && info->state != 'Z' && info->state != 'X';
}

std::vector<pid_t> child_processes(pid_t parent_pid) {
    std::vector<pid_t> children;
    std::error_code error;
    for (const auto &entry : std::filesystem::directory_iterator("/proc", error)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
        pid_t pid = static_cast<pid_t>(std::stol(name));
        std::optional<ProcessInfo> info = process_info(pid);
        if (info && info->parent_pid == parent_pid) children.push_back(pid);
    }
    return children;
}

}  // namespace pgmesh::local
