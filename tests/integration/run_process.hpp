// Running client programs (the pgmesh CLI, psql, Python migration tools) from
// integration tests, as the user the test runs as, and capturing what they
// print. Server programs run through local::run_as_server_user instead.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pgmesh::test {

struct ProcessOptions {
    // Changes to this process's environment for the child: a value sets the
    // variable, nullopt removes it.
    std::vector<std::pair<std::string, std::optional<std::string>>> environment;
    // Standard input; empty: /dev/null.
    std::filesystem::path stdin_file;
    // False: stderr goes to `output` with stdout, interleaved. True: stderr
    // goes to `errors` (for programs whose stdout is data, like a script).
    bool separate_stderr = false;
    // The child is killed (SIGKILL) when it runs longer.
    std::chrono::seconds timeout{120};
};

struct ProcessResult {
    int exit_code = -1;  // exit status, or 128 + signal number
    bool timed_out = false;
    std::string output;  // stdout (and stderr unless separate_stderr)
    std::string errors;  // stderr when separate_stderr
    bool ok() const { return exit_code == 0 && !timed_out; }
    // "exit code N" (or "killed after the timeout"), then what it printed:
    // for assertion messages.
    std::string describe() const;
};

// Runs argv[0] (a full path, no PATH search) with argv and waits for it.
// Throws std::system_error when the process cannot be made.
ProcessResult run_process(const std::vector<std::string> &argv, const ProcessOptions &options = {});

}  // namespace pgmesh::test
