// The fault harness's own parts, without servers: the schedule is a pure
// function of its seed, and the link proxies forward, hold, reset and delay
// as they claim (against an echo server on 127.0.0.1).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>

#include "link_proxy.hpp"
#include "schedule.hpp"

namespace pgmesh::faults {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> described(const std::vector<Fault> &schedule) {
    std::vector<std::string> lines;
    for (const Fault &f : schedule) lines.push_back(f.describe());
    return lines;
}

TEST(FaultSchedule, TheSameSeedGivesTheSameSchedule) {
    EXPECT_EQ(described(make_schedule(42, 3, 10min)), described(make_schedule(42, 3, 10min)));
    EXPECT_NE(described(make_schedule(42, 3, 10min)), described(make_schedule(43, 3, 10min)));
}

TEST(FaultSchedule, FaultsFollowEachOtherWithinTheRunAndCoverEveryKind) {
    for (int nodes : {3, 5}) {
        const std::vector<Fault> schedule = make_schedule(7, nodes, 30min);
        std::set<FaultKind> kinds;
        std::chrono::milliseconds free_from{0};
        bool one_way = false;
        bool two_way = false;
        for (const Fault &f : schedule) {
            kinds.insert(f.kind);
            EXPECT_GE(f.at, free_from) << f.describe();
            free_from = f.at + f.duration;
            EXPECT_LE(free_from, 30min) << f.describe();
            if (f.kind == FaultKind::kPartition) {
                EXPECT_FALSE(f.blocked.empty());
                (f.one_way ? one_way : two_way) = true;
            }
            for (int n : {f.node, f.peer}) EXPECT_LE(n, nodes) << f.describe();
            if (f.peer != 0) {
                EXPECT_NE(f.node, f.peer) << f.describe();
            }
            for (auto [a, b] : f.blocked) {
                EXPECT_NE(a, b);
                EXPECT_TRUE(a >= 1 && a <= nodes && b >= 1 && b <= nodes) << f.describe();
            }
        }
        EXPECT_EQ(kinds.size(), kAllFaultKinds.size());
        EXPECT_TRUE(one_way && two_way);
    }
}

sockaddr_in loopback(int port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

// A TCP socket bound to a kernel-chosen port on 127.0.0.1; sets *port.
int bound_socket(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(0);
    bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
    *port = ntohs(a.sin_port);
    return fd;
}

// An echo server on a kernel-chosen port.
class Echo {
public:
    Echo() {
        fd_ = bound_socket(&port_);
        listen(fd_, 8);
        thread_ = std::thread([this] {
            while (!stop_) {
                pollfd p{fd_, POLLIN, 0};
                if (poll(&p, 1, 50) <= 0) continue;
                int c = accept(fd_, nullptr, nullptr);
                if (c < 0) continue;
                std::thread([c] {
                    char buffer[4096];
                    for (ssize_t n; (n = read(c, buffer, sizeof buffer)) > 0;) {
                        if (write(c, buffer, static_cast<size_t>(n)) != n) break;
                    }
                    close(c);
                }).detach();
            }
        });
    }
    ~Echo() {
        stop_ = true;
        thread_.join();
        close(fd_);
    }
    int port() const { return port_; }

private:
    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = loopback(port);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) != 0) ADD_FAILURE() << "connect";
    return fd;
}

// What arrives within `wait`: the text, "" for nothing, "<reset>" or "<eof>".
std::string receive(int fd, std::chrono::milliseconds wait) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(wait.count())) <= 0) return "";
    char buffer[4096];
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0) return errno == ECONNRESET ? "<reset>" : "<error>";
    if (n == 0) return "<eof>";
    return std::string(buffer, static_cast<size_t>(n));
}

TEST(LinkProxies, ForwardHoldResetAndDelay) {
    Echo echo;
    // Node 1 is the client side; node 2 "listens" on the echo port.
    LinkProxies proxies({{1, 1}, {2, echo.port()}});
    int fd = connect_to(proxies.port(1, 2));
    ASSERT_EQ(send(fd, "ping", 4, 0), 4);
    EXPECT_EQ(receive(fd, 2s), "ping");

    // 2 -> 1 blocked: the echo is held, not lost, and comes once unblocked.
    proxies.set_blocked(2, 1, true);
    ASSERT_EQ(send(fd, "held", 4, 0), 4);
    EXPECT_EQ(receive(fd, 500ms), "");
    proxies.set_blocked(2, 1, false);
    EXPECT_EQ(receive(fd, 2s), "held");

    // 1 -> 2 blocked (one way): nothing reaches the server, so no echo.
    proxies.set_blocked(1, 2, true);
    ASSERT_EQ(send(fd, "out", 3, 0), 3);
    EXPECT_EQ(receive(fd, 500ms), "");
    proxies.heal();
    EXPECT_EQ(receive(fd, 2s), "out");

    // Delay: the echo takes at least twice the delay (both ways).
    proxies.set_delay(1, 2, 150ms);
    const auto sent_at = std::chrono::steady_clock::now();
    ASSERT_EQ(send(fd, "slow", 4, 0), 4);
    EXPECT_EQ(receive(fd, 3s), "slow");
    EXPECT_GE(std::chrono::steady_clock::now() - sent_at, 300ms);
    proxies.heal();

    // Reset: the client sees a RST, and a new connection works.
    proxies.reset(1, 2);
    EXPECT_EQ(receive(fd, 2s), "<reset>");
    close(fd);
    EXPECT_EQ(proxies.connections_reset(), 1u);
    fd = connect_to(proxies.port(1, 2));
    ASSERT_EQ(send(fd, "again", 5, 0), 5);
    EXPECT_EQ(receive(fd, 2s), "again");
    close(fd);
    EXPECT_EQ(proxies.connections_accepted(), 2u);
}

TEST(LinkProxies, AConnectionToADownNodeIsRefused) {
    int closed_port = 0;
    close(bound_socket(&closed_port));  // nothing listens there now
    LinkProxies proxies({{1, 1}, {2, closed_port}});
    int client = connect_to(proxies.port(1, 2));
    const std::string got = receive(client, 2s);
    EXPECT_TRUE(got == "<reset>" || got == "<eof>") << got;
    close(client);
}

}  // namespace
}  // namespace pgmesh::faults
