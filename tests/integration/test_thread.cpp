#include "test_thread.hpp"

#include <sys/socket.h>

#include <exception>
#include <optional>
#include <utility>

namespace pgmesh::test {

namespace {

struct CancelDeleter {
    void operator()(PGcancel *cancel) const noexcept { PQfreeCancel(cancel); }
};

}  // namespace

// A session of the work, with what another thread needs to interrupt it:
// libpq's cancel handle (PQcancel is safe from any thread) and the socket.
struct TestThread::Session {
    explicit Session(pq::Connection &c)
        : connection(&c), cancel(PQgetCancel(c.native())), socket(PQsocket(c.native())) {}

    std::optional<pq::Connection> owned;
    pq::Connection *connection;
    std::unique_ptr<PGcancel, CancelDeleter> cancel;
    int socket;
};

TestThread::TestThread(Work work, std::chrono::milliseconds end_grace,
                       std::chrono::milliseconds cancel_grace)
    : end_grace_(end_grace), cancel_grace_(cancel_grace) {
    thread_ = std::thread([this, work = std::move(work)] {
        std::string error;
        try {
            work(*this);
        } catch (const pq::Error &e) {
            error = e.sqlstate() + " " + e.what();
        } catch (const std::exception &e) {
            error = e.what();
        }
        std::lock_guard lock(mutex_);
        error_ = std::move(error);
        finished_ = true;
        finished_changed_.notify_all();
    });
}

TestThread::~TestThread() {
    stop();
}

pq::Connection &TestThread::session(pq::Connection connection) {
    std::lock_guard lock(mutex_);
    Session &s = sessions_.emplace_back(connection);
    s.owned.emplace(std::move(connection));
    s.connection = &*s.owned;
    return *s.connection;
}

pq::Connection &TestThread::borrow(pq::Connection &connection) {
    std::lock_guard lock(mutex_);
    return *sessions_.emplace_back(connection).connection;
}

std::string TestThread::join() {
    if (thread_.joinable()) thread_.join();
    std::lock_guard lock(mutex_);
    return error_;
}

std::string TestThread::stop() {
    stop_requested_ = true;
    // A loop that looks at stopping() ends by itself; a statement that
    // waits is canceled, and a session that answers no cancel is cut off.
    if (!wait_finished(end_grace_)) {
        interrupt_sessions(false);
        if (!wait_finished(cancel_grace_)) interrupt_sessions(true);
    }
    return join();
}

bool TestThread::wait_finished(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return finished_changed_.wait_for(lock, timeout, [&] { return finished_.load(); });
}

void TestThread::interrupt_sessions(bool cut_off) {
    std::lock_guard lock(mutex_);
    for (Session &s : sessions_) {
        if (cut_off) {
            // The work's next read fails at once ("server closed the
            // connection"), whatever the server does.
            if (s.socket >= 0) ::shutdown(s.socket, SHUT_RDWR);
        } else if (s.cancel) {
            char message[256];
            PQcancel(s.cancel.get(), message, sizeof message);
        }
    }
}

}  // namespace pgmesh::test
