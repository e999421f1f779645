#include "guard.hpp"

namespace pgmesh::pg {

namespace {
std::string text_or_empty(const char *s) {
    return s ? std::string(s) : std::string();
}
const char *palloc_copy(const std::string &s) {
    return s.empty() ? nullptr : pstrdup(s.c_str());
}
}  // namespace

void throw_current_error(MemoryContext caller_context) {
    MemoryContextSwitchTo(caller_context);
    ErrorData *edata = CopyErrorData();
    FlushErrorState();
    Error error(edata->sqlerrcode, text_or_empty(edata->message), text_or_empty(edata->detail),
                text_or_empty(edata->hint));
    error.context = text_or_empty(edata->context);
    FreeErrorData(edata);
    throw error;
}

PendingError pending_from(const Error &e) {
    return PendingError{e.sqlerrcode(), pstrdup(e.message().c_str()), palloc_copy(e.detail()),
                        palloc_copy(e.hint()), palloc_copy(e.context)};
}

PendingError pending_from(const std::exception &e) {
    return PendingError{ERRCODE_INTERNAL_ERROR, psprintf("pgmesh internal error: %s", e.what()),
                        nullptr, nullptr, nullptr};
}

void raise(const PendingError &e) {
    ereport(ERROR,
            (errcode(e.sqlerrcode), errmsg_internal("%s", e.message),
             e.detail ? errdetail_internal("%s", e.detail) : 0, e.hint ? errhint("%s", e.hint) : 0,
             e.context ? errcontext("%s", e.context) : 0));
    pg_unreachable();
}

void wait_latch(long timeout_ms) {
    call([&] {
        int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, timeout_ms,
                           PG_WAIT_EXTENSION);
        if (rc & WL_LATCH_SET) ResetLatch(MyLatch);
    });
    serve_interrupts();
}

void serve_interrupts() {
    call([] {
        CHECK_FOR_INTERRUPTS();
        // Backends reload settings when idle; our workers never are.
        if (IsBackgroundWorker && ConfigReloadPending) {
            ConfigReloadPending = false;
            ProcessConfigFile(PGC_SIGHUP);
        }
    });
}

}  // namespace pgmesh::pg
