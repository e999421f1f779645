#include "link_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace pgmesh::faults {

namespace {

using Clock = std::chrono::steady_clock;
using Link = std::pair<int, int>;  // (from, to): from connects to to

// Held per direction before the proxy stops reading from the sender.
constexpr size_t kHeldBytesCap = 4 << 20;
constexpr size_t kReadSize = 64 << 10;
constexpr std::chrono::milliseconds kIdlePoll{50};

[[noreturn]] void fail(const char *what) {
    throw std::system_error(errno, std::generic_category(), what);
}

sockaddr_in loopback(int port) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return address;
}

// Closing with SO_LINGER 0 sends a RST instead of a FIN.
void close_with_reset(int fd) {
    if (fd < 0) return;
    linger hard{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    close(fd);
}

struct Chunk {
    Clock::time_point due;
    std::string bytes;
    enum class End { kNone, kFin, kReset } end = End::kNone;
};

struct Direction {
    int sender = 0;
    int receiver = 0;
    std::deque<Chunk> queue;
    size_t queued_bytes = 0;
    bool source_done = false;  // EOF or reset read and queued
    bool finished = false;     // that end delivered

    bool wants_input() const { return !source_done && queued_bytes < kHeldBytesCap; }
};

struct Connection {
    Link link;
    int client_fd = -1;
    int server_fd = -1;
    bool connecting = true;
    bool dead = false;
    Direction to_server;  // the client's bytes
    Direction to_client;  // the server's bytes

    void reset() {
        close_with_reset(client_fd);
        close_with_reset(server_fd);
        client_fd = server_fd = -1;
        dead = true;
    }
};

struct Listener {
    Link link;
    int fd = -1;
};

}  // namespace

struct LinkProxies::Impl {
    std::map<int, int> node_ports;
    std::vector<Listener> listeners;
    std::list<Connection> connections;
    int wake_fd = -1;

    std::mutex mutex;        // guards the three below
    std::set<Link> blocked;  // (sender, receiver)
    std::map<Link, std::chrono::milliseconds> delays;
    std::set<Link> resets_pending;

    void wake() const {
        uint64_t one = 1;
        ssize_t ignored = write(wake_fd, &one, sizeof one);
        (void)ignored;
    }
};

LinkProxies::LinkProxies(const std::map<int, int> &node_ports) : impl_(std::make_unique<Impl>()) {
    impl_->node_ports = node_ports;
    impl_->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (impl_->wake_fd < 0) fail("eventfd");
    for (const auto &[from, from_port] : node_ports) {
        for (const auto &[to, to_port] : node_ports) {
            if (from == to) continue;
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) fail("socket");
            int on = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
            sockaddr_in address = loopback(0);
            if (bind(fd, reinterpret_cast<sockaddr *>(&address), sizeof address) != 0 ||
                listen(fd, 64) != 0)
                fail("bind/listen");
            socklen_t length = sizeof address;
            getsockname(fd, reinterpret_cast<sockaddr *>(&address), &length);
            ports_[{from, to}] = ntohs(address.sin_port);
            impl_->listeners.push_back(Listener{{from, to}, fd});
        }
    }
    thread_ = std::thread([this] { serve(); });
}

LinkProxies::~LinkProxies() {
    stop_ = true;
    impl_->wake();
    if (thread_.joinable()) thread_.join();
    for (Connection &c : impl_->connections) c.reset();
    for (Listener &l : impl_->listeners) close(l.fd);
    close(impl_->wake_fd);
}

int LinkProxies::port(int from, int to) const {
    auto it = ports_.find({from, to});
    if (it == ports_.end())
        throw std::invalid_argument("no proxy from node " + std::to_string(from) + " to node " +
                                    std::to_string(to));
    return it->second;
}

void LinkProxies::set_blocked(int sender, int receiver, bool blocked) {
    std::lock_guard lock(impl_->mutex);
    if (blocked)
        impl_->blocked.insert({sender, receiver});
    else
        impl_->blocked.erase({sender, receiver});
    impl_->wake();
}

void LinkProxies::set_delay(int from, int to, std::chrono::milliseconds delay) {
    std::lock_guard lock(impl_->mutex);
    impl_->delays[{from, to}] = delay;
    impl_->wake();
}

void LinkProxies::reset(int from, int to) {
    std::lock_guard lock(impl_->mutex);
    impl_->resets_pending.insert({from, to});
    impl_->wake();
}

void LinkProxies::heal() {
    std::lock_guard lock(impl_->mutex);
    impl_->blocked.clear();
    impl_->delays.clear();
    impl_->wake();
}

