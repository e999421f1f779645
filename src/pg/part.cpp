// pgmesh.part_node: removes a node from the group, run on a surviving node
// (docs/operations.md).
//
// A live node parts itself: its own row turns 'parted' in a transaction of
// its own, which travels in its stream after every change it made before.
// A survivor that applies that row has applied everything before it, and
// its manager stops streaming from the node there. part_node returns once
// every survivor shows the row.
//
// A dead node (not reachable from here) cannot write that row. What each
// survivor applied from it is then compared. When they differ, the survivor
// that got furthest forwards the missing transactions to each of the others
// from its relay slot (relay.hpp, forward.cpp), as the dead node sent them.
// Once all got equally far, this node marks it parted and the row
// replicates to the others. A forwarding that fails (the source died, its
// relay slot lost them) stops part_node with the reason; run again, it goes
// on where it stopped.
//
// Either way, the managers then drop what was kept for the node: its slots
// on every survivor and their origins for it (manager.cpp), and a parted
// node is refused by every survivor's output plugin (fencing).
#include <string>
#include <vector>

#include "catalog.hpp"
#include "guard.hpp"
#include "node.hpp"
#include "node_admin.hpp"
#include "remote.hpp"
#include "spi.hpp"
#include "walstream.hpp"

namespace pgmesh::node_admin {

namespace {

constexpr int kPartTimeoutSeconds = 60;

struct Survivor {
    uint64_t id = 0;
    std::string name;
    std::string dsn;
    bool is_local = false;
};

std::string parted_name() {
    return std::string(node::name(node::State::kParted));
}

// Polls `done` every 100 ms until it holds or the timeout passes.
template <typename F>
bool poll(int timeout_seconds, F &&done) {
    for (int waited_ms = 0;; waited_ms += 100) {
        if (done()) return true;
        if (waited_ms >= timeout_seconds * 1000) return false;
        pg::wait_latch(100);
    }
}

std::string node_state_on(const Survivor &s, uint64_t node_id) {
    remote::Connection conn = remote::connect(s.dsn, false, "pgmesh part", 10);
    remote::Result r = remote::exec_params(
        conn.get(), "SELECT state FROM pgmesh.node WHERE node_id = $1", {std::to_string(node_id)});
    return PQntuples(r.get()) ? remote::value(r.get(), 0, 0).value_or("") : "";
}

void part_live(remote::Connection &parting, const catalog::Node &node,
               const std::vector<Survivor> &survivors) {
    remote::exec_params(parting.get(), "UPDATE pgmesh.node SET state = $2 WHERE node_id = $1",
                        {std::to_string(node.id), parted_name()}, PGRES_COMMAND_OK);
    std::vector<std::string> behind;
    for (const Survivor &s : survivors) {
        bool arrived = poll(kPartTimeoutSeconds, [&] {
            try {
                return node_state_on(s, node.id) == parted_name();
            } catch (const pg::Error &) {
                return false;  // not reachable now: try again until the timeout
            }
        });
        if (!arrived) behind.push_back(s.name);
    }
    if (behind.empty()) return;
    std::string names;
    for (const std::string &n : behind) names += (names.empty() ? "" : ", ") + n;
    throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "node \"" + node.name +
                        "\" has parted, but not every survivor has its last "
                        "changes yet",
                    "Waiting for: " + names + ".",
                    "Those nodes apply them when they stream again; run pgmesh.part_node('" +
                        node.name + "') again to wait for them.");
}

// How far one survivor applied the dead node's transactions.
struct Applied {
    const Survivor *survivor;
    uint64_t lsn;
};

std::vector<Applied> applied_by_survivors(const catalog::Node &node,
                                          const std::vector<Survivor> &survivors) {
    std::vector<Applied> applied;
    for (const Survivor &s : survivors) {
        remote::Connection conn = remote::connect(s.dsn, false, "pgmesh part", 10);
        remote::Result streaming = remote::exec_params(
            conn.get(), "SELECT connected FROM pgmesh.status WHERE peer_node_id = $1",
            {std::to_string(node.id)});
        if (PQntuples(streaming.get()) && remote::value(streaming.get(), 0, 0) == "t")
            throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                            "node \"" + node.name + "\" is not reachable from here, but node \"" +
                                s.name + "\" streams from it",
                            {},
                            "Run pgmesh.part_node('" + node.name + "') on node \"" + s.name +
                                "\": a live node parts after its last changes arrive.");
        remote::Result r = remote::exec_params(
            conn.get(),
            "SELECT coalesce((SELECT remote_lsn::text FROM pg_catalog.pg_replication_origin_status "
            "WHERE external_id = $1), '0/0')",
            {node::origin_name(node.id)});
        applied.push_back(Applied{
            &s, walstream::parse_lsn(remote::value(r.get(), 0, 0).value_or("0/0")).value_or(0)});
    }
    return applied;
}

