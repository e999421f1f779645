// Encodes any decoded message with the matching Encoder call. Shared by the
// unit tests and the fuzz target, which both check that whatever decodes
// re-encodes to the very same bytes (the decoder is strict, so the encoding is
// canonical).
#pragma once

#include <string>
#include <type_traits>
#include <variant>

#include "protocol.hpp"

namespace pgmesh::proto::test_support {

inline void encode_any(Encoder &enc, const Decoded &msg) {
    std::visit(
        [&enc](const auto &m) {
            using T = std::decay_t<decltype(m)>;
            if constexpr (std::is_same_v<T, Begin>) {
                enc.begin(m);
            } else if constexpr (std::is_same_v<T, Commit>) {
                enc.commit(m);
            } else if constexpr (std::is_same_v<T, Relation>) {
                enc.relation(m);
            } else if constexpr (std::is_same_v<T, Insert>) {
                enc.insert(m);
            } else if constexpr (std::is_same_v<T, Update>) {
                enc.update(m);
            } else if constexpr (std::is_same_v<T, Delete>) {
                enc.delete_(m);
            } else if constexpr (std::is_same_v<T, Truncate>) {
                enc.truncate(m);
            } else {
                static_assert(std::is_same_v<T, Message>);
                enc.message(m);
            }
        },
        msg);
}

inline std::string encode_any(const Decoded &msg) {
    Encoder enc;
    encode_any(enc, msg);
    auto b = enc.bytes();
    return std::string(reinterpret_cast<const char *>(b.data()), b.size());
}

}  // namespace pgmesh::proto::test_support
