// The one dispatcher of pgmesh's logical messages on the receiving side:
// each subsystem that sends messages (DDL replication, the global lock)
// adds a handler for its prefix, and apply hands every message it receives
// to dispatch(). Pure C++.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "protocol.hpp"

namespace pgmesh::messages {

class Router {
public:
    using Handler = std::function<void(const proto::Message &)>;

    // Handles the messages whose prefix is exactly `prefix`, which must start
    // with proto::kMessagePrefix. Throws std::invalid_argument for another
    // prefix, an empty handler or a prefix already taken.
    void add(std::string prefix, Handler handler);

    // Calls the handler of the message's prefix; false when there is none.
    // Nodes speak the same protocol version (proto_version), which fixes
    // the set of prefixes: a message no handler takes was not written by
    // pgmesh but by some session's pg_logical_emit_message, which every role
    // may call, and it is not acted on.
    bool dispatch(const proto::Message &message) const;

private:
    std::map<std::string, Handler, std::less<>> handlers_;
};

}  // namespace pgmesh::messages
