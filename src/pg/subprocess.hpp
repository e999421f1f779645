// Programs run from inside the server (pg_dump and pg_restore during a join).
//
// They start without a shell, from an argument vector, so no value is ever
// parsed by a shell. Secrets reach them through their environment or a file,
// never their command line, which every local user can read in /proc.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace pgmesh::subprocess {

struct Program {
    std::vector<std::string> argv;  // argv[0]: the full path
    // Set (or replaced) in the child's copy of the server's environment.
    std::vector<std::pair<std::string, std::string>> environment;
    // Left out of it.
    std::vector<std::string> unset;
};

struct Outcome {
    int exit_code = 0;  // the exit status, or 128 + the signal that ended it
    std::string out;    // what it wrote to stdout
    std::string err;    // ... and to stderr
};

// Runs the program to its end, collecting its output. Interruptible: a
// cancel or shutdown of the calling backend kills the program and throws.
// Throws pg::Error when it cannot be started.
Outcome run(const Program &program);

}  // namespace pgmesh::subprocess
