// What identifies a node and its streams: its state in pgmesh.node, and the
// names derived from node ids (slots, replication origins). Pure C++.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pgmesh::node {

// pgmesh.node.state. A joining node is announced but not streamed from; a
// ready one streams both ways; a parted one is gone for good.
enum class State { kJoining, kReady, kParted };

// The catalog's text for each state ("joining", "ready", "parted").
std::string_view name(State state);
// The state named by `text`, or nullopt for anything else.
std::optional<State> parse_state(std::string_view text);

// A node id as 16 lower-case hex digits.
std::string hex_id(uint64_t id);
// The slot on `provider` that `subscriber` streams from.
std::string slot_name(uint64_t provider, uint64_t subscriber);
// The relay slot on `node` (relay.hpp): it keeps the WAL of what `node`
// applied from its peers until every other member has those changes too,
// so that `node` can forward them when their origin dies.
std::string relay_slot_name(uint64_t node);
// The replication origin, on any node, of the changes that came from
// `provider`.
std::string origin_name(uint64_t provider);
// The node an origin named by origin_name() stands for; nullopt for any
// other origin (the join's copy, a foreign tool's, a malformed name).
std::optional<uint64_t> node_of_origin(std::string_view origin);

// The origin under which a joining node writes the copy it restored: those
// rows are the group's, not changes made on the new node.
inline constexpr std::string_view kCopyOrigin = "pgmesh_copy";

}  // namespace pgmesh::node
