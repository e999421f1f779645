#include "node.hpp"

#include <array>
#include <charconv>

#include "cpp_only.hpp"

namespace pgmesh::node {

namespace {

constexpr std::array<std::string_view, 3> kStateNames = {"joining", "ready", "parted"};
constexpr std::string_view kNamePrefix = "pgmesh_";
constexpr size_t kHexDigits = 16;

}  // namespace

std::string_view name(State state) {
    return kStateNames[static_cast<size_t>(state)];
}

std::optional<State> parse_state(std::string_view text) {
    for (size_t i = 0; i < kStateNames.size(); i++)
        if (kStateNames[i] == text) return static_cast<State>(i);
    return std::nullopt;
}

std::string hex_id(uint64_t id) {
    constexpr char kDigits[] = "0123456789abcdef";
    std::string out(kHexDigits, '0');
    for (size_t i = kHexDigits; i-- > 0; id >>= 4) out[i] = kDigits[id & 0xf];
    return out;
}

std::string slot_name(uint64_t provider, uint64_t subscriber) {
    return std::string(kNamePrefix) + hex_id(provider) + "_" + hex_id(subscriber);
}

std::string relay_slot_name(uint64_t node) {
    return std::string(kNamePrefix) + "relay_" + hex_id(node);
}

std::string origin_name(uint64_t provider) {
    return std::string(kNamePrefix) + hex_id(provider);
}

std::optional<uint64_t> node_of_origin(std::string_view origin) {
    if (origin.size() != kNamePrefix.size() + kHexDigits || !origin.starts_with(kNamePrefix))
        return std::nullopt;
    std::string_view digits = origin.substr(kNamePrefix.size());
    // from_chars would also take upper-case digits, which origin_name never
    // writes: such a name is some other origin.
    for (char c : digits)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
    uint64_t id = 0;
    std::from_chars(digits.data(), digits.data() + digits.size(), id, 16);
    return id;
}

}  // namespace pgmesh::node
