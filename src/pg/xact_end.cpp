#include "xact_end.hpp"

#include <stdexcept>

#include "guard.hpp"

namespace pgmesh::xact_end {

namespace {

// Per-backend queue, as PostgreSQL's own callbacks keep theirs.
constexpr int kMaxActions = 8;
void (*queued[kMaxActions])(bool) = {};
int nqueued = 0;

void on_transaction_event(XactEvent event, void *) {
    if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT) return;
    int n = nqueued;
    nqueued = 0;
    for (int i = 0; i < n; i++) queued[i](event == XACT_EVENT_COMMIT);
}

}  // namespace

void at_end(void (*action)(bool committed)) {
    static bool registered = false;
    if (!registered) {
        pg::call([] { RegisterXactCallback(on_transaction_event, nullptr); });
        registered = true;
    }
    for (int i = 0; i < nqueued; i++)
        if (queued[i] == action) return;
    if (nqueued == kMaxActions) throw std::logic_error("too many end-of-transaction actions");
    queued[nqueued++] = action;
}

}  // namespace pgmesh::xact_end
