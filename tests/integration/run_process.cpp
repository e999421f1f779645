#include "run_process.hpp"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <system_error>

extern char **environ;

namespace pgmesh::test {
namespace {

[[noreturn]] void throw_errno(const std::string &what) {
    throw std::system_error(errno, std::generic_category(), what);
}

// "NAME=value" strings: this process's environment with options' changes.
std::vector<std::string> child_environment(const ProcessOptions &options) {
    std::vector<std::string> result;
    for (char **entry = environ; *entry != nullptr; ++entry) {
        std::string_view text(*entry);
        std::string_view name = text.substr(0, text.find('='));
        bool changed = false;
        for (const auto &[key, value] : options.environment) changed = changed || name == key;
        if (!changed) result.emplace_back(text);
    }
    for (const auto &[key, value] : options.environment)
        if (value) result.push_back(key + "=" + *value);
    return result;
}

struct Pipe {
    int read_end = -1;
    int write_end = -1;
    Pipe() {
        std::array<int, 2> fds{};
        if (pipe2(fds.data(), O_CLOEXEC) != 0) throw_errno("pipe2");
        read_end = fds[0];
        write_end = fds[1];
    }
    ~Pipe() {
        if (read_end >= 0) close(read_end);
        if (write_end >= 0) close(write_end);
    }
    Pipe(const Pipe &) = delete;
    Pipe &operator=(const Pipe &) = delete;
};

}  // namespace

std::string ProcessResult::describe() const {
    std::string text =
        timed_out ? "killed after the timeout" : "exit code " + std::to_string(exit_code);
    text += "; output:\n" + output;
    if (!errors.empty()) text += "\nstderr:\n" + errors;
    return text;
}

ProcessResult run_process(const std::vector<std::string> &argv, const ProcessOptions &options) {
    if (argv.empty()) throw std::invalid_argument("run_process: empty argv");
    // Everything the child needs is prepared before fork.
    std::vector<std::string> environment = child_environment(options);
    std::vector<char *> envp;
    for (std::string &entry : environment) envp.push_back(entry.data());
    envp.push_back(nullptr);
    std::vector<std::string> arguments = argv;
    std::vector<char *> args;
    for (std::string &argument : arguments) args.push_back(argument.data());
    args.push_back(nullptr);
    std::string stdin_path = options.stdin_file.empty() ? "/dev/null" : options.stdin_file.string();
    int stdin_fd = open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (stdin_fd < 0) throw_errno("open " + stdin_path);

    Pipe out;
    std::optional<Pipe> err;
    if (options.separate_stderr) err.emplace();

    pid_t pid = fork();
    if (pid < 0) {
        close(stdin_fd);
        throw_errno("fork");
    }
    if (pid == 0) {
        // Child: only async-signal-safe calls from here on.
        int err_fd = err ? err->write_end : out.write_end;
        if (dup2(stdin_fd, 0) < 0 || dup2(out.write_end, 1) < 0 || dup2(err_fd, 2) < 0) _exit(127);
        execve(args[0], args.data(), envp.data());
        const char *prefix = "run_process: cannot execute ";
        (void)!write(2, prefix, strlen(prefix));
        (void)!write(2, args[0], strlen(args[0]));
        (void)!write(2, "\n", 1);
        _exit(127);
    }
    close(stdin_fd);
    close(out.write_end);
    out.write_end = -1;
    if (err) {
        close(err->write_end);
        err->write_end = -1;
    }

    ProcessResult result;
    const auto deadline = std::chrono::steady_clock::now() + options.timeout;
    std::vector<std::pair<int, std::string *>> open_fds = {{out.read_end, &result.output}};
    if (err) open_fds.emplace_back(err->read_end, &result.errors);
    std::array<char, 8192> buffer{};
    while (!open_fds.empty()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            result.timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        std::vector<pollfd> fds;
        for (const auto &[fd, sink] : open_fds) fds.push_back({fd, POLLIN, 0});
        int ready = poll(fds.data(), fds.size(), static_cast<int>(left.count()));
        if (ready < 0 && errno != EINTR) throw_errno("poll");
        for (size_t i = fds.size(); i-- > 0;) {
            if (fds[i].revents == 0) continue;
            ssize_t n = read(fds[i].fd, buffer.data(), buffer.size());
            if (n > 0) {
                open_fds[i].second->append(buffer.data(), static_cast<size_t>(n));
            } else if (n == 0 || errno != EINTR) {
                open_fds.erase(open_fds.begin() + static_cast<std::ptrdiff_t>(i));
            }
        }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) throw_errno("waitpid");
    }
    if (WIFEXITED(status)) {
        result.exit_code = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.exit_code = 128 + WTERMSIG(status);
    }
    return result;
}

}  // namespace pgmesh::test
