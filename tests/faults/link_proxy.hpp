// TCP proxies between the nodes of a fault run, one per ordered pair.
//
// This kernel has no netem, so the fault harness puts a proxy on every link:
// node A reaches node B only through the proxy (A, B), which listens on
// 127.0.0.1 and forwards to B's port. The harness then chooses, per link and
// direction, what the network does:
//
// - forward: bytes pass as they come (optionally delayed);
// - block: the bytes that one node sends to another stop in the proxy and are
//   neither delivered nor refused, as in a partition where packets are
//   silently dropped. The proxy keeps reading up to a cap and then stops, so
//   the sender's socket buffer fills as it would with an unacknowledging
//   peer. Unblocking delivers what was held, in order, as TCP's retransmits
//   would after a short partition;
// - reset: every open connection of a link is closed with a RST, as after a
//   long partition where a middlebox or the peer dropped the connection;
// - delay: every chunk is delivered that much later than it came.
//
// "sender -> receiver blocked" concerns every connection between the two, in
// both proxies: in proxy (A, B) the client-to-server bytes are A's, in proxy
// (B, A) the server-to-client bytes are A's. One blocked direction is a
// one-way partition, both directions a two-way one.
//
// All sockets are served by one thread with poll(). Loopback only.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

namespace pgmesh::faults {

class LinkProxies {
public:
    // node number -> the port its server listens on. Opens one listening port
    // per ordered pair of distinct nodes (chosen by the kernel) and starts
    // serving.
    explicit LinkProxies(const std::map<int, int> &node_ports);
    ~LinkProxies();
    LinkProxies(const LinkProxies &) = delete;
    LinkProxies &operator=(const LinkProxies &) = delete;

    // The port on which node `from` reaches node `to`.
    int port(int from, int to) const;

    void set_blocked(int sender, int receiver, bool blocked);
    // Delay for both directions of the connections of link (from, to).
    void set_delay(int from, int to, std::chrono::milliseconds delay);
    // RST on both ends of every open connection of link (from, to).
    void reset(int from, int to);
    // Nothing blocked, no delay anywhere (held bytes are delivered).
    void heal();

    // Connections accepted so far, and those reset by reset().
    uint64_t connections_accepted() const { return accepted_; }
    uint64_t connections_reset() const { return reset_count_; }

private:
    struct Impl;
    void serve();

    std::unique_ptr<Impl> impl_;
    std::map<std::pair<int, int>, int> ports_;
    std::atomic<bool> stop_{false};
    std::atomic<uint64_t> accepted_{0};
    std::atomic<uint64_t> reset_count_{0};
    std::thread thread_;
};

}  // namespace pgmesh::faults
