#include "subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "guard.hpp"

extern char **environ;

namespace pgmesh::subprocess {

namespace {

constexpr int kPollIntervalMs = 200;

struct Pipe {
    int read_end = -1;
    int write_end = -1;
    Pipe() {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) != 0)
            throw pg::Error(ERRCODE_INSUFFICIENT_RESOURCES,
                            std::string("could not create a pipe: ") + strerror(errno));
        read_end = fds[0];
        write_end = fds[1];
    }
    ~Pipe() {
        close_read();
        close_write();
    }
    Pipe(const Pipe &) = delete;
    Pipe &operator=(const Pipe &) = delete;
    void close_read() {
        if (read_end >= 0) close(read_end);
        read_end = -1;
    }
    void close_write() {
        if (write_end >= 0) close(write_end);
        write_end = -1;
    }
};

struct FileActions {
    posix_spawn_file_actions_t actions;
    FileActions() { posix_spawn_file_actions_init(&actions); }
    ~FileActions() { posix_spawn_file_actions_destroy(&actions); }
    FileActions(const FileActions &) = delete;
    FileActions &operator=(const FileActions &) = delete;
};

struct SpawnAttributes {
    posix_spawnattr_t attributes;
    SpawnAttributes() { posix_spawnattr_init(&attributes); }
    ~SpawnAttributes() { posix_spawnattr_destroy(&attributes); }
    SpawnAttributes(const SpawnAttributes &) = delete;
    SpawnAttributes &operator=(const SpawnAttributes &) = delete;
};

// A started child that is killed and reaped if we leave before it ended
// (an interrupt, an error while reading).
class Child {
public:
    explicit Child(pid_t pid) : pid_(pid) {}
    ~Child() {
        if (pid_ <= 0) return;
        kill(pid_, SIGTERM);
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
    }
    Child(const Child &) = delete;
    Child &operator=(const Child &) = delete;

    int wait() {
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0) {
            if (errno != EINTR)
                throw pg::Error(ERRCODE_SYSTEM_ERROR,
                                std::string("could not wait for a program: ") + strerror(errno));
        }
        pid_ = 0;
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
        return 255;
    }

private:
    pid_t pid_;
};

// The server's environment with ours set over it.
std::vector<std::string> child_environment(const Program &program) {
    std::vector<std::string> env;
    for (char **e = environ; e && *e; e++) {
        std::string_view entry(*e);
        std::string_view name = entry.substr(0, entry.find('='));
        bool replaced = false;
        for (const auto &[key, value] : program.environment) replaced |= name == key;
        for (const std::string &key : program.unset) replaced |= name == key;
        if (!replaced) env.emplace_back(entry);
    }
    for (const auto &[key, value] : program.environment) env.push_back(key + "=" + value);
    return env;
}

// Reads what is there; false once the pipe is closed.
bool drain(int fd, std::string &into) {
    char buffer[8192];
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n > 0) {
            into.append(buffer, static_cast<size_t>(n));
            continue;
        }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        return false;
    }
}

}  // namespace

Outcome run(const Program &program) {
    Pipe out;
    Pipe err;
    FileActions files;
    posix_spawn_file_actions_addopen(&files.actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&files.actions, out.write_end, STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&files.actions, err.write_end, STDERR_FILENO);
    // Backends ignore SIGPIPE and may hold signals blocked: the program gets
    // the defaults.
    SpawnAttributes attributes;
    sigset_t defaults;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attributes.attributes, &defaults);
    posix_spawnattr_setsigmask(&attributes.attributes, &none);
    posix_spawnattr_setflags(&attributes.attributes,
                             POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

    std::vector<char *> argv;
    for (const std::string &arg : program.argv) argv.push_back(const_cast<char *>(arg.c_str()));
    argv.push_back(nullptr);
    std::vector<std::string> env = child_environment(program);
    std::vector<char *> envp;
    for (std::string &entry : env) envp.push_back(entry.data());
    envp.push_back(nullptr);

    pid_t pid = 0;
    int rc = posix_spawn(&pid, argv[0], &files.actions, &attributes.attributes, argv.data(),
                         envp.data());
    if (rc != 0)
        throw pg::Error(ERRCODE_SYSTEM_ERROR,
                        "could not run \"" + program.argv[0] + "\": " + strerror(rc));
    Child child(pid);
    out.close_write();
    err.close_write();
    fcntl(out.read_end, F_SETFL, O_NONBLOCK);
    fcntl(err.read_end, F_SETFL, O_NONBLOCK);

    Outcome outcome;
    bool out_open = true;
    bool err_open = true;
    while (out_open || err_open) {
        pollfd fds[2] = {{out_open ? out.read_end : -1, POLLIN, 0},
                         {err_open ? err.read_end : -1, POLLIN, 0}};
        if (poll(fds, 2, kPollIntervalMs) < 0 && errno != EINTR)
            throw pg::Error(ERRCODE_SYSTEM_ERROR,
                            std::string("could not read from a program: ") + strerror(errno));
        if (out_open && fds[0].revents) out_open = drain(out.read_end, outcome.out);
        if (err_open && fds[1].revents) err_open = drain(err.read_end, outcome.err);
        pg::serve_interrupts();  // a cancel throws; ~Child kills the program
    }
    outcome.exit_code = child.wait();
    return outcome;
}

}  // namespace pgmesh::subprocess
