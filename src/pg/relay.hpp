// The relay slot: what this node keeps so that it can forward a dead peer's
// transactions to the survivors that got fewer of them (docs/operations.md,
// "Parting a dead node").
//
// Each node has one logical slot, node::relay_slot_name(own id), that
// nobody streams from in normal operation. It holds back WAL, and so every
// transaction this node applied from its peers, until every other member
// has applied those transactions too. The manager moves it on (Keeper):
// every few seconds it notes this node's WAL position W, waits for the
// commits being written at that moment, and then reads its origin
// positions p(D) for every peer D. Whatever it applies from D afterwards
// has a commit LSN on D above p(D) and lies in WAL after W. Once every other
// member B has applied D up to p(D), for every D, nothing before W can be
// missing anywhere, and the slot moves to W. A member that cannot be asked
// (down, cut off, dead) keeps it where it is: a dead node holds every relay
// slot in the group until it is parted.
//
// pgmesh.relay_coverage records, per origin D, the position after which the
// slot holds all of D's transactions applied here (covered_after). It rises
// before the slot moves, and is reset when the slot had to be made anew, so
// that a gap is refused instead of forwarded around.
#pragma once

#include <cstdint>
#include <deque>
#include <map>

#include "catalog.hpp"
#include "postgres_headers.hpp"
#include "relay_plan.hpp"
#include "remote.hpp"

namespace pgmesh::relay {

// This node's positions, from pg_replication_origin_status (needs a
// transaction); origins that stand for no node are left out.
Positions applied_here();

class Keeper {
public:
    // Called every manager round while this node is a ready member; does
    // its work every few seconds. Needs no transaction (opens its own).
    void round(const catalog::Nodes &nodes);

private:
    bool ensure_slot(uint64_t local_id);
    // Every other member's positions; false when one cannot be asked.
    bool ask_members(const catalog::Nodes &nodes, std::map<uint64_t, Positions> &out);
    void move_to(uint64_t local_id, const Checkpoint &c);

    std::deque<Checkpoint> checkpoints_;
    std::map<uint64_t, remote::Connection> members_;
    TimestampTz next_round_ = 0;
    bool warned_ = false;
};

}  // namespace pgmesh::relay
