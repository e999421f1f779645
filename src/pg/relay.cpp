#include "relay.hpp"

#include <string>
#include <utility>

#include "guard.hpp"
#include "node.hpp"
#include "node_admin.hpp"
#include "spi.hpp"
#include "walstream.hpp"

namespace pgmesh::relay {

namespace {

// How often the manager notes a checkpoint and asks the members; after a
// member could not be asked, it waits longer: each try may take the
// connection timeout, which the manager's other duties should not pay
// every round.
constexpr long kRoundIntervalMs = 5000;
constexpr long kUnreachableIntervalMs = 30000;
// Checkpoints kept while the slot cannot move; past this the newest is
// replaced, which only makes the slot move in coarser steps.
constexpr size_t kMaxCheckpoints = 128;

// covered_after of an origin whose transactions the relay slot does not
// hold at all.
constexpr uint64_t kNothing = UINT64_MAX;

constexpr const char *kOriginsQuery =
    "SELECT external_id, remote_lsn::text FROM pg_catalog.pg_replication_origin_status";

void add_position(Positions &out, const std::optional<std::string> &origin,
                  const std::optional<std::string> &lsn) {
    if (!origin || !lsn) return;
    std::optional<uint64_t> node = node::node_of_origin(*origin);
    std::optional<uint64_t> position = walstream::parse_lsn(*lsn);
    if (node && position) out[*node] = *position;
}

// Runs `f` in a transaction of its own; a PostgreSQL error is logged and
// rolled back (the next round tries again), and false returned.
template <typename F>
bool in_transaction(const char *what, F &&f) {
    std::optional<pg::Error> error = pg::in_own_transaction(f);
    if (!error) return true;
    pg::call([&] {
        ereport(LOG,
                (errmsg("pgmesh relay slot: could not %s: %s", what, error->message().c_str())));
    });
    return false;
}

// Raises covered_after of `origin` to `lsn` (never lowers it).
void record_coverage(uint64_t origin, uint64_t lsn) {
    spi::query(
        "INSERT INTO pgmesh.relay_coverage (origin_node_id, covered_after) VALUES ($1, $2) "
        "ON CONFLICT (origin_node_id) DO UPDATE SET covered_after = "
        "GREATEST(pgmesh.relay_coverage.covered_after, excluded.covered_after)",
        {spi::int8(static_cast<int64_t>(origin)), spi::lsn(lsn)});
}

// Waits until every commit whose record was being written a moment ago
// has also moved its origin. A commit writes its record, then moves the
// origin's position (RecordTransactionCommit); positions read between the
// two would leave out a transaction whose commit lies before the
// checkpoint's WAL position, and the slot could move past it while a
// member still lacks it. Both steps run with the commit's checkpoint delay
// flag set, so waiting as a checkpoint does for its redo pointer closes
// the gap.
void wait_for_commits_in_flight() {
    constexpr int kFlag = compat::kDelayCheckpointInCommit;
    int count = 0;
    VirtualTransactionId *committing =
        pg::call([&] { return GetVirtualXIDsDelayingChkpt(&count, kFlag); });
    while (count > 0 &&
           pg::call([&] { return HaveVirtualXIDsDelayingChkpt(committing, count, kFlag); }))
        pg::wait_latch(1);
    pg::call([&] { pfree(committing); });
}

bool member(const catalog::Node &n) {
    return !n.is_local && n.state != node::State::kParted;
}

}  // namespace

Positions applied_here() {
    Positions out;
    for (const spi::Row &row : spi::query(kOriginsQuery)) add_position(out, row.at(0), row.at(1));
    return out;
}

bool Keeper::ensure_slot(uint64_t local_id) {
    std::string slot = node::relay_slot_name(local_id);
    if (node_admin::local_slot(slot).exists) return true;
    // Whatever was applied before the slot's start is not in it: the
    // coverage starts at the positions read once it exists. Until then it
    // claims nothing, so that a part_node in between refuses instead of
    // trusting what the old slot held.
    bool emptied = in_transaction("record that it holds nothing", [&] {
        spi::query("UPDATE pgmesh.relay_coverage SET covered_after = $1", {spi::lsn(kNothing)});
        for (const auto &[origin, lsn] : applied_here()) record_coverage(origin, kNothing);
    });
    bool created =
        emptied && in_transaction("create it", [&] {
            spi::query("SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgmesh')",
                       {spi::text(slot)});
        });
    if (!created) return false;
    checkpoints_.clear();
    return in_transaction("record what it holds", [&] {
        spi::query("UPDATE pgmesh.relay_coverage SET covered_after = '0/0'");
        for (const auto &[origin, lsn] : applied_here()) record_coverage(origin, lsn);
        pg::call([&] { ereport(LOG, (errmsg("pgmesh created relay slot \"%s\"", slot.c_str()))); });
    });
}

bool Keeper::ask_members(const catalog::Nodes &nodes, std::map<uint64_t, Positions> &out) {
    for (const catalog::Node &n : nodes.all) {
        if (!member(n)) continue;
        try {
            remote::Connection &conn = members_[n.id];
            if (!conn || PQstatus(conn.get()) != CONNECTION_OK)
                conn = remote::connect(n.dsn, false, "pgmesh relay", 5);
            remote::Result r = remote::exec(conn.get(), kOriginsQuery);
            Positions &p = out[n.id];
            for (int i = 0; i < PQntuples(r.get()); i++)
                add_position(p, remote::value(r.get(), i, 0), remote::value(r.get(), i, 1));
        } catch (const pg::Error &) {
            members_.erase(n.id);
            return false;  // asked again next round
        }
    }
    return true;
}

void Keeper::move_to(uint64_t local_id, const Checkpoint &c) {
    std::string slot = node::relay_slot_name(local_id);
    // Coverage first: a crash in between leaves it claiming less than the
    // slot holds, never more.
    bool recorded = in_transaction("record what it holds", [&] {
        for (const auto &[origin, lsn] : c.applied) record_coverage(origin, lsn);
    });
    // The slot is busy while a survivor takes forwarded transactions from
    // it (forward.cpp): then it stays, and we try again later.
    node_admin::LocalSlot now = node_admin::local_slot(slot);
    if (!recorded || now.active || now.confirmed_flush >= c.local_lsn) return;
    in_transaction("move it on", [&] {
        // Each advance starts logical decoding, which says so at LOG
        // level: every few seconds, for nothing an operator needs. LOG
        // ranks above ERROR in the server log, so only FATAL keeps it out;
        // an error here is logged after the rollback, which restores the
        // setting.
        spi::query("SELECT pg_catalog.set_config('log_min_messages', 'fatal', true)");
        spi::query("SELECT pg_catalog.pg_replication_slot_advance($1, $2)",
                   {spi::text(slot), spi::lsn(c.local_lsn)});
    });
}

void Keeper::round(const catalog::Nodes &nodes) {
    TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
    if (now < next_round_) return;
    next_round_ = TimestampTzPlusMilliseconds(now, kRoundIntervalMs);
    uint64_t local_id = nodes.require_local().id;
    if (!ensure_slot(local_id)) {
        if (!warned_)
            pg::call([] {
                ereport(WARNING, (errmsg("pgmesh could not create its relay slot"),
                                  errdetail("Without it this node cannot forward a dead node's "
                                            "transactions to the other survivors."),
                                  errhint("Raise max_replication_slots if it is the limit.")));
            });
        warned_ = true;
        return;
    }
    warned_ = false;

    Checkpoint c{pg::call([] { return GetXLogInsertRecPtr(); }), {}};
    wait_for_commits_in_flight();
    if (!in_transaction("read the origins", [&] { c.applied = applied_here(); })) return;
    if (checkpoints_.size() >= kMaxCheckpoints) checkpoints_.pop_back();
    checkpoints_.push_back(std::move(c));

    std::map<uint64_t, Positions> members;
    if (!ask_members(nodes, members)) {
        next_round_ = TimestampTzPlusMilliseconds(now, kUnreachableIntervalMs);
        return;
    }
    // A parted node's transactions need no relay any more: parting made
    // every survivor equal in them.
    auto parted = [&](uint64_t id) {
        const catalog::Node *n = nodes.find(id);
        return !n || n->state == node::State::kParted;
    };
    if (std::optional<Checkpoint> target = take_passed(checkpoints_, members, parted))
        move_to(local_id, *target);
}

}  // namespace pgmesh::relay
