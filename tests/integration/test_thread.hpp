// Threads of a test's own (a statement that blocks until the test lets it
// go, a writer loop), joined on every path.
//
// A std::thread that is still joinable when a test ends early (an ASSERT
// returned, a helper threw) calls std::terminate, which takes the whole
// test binary down and every later test with it. A TestThread instead
// stops its work when it goes out of scope: it asks the work to stop
// (stopping()); if the work has not ended 5 s later, it cancels the
// statement running on each session the work opened through session(),
// and 10 s after that cuts those sessions off (a server that is frozen or
// gone answers no cancel); then it joins.
//
//   TestThread part([&](TestThread &self) {
//       self.session(connect(1)).exec("SELECT pgmesh.part_node('node4')");
//   });
//   ASSERT_TRUE(wait_until(...));   // may return: part is stopped, not lost
//   EXPECT_EQ(part.join(), "");     // "" or "<SQLSTATE> <message>"
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "pq.hpp"

namespace pgmesh::test {

class TestThread {
public:
    using Work = std::function<void(TestThread &)>;

    // The graces are those of the comment above: how long stop() waits for
    // the work to end by itself, then after the cancel.
    explicit TestThread(Work work, std::chrono::milliseconds end_grace = std::chrono::seconds(5),
                        std::chrono::milliseconds cancel_grace = std::chrono::seconds(10));
    ~TestThread();
    TestThread(const TestThread &) = delete;
    TestThread &operator=(const TestThread &) = delete;

    // Hands a session to the thread: it lives as long as the TestThread,
    // and stop() can cancel what runs on it. Call from the work.
    pq::Connection &session(pq::Connection connection);
    // The same for a session the test keeps (and uses again once the work
    // is done): it must outlive the TestThread (be declared before it).
    pq::Connection &borrow(pq::Connection &connection);
    // True once stop() was called: loops end when it is.
    bool stopping() const { return stop_requested_; }
    bool finished() const { return finished_; }

    // Waits for the work to end on its own; returns "" or what it failed
    // with: "<SQLSTATE> <message>" for a SQL error, the text otherwise.
    std::string join();
    // Ends the work as the destructor does (see above), then returns as
    // join() does. A loop that looks at stopping() ends within 5 s
    // without being canceled.
    std::string stop();

private:
    struct Session;

    bool wait_finished(std::chrono::milliseconds timeout);
    void interrupt_sessions(bool cut_off);

    const std::chrono::milliseconds end_grace_;
    const std::chrono::milliseconds cancel_grace_;
    std::atomic<bool> stop_requested_{false};
    std::atomic<bool> finished_{false};
    std::mutex mutex_;
    std::condition_variable finished_changed_;
    std::list<Session> sessions_;
    std::string error_;
    std::thread thread_;  // last: it starts once every member above exists
};

}  // namespace pgmesh::test
