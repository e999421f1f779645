// The boundary between PostgreSQL's error handling (elog/ereport longjmp) and
// C++ exceptions. Neither may cross the other:
//
//  - pg::call(f): C++ calling into PostgreSQL. A PostgreSQL ERROR raised inside
//    f is caught at a sigsetjmp here and rethrown as pg::Error. f itself and
//    everything it calls must keep no object with a destructor on the stack,
//    because the longjmp skips those frames.
//  - pg::entry(f): PostgreSQL calling into C++ (SQL functions, callbacks,
//    worker mains). Any exception is caught, every C++ frame of f unwinds,
//    and only then is the error raised as ereport(ERROR) with its SQLSTATE,
//    detail and hint intact.
//
// The rule after a caught error: when pg::call has turned a PostgreSQL ERROR
// into pg::Error, the current transaction is in an aborted state (the error's
// cleanup has not run: locks, buffers, snapshots, SPI connections are still
// held). Catching the exception does not repair that. Before PostgreSQL is
// called again, the transaction or the subtransaction around the failed work
// must be rolled back (AbortCurrentTransaction,
// RollbackAndReleaseCurrentSubTransaction), or the error rethrown so that
// PostgreSQL aborts it. Code that must clean up after a failure and still
// call PostgreSQL runs its work in a subtransaction (join.cpp).
#pragma once

#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "postgres_headers.hpp"

namespace pgmesh::pg {

// A PostgreSQL error carried through C++ frames.
class Error : public std::exception {
public:
    Error(int sqlerrcode, std::string message, std::string detail = {}, std::string hint = {})
        : sqlerrcode_(sqlerrcode),
          message_(std::move(message)),
          detail_(std::move(detail)),
          hint_(std::move(hint)) {}

    const char *what() const noexcept override { return message_.c_str(); }
    int sqlerrcode() const { return sqlerrcode_; }
    const std::string &message() const { return message_; }
    const std::string &detail() const { return detail_; }
    const std::string &hint() const { return hint_; }
    // Context lines PostgreSQL attached, kept for the re-raise.
    std::string context;

private:
    int sqlerrcode_;
    std::string message_;
    std::string detail_;
    std::string hint_;
};

// Takes the error PostgreSQL is handling out of its error state (flushing
// it) and throws it as pg::Error. Called from a PG_CATCH block only.
[[noreturn]] void throw_current_error(MemoryContext caller_context);

// Runs f with PostgreSQL's error handling pointed at this frame. A C++
// exception thrown by f is caught inside the PG_TRY region too (it must not
// leave with PG_exception_stack pointing here) and rethrown after it.
template <typename F>
void call_void(F &f) {
    MemoryContext caller_context = CurrentMemoryContext;
    volatile bool failed = false;
    std::exception_ptr cxx_error;
    std::exception_ptr *cxx_error_out = &cxx_error;
    PG_TRY();
    {
        try {
            f();
        } catch (...) {
            *cxx_error_out = std::current_exception();
        }
    }
    PG_CATCH();
    { failed = true; }
    PG_END_TRY();
    if (failed) throw_current_error(caller_context);
    if (cxx_error) std::rethrow_exception(cxx_error);
}

template <typename F>
auto call(F &&f) -> decltype(f()) {
    using Result = decltype(f());
    if constexpr (std::is_void_v<Result>) {
        call_void(f);
    } else {
        static_assert(std::is_trivially_destructible_v<Result>,
                      "pg::call results must be plain values");
        Result result{};
        Result *out = &result;  // written through memory: survives the longjmp
        auto store = [&] { *out = f(); };
        call_void(store);
        return result;
    }
}

// An error taken out of C++ and ready to be raised in PostgreSQL: all text is
// palloc'd, so no C++ object needs to outlive the catch.
struct PendingError {
    int sqlerrcode;
    const char *message;
    const char *detail;
    const char *hint;
    const char *context;
};

PendingError pending_from(const Error &e);
PendingError pending_from(const std::exception &e);
[[noreturn]] void raise(const PendingError &e);

template <typename F>
auto entry(F &&f) -> decltype(f()) {
    PendingError pending{};
    try {
        return f();
    } catch (const Error &e) {
        pending = pending_from(e);
    } catch (const std::exception &e) {
        pending = pending_from(e);
    }
    // Every C++ frame under f is gone now; raising longjmps over none.
    raise(pending);
}

// Runs f in a transaction of its own (none may be open). A PostgreSQL error
// in it is rolled back and returned; nullopt when f committed. For the
// rounds of background workers, where one failed step is tried again later
// and must not end the process.
template <typename F>
std::optional<Error> in_own_transaction(F &&f) {
    try {
        call([] {
            SetCurrentStatementStartTimestamp();
            StartTransactionCommand();
        });
        f();
        call([] { CommitTransactionCommand(); });
        return std::nullopt;
    } catch (const Error &e) {
        call([] {
            FlushErrorState();
            AbortCurrentTransaction();
        });
        return e;
    }
}

// Runs f in the open transaction, or, when none is open, in one of its own
// that commits after it (and is rolled back if f throws).
template <typename F>
void in_transaction(F &&f) {
    const bool own = !call([] { return IsTransactionState(); });
    if (!own) {
        f();
        return;
    }
    call([] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
    });
    try {
        f();
    } catch (...) {
        call([] { AbortCurrentTransaction(); });
        throw;
    }
    call([] { CommitTransactionCommand(); });
}

// Sleeps until the latch is set or timeout_ms pass, then serves interrupts
// (which may throw pg::Error, e.g. on cancel).
void wait_latch(long timeout_ms);
// CHECK_FOR_INTERRUPTS, and in background workers a pending configuration
// reload (SIGHUP).
void serve_interrupts();

}  // namespace pgmesh::pg