std::string describe(const std::vector<Applied> &applied) {
    std::string out;
    for (const Applied &a : applied)
        out += (out.empty() ? "" : ", ") + a.survivor->name + " applied up to " +
               walstream::format_lsn(a.lsn);
    return out;
}

// Where `source` can forward the dead node's transactions from: after
// what its relay slot covers (pgmesh.relay_coverage).
uint64_t covered_after(const Survivor &source, uint64_t node_id) {
    remote::Connection conn = remote::connect(source.dsn, false, "pgmesh part", 10);
    remote::Result r = remote::exec_params(
        conn.get(),
        "SELECT coalesce((SELECT covered_after::text FROM pgmesh.relay_coverage "
        "WHERE origin_node_id = $1), '0/0')",
        {std::to_string(node_id)});
    return walstream::parse_lsn(remote::value(r.get(), 0, 0).value_or("0/0")).value_or(0);
}

// Polls the survivor's forwarding worker (each poll a transaction of its
// own) until it reached `up_to`; throws when it stopped short, or applied
// nothing for kPartTimeoutSeconds (then it is stopped).
void wait_for_forwarding(PGconn *conn, const catalog::Node &node, uint64_t up_to) {
    uint64_t seen = 0;
    long still_ms = 0;
    for (;;) {
        remote::Result r = remote::exec_params(
            conn, "SELECT applied::text, running, error FROM pgmesh.forward_progress($1)",
            {std::to_string(node.id)});
        uint64_t applied =
            walstream::parse_lsn(remote::value(r.get(), 0, 0).value_or("0/0")).value_or(0);
        bool running = remote::value(r.get(), 0, 1) == "t";
        if (applied >= up_to) return;
        if (!running)
            throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                            "its forwarding worker stopped at " + walstream::format_lsn(applied) +
                                " of " + walstream::format_lsn(up_to),
                            remote::value(r.get(), 0, 2).value_or("See its server log."));
        still_ms = applied == seen ? still_ms + 100 : 0;
        seen = applied;
        if (still_ms >= kPartTimeoutSeconds * 1000L) {
            remote::exec(conn,
                         "SELECT pg_catalog.pg_terminate_backend(pid) FROM "
                         "pg_catalog.pg_stat_activity WHERE backend_type = 'pgmesh forward' "
                         "AND datname = pg_catalog.current_database()");
            throw pg::Error(ERRCODE_QUERY_CANCELED,
                            "its forwarding worker applied nothing for " +
                                std::to_string(kPartTimeoutSeconds) + " s",
                            "It stopped at " + walstream::format_lsn(applied) + " of " +
                                walstream::format_lsn(up_to) + ".");
        }
        pg::wait_latch(100);
    }
}

// Brings `to` up to `source`'s position in the dead node's transactions.
void forward(const catalog::Node &node, const Applied &source, const Applied &to) {
    uint64_t covered = covered_after(*source.survivor, node.id);
    if (covered > to.lsn)
        throw pg::Error(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "node \"" + source.survivor->name + "\" no longer holds the transactions of node \"" +
                node.name + "\" that node \"" + to.survivor->name + "\" lacks",
            "Node \"" + to.survivor->name + "\" applied up to " + walstream::format_lsn(to.lsn) +
                "; the relay slot of node \"" + source.survivor->name +
                "\" holds them only after " + walstream::format_lsn(covered) + ".",
            "Parting now would leave them different (docs/operations.md, when the "
            "relay is gone). Start node \"" +
                node.name +
                "\" again so that every survivor catches up from it, or part node "
                "\"" +
                to.survivor->name + "\" and join it again.");
    TimestampTz started = pg::call([] { return GetCurrentTimestamp(); });
    remote::Connection conn = remote::connect(to.survivor->dsn, false, "pgmesh part", 10);
    try {
        remote::exec_params(conn.get(), "SELECT pgmesh.forward_missing($1, $2, $3)",
                            {std::to_string(node.id), std::to_string(source.survivor->id),
                             walstream::format_lsn(source.lsn)});
        wait_for_forwarding(conn.get(), node, source.lsn);
    } catch (const pg::Error &e) {
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "forwarding node \"" + node.name + "\"'s transactions from node \"" +
                            source.survivor->name + "\" to node \"" + to.survivor->name +
                            "\" failed: " + e.message(),
                        e.detail(),
                        "What was forwarded stays, and is not forwarded twice: run "
                        "pgmesh.part_node('" +
                            node.name + "') again once the cause is gone.");
    }
    long ms =
        pg::call([&] { return TimestampDifferenceMilliseconds(started, GetCurrentTimestamp()); });
    pg::call([&] {
        ereport(NOTICE,
                (errmsg("pgmesh forwarded node \"%s\"'s transactions from %X/%X to %X/%X "
                        "from node \"%s\" to node \"%s\" in %ld ms",
                        node.name.c_str(), LSN_FORMAT_ARGS(to.lsn), LSN_FORMAT_ARGS(source.lsn),
                        source.survivor->name.c_str(), to.survivor->name.c_str(), ms)));
    });
}

