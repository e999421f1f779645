// The one dispatcher of pgmesh's logical messages on the receiving side:
// each subsystem that sends messages (DDL replication, the global lock)
// adds a handler for its prefix, and apply hands every message it receives
// to dispatch(). Pure C++.
#pragma once

#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

#include "protocol.hpp"

namespace pgmesh::messages {

// A message whose prefix no handler takes: sent by a node that knows more
// than this one (another pgmesh version).
class UnknownMessage : public std::runtime_error {
public:
    explicit UnknownMessage(std::string prefix)
        : std::runtime_error("no handler for pgmesh messages with prefix \"" + prefix + "\""),
          prefix_(std::move(prefix)) {}
    const std::string &prefix() const { return prefix_; }

private:
    std::string prefix_;
};

class Router {
public:
    using Handler = std::function<void(const proto::Message &)>;

    // Handles the messages whose prefix is exactly `prefix`, which must start
    // with proto::kMessagePrefix. Throws std::invalid_argument for another
    // prefix, an empty handler or a prefix already taken.
    void add(std::string prefix, Handler handler);

    // Calls the handler of the message's prefix. Throws UnknownMessage when
    // there is none: the sender meant the message to be acted on, and
    // dropping it could leave the nodes different without a word.
    void dispatch(const proto::Message &message) const;

private:
    std::map<std::string, Handler, std::less<>> handlers_;
};

}  // namespace pgmesh::messages