namespace {

// Reads what the source has into the direction's queue.
void read_into(int fd, Direction &d, std::chrono::milliseconds delay) {
    std::string buffer(kReadSize, '\0');
    while (d.wants_input()) {
        ssize_t n = recv(fd, buffer.data(), buffer.size(), 0);
        if (n > 0) {
            d.queue.push_back(
                Chunk{Clock::now() + delay, buffer.substr(0, static_cast<size_t>(n))});
            d.queued_bytes += static_cast<size_t>(n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        d.queue.push_back(
            Chunk{Clock::now() + delay, {}, n == 0 ? Chunk::End::kFin : Chunk::End::kReset});
        d.source_done = true;
        return;
    }
}

// Delivers the due chunks; returns false when the connection must be reset.
bool deliver(int fd, Direction &d, bool blocked) {
    if (blocked) return true;
    const Clock::time_point now = Clock::now();
    while (!d.queue.empty() && d.queue.front().due <= now) {
        Chunk &chunk = d.queue.front();
        if (chunk.end == Chunk::End::kReset) return false;
        if (chunk.end == Chunk::End::kFin) {
            shutdown(fd, SHUT_WR);
            d.finished = true;
            d.queue.pop_front();
            return true;
        }
        ssize_t n = send(fd, chunk.bytes.data(), chunk.bytes.size(), MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        d.queued_bytes -= static_cast<size_t>(n);
        if (static_cast<size_t>(n) < chunk.bytes.size()) {
            chunk.bytes.erase(0, static_cast<size_t>(n));
            return true;
        }
        d.queue.pop_front();
    }
    return true;
}

bool due_now(const Direction &d, bool blocked) {
    return !blocked && !d.queue.empty() && d.queue.front().due <= Clock::now();
}

}  // namespace

void LinkProxies::serve() {
    Impl &impl = *impl_;
    std::vector<pollfd> fds;
    while (!stop_) {
        std::set<Link> blocked;
        std::map<Link, std::chrono::milliseconds> delays;
        std::set<Link> resets;
        {
            std::lock_guard lock(impl.mutex);
            blocked = impl.blocked;
            delays = impl.delays;
            resets.swap(impl.resets_pending);
        }
        auto is_blocked = [&](const Direction &d) {
            return blocked.contains({d.sender, d.receiver});
        };
        auto delay_of = [&](const Link &link) {
            auto it = delays.find(link);
            return it == delays.end() ? std::chrono::milliseconds(0) : it->second;
        };
        for (Connection &c : impl.connections) {
            if (resets.contains(c.link)) {
                reset_count_++;  // counted first: the peer may look as soon as it sees the RST
                c.reset();
            }
        }
        impl.connections.remove_if([](const Connection &c) { return c.dead; });

        // Poll set: wake fd, listeners, then two entries per connection.
        fds.clear();
        fds.push_back({impl.wake_fd, POLLIN, 0});
        for (const Listener &l : impl.listeners) fds.push_back({l.fd, POLLIN, 0});
        Clock::time_point next_due = Clock::now() + kIdlePoll;
        for (const Connection &c : impl.connections) {
            short client_events = 0;
            short server_events = 0;
            if (c.connecting) {
                server_events = POLLOUT;
            } else {
                if (c.to_server.wants_input()) client_events |= POLLIN;
                if (c.to_client.wants_input()) server_events |= POLLIN;
                if (due_now(c.to_server, is_blocked(c.to_server))) server_events |= POLLOUT;
                if (due_now(c.to_client, is_blocked(c.to_client))) client_events |= POLLOUT;
                for (const Direction *d : {&c.to_server, &c.to_client}) {
                    if (!is_blocked(*d) && !d->queue.empty())
                        next_due = std::min(next_due, d->queue.front().due);
                }
            }
            // A negative fd is skipped by poll: nothing to wait for there.
            fds.push_back({client_events ? c.client_fd : -1, client_events, 0});
            fds.push_back({server_events ? c.server_fd : -1, server_events, 0});
        }
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_due - Clock::now());
        int timeout_ms = static_cast<int>(std::clamp<int64_t>(wait.count(), 0, kIdlePoll.count()));
        if (poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) fail("poll");

        if (fds[0].revents & POLLIN) {
            uint64_t count;
            ssize_t ignored = read(impl.wake_fd, &count, sizeof count);
            (void)ignored;
        }
        size_t index = 1;
        for (const Listener &l : impl.listeners) {
            if (fds[index++].revents & POLLIN) {
                for (;;) {
                    int client = accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (client < 0) break;
                    int server = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                    if (server < 0) {
                        close_with_reset(client);
                        continue;
                    }
                    int on = 1;
                    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
                    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
                    sockaddr_in target = loopback(impl.node_ports.at(l.link.second));
                    Connection c;
                    c.link = l.link;
                    c.client_fd = client;
                    c.server_fd = server;
                    c.to_server.sender = l.link.first;
                    c.to_server.receiver = l.link.second;
                    c.to_client.sender = l.link.second;
                    c.to_client.receiver = l.link.first;
                    if (connect(server, reinterpret_cast<sockaddr *>(&target), sizeof target) !=
                            0 &&
                        errno != EINPROGRESS) {
                        c.reset();  // the node is down: refuse as it would
                        continue;
                    }
                    accepted_++;
                    impl.connections.push_back(std::move(c));
                }
            }
        }
        // Connections accepted in this round have no poll entries yet.
        for (Connection &c : impl.connections) {
            if (index >= fds.size()) break;
            const short client_revents = fds[index].revents;
            const short server_revents = fds[index + 1].revents;
            index += 2;
            if (c.connecting) {
                if (server_revents == 0) continue;
                int error = 0;
                socklen_t length = sizeof error;
                getsockopt(c.server_fd, SOL_SOCKET, SO_ERROR, &error, &length);
                if (error != 0) {
                    c.reset();
                    continue;
                }
                c.connecting = false;
            }
            if (client_revents & (POLLIN | POLLHUP | POLLERR))
                read_into(c.client_fd, c.to_server, delay_of(c.link));
            if (server_revents & (POLLIN | POLLHUP | POLLERR))
                read_into(c.server_fd, c.to_client, delay_of(c.link));
            if (!deliver(c.server_fd, c.to_server, is_blocked(c.to_server)) ||
                !deliver(c.client_fd, c.to_client, is_blocked(c.to_client))) {
                c.reset();
                continue;
            }
            if (c.to_server.finished && c.to_client.finished) {
                close(c.client_fd);
                close(c.server_fd);
                c.client_fd = c.server_fd = -1;
                c.dead = true;
            }
        }
    }
}

}  // namespace pgmesh::faults
