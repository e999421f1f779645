#include "message_router.hpp"

#include <stdexcept>
#include <utility>

#include "cpp_only.hpp"

namespace pgmesh::messages {

void Router::add(std::string prefix, Handler handler) {
    if (!prefix.starts_with(proto::kMessagePrefix))
        throw std::invalid_argument("message prefix \"" + prefix + "\" does not start with \"" +
                                    std::string(proto::kMessagePrefix) + "\"");
    if (!handler) throw std::invalid_argument("no handler given for \"" + prefix + "\"");
    auto [it, added] = handlers_.emplace(std::move(prefix), std::move(handler));
    if (!added) throw std::invalid_argument("message prefix \"" + it->first + "\" is taken");
}

bool Router::dispatch(const proto::Message &message) const {
    auto it = handlers_.find(message.prefix);
    if (it == handlers_.end()) return false;
    it->second(message);
    return true;
}

}  // namespace pgmesh::messages