void part_dead(const catalog::Node &node, const std::vector<Survivor> &survivors) {
    std::vector<Applied> applied = applied_by_survivors(node, survivors);
    const Applied *furthest = &applied.front();
    for (const Applied &a : applied)
        if (a.lsn > furthest->lsn) furthest = &a;
    for (const Applied &a : applied)
        if (a.lsn < furthest->lsn) forward(node, *furthest, a);
    // Every survivor must now be where the furthest was: check, rather
    // than trust, before the node goes for good.
    std::vector<Applied> after = applied_by_survivors(node, survivors);
    for (const Applied &a : after)
        if (a.lsn != furthest->lsn)
            throw pg::Error(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "the survivors applied different amounts of node \"" + node.name + "\"'s changes",
                describe(after) + ".",
                "Parting it now would leave them different. Run pgmesh.part_node('" + node.name +
                    "') again.");
    spi::query("UPDATE pgmesh.node SET state = $2 WHERE node_id = $1",
               {spi::int8(static_cast<int64_t>(node.id)), spi::text(parted_name())});
    wake_manager_at_commit();
}

// Drops one thing kept for a parted node. Not transactional: each is done or
// not, and a failure (the slot still in use by a walsender that has not
// noticed yet, the origin by an apply worker that is stopping) is tried
// again at the next round.
template <typename F>
void drop_quietly(const char *what, const std::string &name, F &&drop) {
    if (pg::in_own_transaction(drop)) return;
    pg::call([&] {
        ereport(LOG, (errmsg("pgmesh dropped %s \"%s\" of a parted node", what, name.c_str())));
    });
}

void drop_slot_if_idle(const std::string &slot) {
    LocalSlot found = local_slot(slot);
    if (!found.exists || found.active) return;
    drop_quietly("replication slot", slot,
                 [&] { pg::call([&] { ReplicationSlotDrop(slot.c_str(), true); }); });
}

void drop_origin_if_any(const std::string &origin) {
    bool exists = pg::call([&] {
        StartTransactionCommand();
        bool found = replorigin_by_name(origin.c_str(), true) != InvalidRepOriginId;
        CommitTransactionCommand();
        return found;
    });
    if (!exists) return;
    drop_quietly("replication origin", origin,
                 [&] { pg::call([&] { replorigin_drop_by_name(origin.c_str(), true, true); }); });
}

}  // namespace

void drop_what_parted_nodes_left(const catalog::Nodes &nodes) {
    const catalog::Node *local = nodes.local();
    if (!local) return;
    bool local_parted = local->state == node::State::kParted;
    for (const catalog::Node &peer : nodes.all) {
        if (peer.is_local || (!local_parted && peer.state != node::State::kParted)) continue;
        drop_slot_if_idle(node::slot_name(local->id, peer.id));
        drop_origin_if_any(node::origin_name(peer.id));
    }
    // A parted node forwards nothing (relay.hpp): its relay slot would
    // only keep WAL, and keep its database from being dropped.
    if (local_parted) drop_slot_if_idle(node::relay_slot_name(local->id));
}

void part_node(const std::string &node_name) {
    check_server_setup();
    catalog::Nodes nodes = catalog::read_nodes();
    const catalog::Node &local = nodes.require_local();
    const catalog::Node *node = nullptr;
    for (const catalog::Node &n : nodes.all)
        if (n.name == node_name) node = &n;
    if (!node)
        throw pg::Error(ERRCODE_UNDEFINED_OBJECT, "node \"" + node_name + "\" does not exist", {},
                        "See pgmesh.nodes for the nodes of the group.");
    if (node->is_local)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + node_name + "\" cannot part itself", {},
                        "Run pgmesh.part_node() on a node that stays in the group.");
    if (local.state != node::State::kReady)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "this node is " + std::string(node::name(local.state)) +
                            ", not a ready member of the group");
    if (node->state == node::State::kParted)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + node_name + "\" has already parted");
    // A joining node has no changes of its own out yet (no one streams
    // from it): it just goes, as a join that will not finish.
    if (node->state == node::State::kJoining) {
        spi::query("UPDATE pgmesh.node SET state = $2 WHERE node_id = $1",
                   {spi::int8(static_cast<int64_t>(node->id)), spi::text(parted_name())});
        wake_manager_at_commit();
        return;
    }
    std::vector<Survivor> survivors;
    for (const catalog::Node &n : nodes.all)
        if (n.id != node->id && n.state == node::State::kReady)
            survivors.push_back(Survivor{n.id, n.name, n.dsn, n.is_local});
    remote::Connection parting;
    try {
        parting = remote::connect(node->dsn, false, "pgmesh part", 10);
    } catch (const pg::Error &) {
        part_dead(*node, survivors);
        return;
    }
    part_live(parting, *node, survivors);
}

}  // namespace pgmesh::node_admin
