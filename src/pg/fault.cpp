#include "fault.hpp"

#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "postgres_headers.hpp"

namespace pgmesh::fault {

char *points = nullptr;

namespace {

// Every name that may be armed. join_<step> names come from join.cpp's
// steps: keep the two lists in step.
constexpr std::string_view kPoints[] = {
    "skip_keyless_check",
    "apply_before_commit",
    "apply_feedback",
    "join_announce_joining",
    "join_create_remote_slots",
    "join_wait_for_target",
    "join_create_target_slot",
    "join_read_snapshot",
    "join_copy_data",
    "join_create_local_slots",
    "join_write_catalog",
    "join_announce_ready",
    "apply_lock_message",
    "apply_begin",
    "forward_commit",
    "apply_connect",
    "manager_round",
};

enum class Kind { kHold, kError, kSleep };

struct Action {
    Kind kind = Kind::kHold;
    long sleep_ms = 0;
};

std::string_view trim(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

std::optional<Action> parse_action(std::string_view text) {
    if (text.empty() || text == "hold") return Action{Kind::kHold, 0};
    if (text == "error") return Action{Kind::kError, 0};
    constexpr std::string_view kSleep = "sleep:";
    if (!text.starts_with(kSleep)) return std::nullopt;
    std::string_view digits = text.substr(kSleep.size());
    long ms = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ms);
    if (ec != std::errc() || end != digits.data() + digits.size() || ms < 0 || ms > 3600000)
        return std::nullopt;
    return Action{Kind::kSleep, ms};
}

// Calls f(name, action text) for each entry of the list; stops when f
// returns false.
template <typename F>
void for_each_entry(std::string_view list, F &&f) {
    while (!list.empty()) {
        size_t comma = list.find(',');
        std::string_view item = trim(list.substr(0, comma));
        size_t eq = item.find('=');
        std::string_view name = trim(item.substr(0, eq));
        std::string_view action = eq == std::string_view::npos ? "" : trim(item.substr(eq + 1));
        if (!item.empty() && !f(name, action)) return;
        if (comma == std::string_view::npos) return;
        list.remove_prefix(comma + 1);
    }
}

// An entry's point name, and the peer it is limited to (empty: none).
std::pair<std::string_view, std::string_view> split_peer(std::string_view entry) {
    size_t at = entry.find('@');
    if (at == std::string_view::npos) return {entry, {}};
    return {trim(entry.substr(0, at)), trim(entry.substr(at + 1))};
}

// The peer this process's apply worker streams from; empty elsewhere.
char worker_peer[NAMEDATALEN];

// Waits while another session holds pg_advisory_lock(hashtext(lock_name)),
// and says so in the log only then: a point armed under load passes
// thousands of times unheld.
void wait_while_held(const char *point_name, const char *lock_name) {
    Datum key = Int64GetDatum(DatumGetInt32(
        DirectFunctionCall1Coll(hashtext, DEFAULT_COLLATION_OID, CStringGetTextDatum(lock_name))));
    if (!DatumGetBool(DirectFunctionCall1(pg_try_advisory_lock_int8, key))) {
        ereport(LOG, (errmsg("pgmesh fault point \"%s\" holds", point_name)));
        DirectFunctionCall1(pg_advisory_lock_int8, key);
    }
    DirectFunctionCall1(pg_advisory_unlock_int8, key);
}

std::optional<Action> armed_action(const char *name) {
    if (!points || !*points) return std::nullopt;
    std::optional<Action> found;
    for_each_entry(points, [&](std::string_view entry, std::string_view action) {
        auto [point_name, peer] = split_peer(entry);
        if (point_name != name || (!peer.empty() && peer != worker_peer)) return true;
        found = parse_action(action);
        return false;
    });
    return found;
}

}  // namespace

bool check_points(char **newval, void **, GucSource) {
    if (!*newval) return true;
    bool ok = true;
    for_each_entry(*newval, [&](std::string_view entry, std::string_view action) {
        auto [name, peer] = split_peer(entry);
        if (entry.find('@') != std::string_view::npos && peer.empty()) {
            GUC_check_errdetail("Fault point \"%.*s\": no node name after \"@\".",
                                static_cast<int>(name.size()), name.data());
            ok = false;
            return ok;
        }
        bool known = false;
        for (std::string_view p : kPoints) known |= p == name;
        if (!known) {
            GUC_check_errdetail("Unknown fault point \"%.*s\".", static_cast<int>(name.size()),
                                name.data());
            ok = false;
        } else if (!parse_action(action)) {
            GUC_check_errdetail(
                "Fault point \"%.*s\": action \"%.*s\" is not hold, error or "
                "sleep:<milliseconds>.",
                static_cast<int>(name.size()), name.data(), static_cast<int>(action.size()),
                action.data());
            ok = false;
        }
        return ok;
    });
    return ok;
}

void set_worker_peer(const char *peer_name) {
    strlcpy(worker_peer, peer_name, sizeof worker_peer);
}

bool armed(const char *name) {
    return armed_action(name).has_value();
}

void point(const char *name) {
    std::optional<Action> action = armed_action(name);
    if (!action) return;
    switch (action->kind) {
        case Kind::kError:
            ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
                            errmsg("pgmesh fault point \"%s\" fired", name)));
            break;
        case Kind::kSleep: {
            ereport(LOG,
                    (errmsg("pgmesh fault point \"%s\" sleeps %ld ms", name, action->sleep_ms)));
            TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), action->sleep_ms);
            for (TimestampTz now = GetCurrentTimestamp(); now < end; now = GetCurrentTimestamp()) {
                long left = static_cast<long>((end - now) / 1000) + 1;
                int rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left,
                                   PG_WAIT_EXTENSION);
                if (rc & WL_LATCH_SET) ResetLatch(MyLatch);
                CHECK_FOR_INTERRUPTS();
            }
            break;
        }
        case Kind::kHold: {
            // The point's lock, then (in an apply worker) the lock of the
            // point for this worker's peer: a test may hold one stream
            // without arming the point for that peer alone.
            wait_while_held(name, psprintf("pgmesh fault %s", name));
            if (worker_peer[0] != '\0')
                wait_while_held(name, psprintf("pgmesh fault %s@%s", name, worker_peer));
            break;
        }
    }
}

}  // namespace pgmesh::fault
