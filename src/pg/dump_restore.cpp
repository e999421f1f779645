#include "dump_restore.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "conninfo.hpp"
#include "guard.hpp"
#include "subprocess.hpp"

namespace pgmesh::dump_restore {

namespace {

std::string bindir() {
    return pg::call([] {
        char *dir = pstrdup(my_exec_path);
        get_parent_directory(dir);
        return static_cast<const char *>(dir);
    });
}

// A file that is removed when it goes out of scope.
class TempFile {
public:
    explicit TempFile(std::string path) : path_(std::move(path)) {}
    ~TempFile() {
        if (!path_.empty()) unlink(path_.c_str());
    }
    TempFile(TempFile &&other) noexcept : path_(std::exchange(other.path_, {})) {}
    TempFile &operator=(TempFile &&) = delete;
    TempFile(const TempFile &) = delete;
    TempFile &operator=(const TempFile &) = delete;
    const std::string &path() const { return path_; }

private:
    std::string path_;
};

// Writes a new file that only the server's OS user can read.
void write_private_file(const std::string &path, const std::string &contents) {
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 &&
              write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size());
    if (fd >= 0) ok = close(fd) == 0 && ok;
    if (!ok)
        throw pg::Error(ERRCODE_IO_ERROR, "could not write \"" + path + "\": " + strerror(errno));
}

// How pg_dump or pg_restore connects to `dsn`: its secrets go through the
// program's environment or a private service file, never its command line.
struct ChildDsn {
    std::string conninfo;  // for --dbname
    std::vector<std::pair<std::string, std::string>> environment;
    std::optional<TempFile> service_file;

    // A server-wide PGSERVICE would fill in options (a password, say) before
    // the environment does: the program uses what the DSN says.
    subprocess::Program program(std::vector<std::string> argv) const {
        return subprocess::Program{std::move(argv), environment, {"PGSERVICE"}};
    }
};

ChildDsn child_dsn(const std::string &dsn, const std::string &temp_prefix, const char *what) {
    std::string service = "pgmesh_join";
    conninfo::ChildConnection split;
    try {
        split = conninfo::for_child(dsn, service);
    } catch (const std::invalid_argument &e) {
        throw pg::Error(
            ERRCODE_INVALID_PARAMETER_VALUE,
            std::string("cannot pass ") + what + " to pg_dump and pg_restore: " + e.what(), {},
            "Give the secret in a way libpq reads from a file, e.g. a password file.");
    }
    ChildDsn out{split.conninfo, split.environment, std::nullopt};
    if (!split.service_file.empty()) {
        out.service_file.emplace(temp_prefix + "." + what + ".service");
        write_private_file(out.service_file->path(), split.service_file);
        out.environment.emplace_back("PGSERVICEFILE", out.service_file->path());
    }
    return out;
}

// Runs a program to its end; throws with its output when it fails.
std::string run_program(const std::string &what, const subprocess::Program &program) {
    subprocess::Outcome outcome = subprocess::run(program);
    if (outcome.exit_code != 0)
        throw pg::Error(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION,
                        what + " failed (exit status " + std::to_string(outcome.exit_code) + ")",
                        outcome.err + outcome.out,
                        "See the detail; the join target's schema must restore on this node.");
    return outcome.out;
}

// pg_restore's table of contents without the pgmesh extension and schema,
// which this node already has.
std::string without_pgmesh(const std::string &list) {
    std::string kept;
    size_t start = 0;
    while (start < list.size()) {
        size_t end = list.find('\n', start);
        if (end == std::string::npos) end = list.size();
        std::string_view line(list.data() + start, end - start);
        bool pgmesh_object = false;
        for (std::string_view object : {" EXTENSION - pgmesh", " SCHEMA - pgmesh"}) {
            size_t at = line.find(object);
            size_t after = at + object.size();
            if (at != std::string_view::npos && (after == line.size() || line[after] == ' '))
                pgmesh_object = true;
        }
        if (!pgmesh_object) {
            kept.append(line);
            kept += '\n';
        }
        start = end + 1;
    }
    return kept;
}

}  // namespace

void copy(const std::string &join_using_dsn, const std::string &node_dsn,
          const std::string &snapshot) {
    std::string prefix = pg::call([] {
        MakePGDirectory(psprintf("%s/pgsql_tmp", DataDir));
        return static_cast<const char *>(
            psprintf("%s/pgsql_tmp/pgmesh_join_%d", DataDir, MyProcPid));
    });
    ChildDsn target = child_dsn(join_using_dsn, prefix, "join_using_dsn");
    ChildDsn local = child_dsn(node_dsn, prefix, "node_dsn");
    TempFile dump(prefix + ".dump");
    TempFile list(prefix + ".list");
    std::string bin = bindir();
    run_program("pg_dump of the join target",
                target.program({bin + "/pg_dump", "--format=custom", "--no-comments",
                                "--snapshot=" + snapshot, "--file=" + dump.path(),
                                "--dbname=" + target.conninfo}));
    std::string contents =
        run_program("listing the dump", {{bin + "/pg_restore", "--list", dump.path()}, {}, {}});
    write_private_file(list.path(), without_pgmesh(contents));
    run_program(
        "pg_restore into this node",
        local.program({bin + "/pg_restore", "--exit-on-error", "--single-transaction",
                       "--use-list=" + list.path(), "--dbname=" + local.conninfo, dump.path()}));
}

}  // namespace pgmesh::dump_restore
