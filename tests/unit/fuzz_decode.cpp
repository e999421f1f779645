// libFuzzer entry: feeds arbitrary bytes to the two decoders that read what a
// peer sends. Anything other than success or DecodeError (a crash, a
// sanitizer report, another exception) is a finding. Beyond "no crash" it
// checks the decoder's strictness: what decodes must re-encode to exactly the
// input, otherwise two different byte strings mean the same message.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <variant>

#include "encode_any.hpp"
#include "protocol.hpp"
#include "walstream.hpp"

namespace {

using pgmesh::proto::DecodeError;

void check_message(std::span<const uint8_t> in) {
    try {
        pgmesh::proto::Decoded msg = pgmesh::proto::decode(in);
        std::string again = pgmesh::proto::test_support::encode_any(msg);
        if (again.size() != in.size() ||
            (!in.empty() && std::memcmp(again.data(), in.data(), in.size()) != 0)) {
            std::fprintf(stderr, "decoded message re-encodes to different bytes\n");
            std::abort();
        }
    } catch (const DecodeError &) {
    }
}

// A data frame's payload as the apply worker reads it: messages back to
// back until it is used up; each must re-encode to the bytes it came from.
void check_batch(std::span<const uint8_t> in) {
    try {
        while (!in.empty()) {
            size_t used = 0;
            pgmesh::proto::Decoded msg = pgmesh::proto::decode_next(in, used);
            std::string again = pgmesh::proto::test_support::encode_any(msg);
            if (used == 0 || used > in.size() || again.size() != used ||
                std::memcmp(again.data(), in.data(), used) != 0) {
                std::fprintf(stderr, "batched message re-encodes to different bytes\n");
                std::abort();
            }
            in = in.subspan(used);
        }
    } catch (const DecodeError &) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    std::span<const uint8_t> in(data, size);
    check_message(in);
    try {
        auto frame = pgmesh::walstream::parse_frame(in);
        // The payload of a data frame is what the apply worker decodes next.
        if (auto *xlog = std::get_if<pgmesh::walstream::XLogData>(&frame)) {
            check_message(xlog->payload);
            check_batch(xlog->payload);
        }
    } catch (const DecodeError &) {
    }
    return 0;
}
