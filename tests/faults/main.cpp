// pgmesh_faults: a seeded fault run (docs/faults.md).
//
//   pgmesh_faults [--seconds N | --minutes N] [--nodes K] [--seed S|random] [--keep]
//
// Exit status 0 when every check passed, 1 when one failed, 2 on bad usage.
#include <cstdlib>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

#include "fault_run.hpp"

namespace {

constexpr std::string_view kUsage =
    "usage: pgmesh_faults [--seconds N | --minutes N] [--nodes K] [--seed S|random] [--keep]\n";

long positive(std::string_view option, const std::string &text, long low, long high) {
    size_t used = 0;
    long value = 0;
    try {
        value = std::stol(text, &used);
    } catch (const std::exception &) {
        used = 0;
    }
    if (used != text.size() || value < low || value > high)
        throw std::invalid_argument(std::string(option) + " wants a number from " +
                                    std::to_string(low) + " to " + std::to_string(high) +
                                    ", not \"" + text + "\"");
    return value;
}

}  // namespace

int main(int argc, char **argv) {
    pgmesh::faults::RunOptions options;
    try {
        for (int i = 1; i < argc; i++) {
            const std::string_view arg = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " wants a value");
                return argv[++i];
            };
            if (arg == "--seconds") {
                options.length = std::chrono::seconds(positive(arg, value(), 10, 86400));
            } else if (arg == "--minutes") {
                options.length = std::chrono::minutes(positive(arg, value(), 1, 1440));
            } else if (arg == "--nodes") {
                options.nodes = static_cast<int>(positive(arg, value(), 2, 9));
            } else if (arg == "--seed") {
                const std::string seed = value();
                if (seed == "random") {
                    std::random_device device;
                    options.seed = (static_cast<uint64_t>(device()) << 20) ^ device();
                    options.seed %= 1000000000;
                } else {
                    options.seed = static_cast<uint64_t>(positive(arg, seed, 0, 999999999999L));
                }
            } else if (arg == "--keep") {
                options.keep = true;
            } else if (arg == "--help" || arg == "-h") {
                std::cout << kUsage;
                return 0;
            } else {
                throw std::invalid_argument("unknown option " + std::string(arg));
            }
        }
    } catch (const std::invalid_argument &error) {
        std::cerr << "pgmesh_faults: " << error.what() << "\n" << kUsage;
        return 2;
    }
    return pgmesh::faults::run(options, std::cout) ? 0 : 1;
}
