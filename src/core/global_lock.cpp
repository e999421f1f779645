#include "global_lock.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cpp_only.hpp"

namespace pgmesh::glock {

const char *name(Phase phase) {
    switch (phase) {
        case Phase::kFree:
            return "free";
        case Phase::kRequesting:
            return "requesting";
        case Phase::kHeld:
            return "held";
        case Phase::kReleasing:
            return "releasing";
        case Phase::kGranted:
            return "granted";
    }
    return "unknown";
}

bool precedes(const Lock &a, const Lock &b) {
    if (a.priority != b.priority) return a.priority < b.priority;
    return a.holder < b.holder;
}

bool NodeSet::contains(uint64_t id) const {
    return std::find(ids, ids + count, id) != ids + count;
}

void NodeSet::add(uint64_t id) {
    if (!contains(id) && count < kMaxNodes) ids[count++] = id;
}

Lock lock_of(const mesh::LockMessage &m) {
    return Lock{m.holder, m.lock_id, m.seq, m.strength, m.priority, m.holder_pid};
}

void Machine::clear_answers() {
    s_.granted.clear();
    s_.seen_grants.clear();
    s_.acquired = false;
}

bool Machine::same(uint64_t holder, uint64_t lock_id) const {
    return s_.phase != Phase::kFree && s_.current.holder == holder && s_.current.lock_id == lock_id;
}

bool Machine::request(const Lock &lock, int64_t now, Actions &out) {
    if (s_.phase != Phase::kFree) return false;
    if (lock.lock_id == s_.last_local_lock_id)
        throw std::invalid_argument("pgmesh global lock: lock id " + std::to_string(lock.lock_id) +
                                    " was already asked for: ask again under a new id");
    s_.last_local_lock_id = lock.lock_id;
    s_.phase = Phase::kRequesting;
    s_.current = lock;
    s_.since = now;
    clear_answers();
    out.push_back({Action::kSendRequest, s_.current});
    return true;
}

void Machine::upgrade(mesh::Strength strength, Actions &out) {
    if (s_.phase != Phase::kHeld || s_.current.holder != self_) return;
    s_.current.seq++;
    s_.current.strength = std::max(s_.current.strength, strength);
    s_.phase = Phase::kRequesting;
    s_.granted.clear();
    out.push_back({Action::kSendRequest, s_.current});
}

void Machine::local_end(uint64_t lock_id, bool committed, int64_t now, Actions &out) {
    if (s_.current.holder != self_ || s_.current.lock_id != lock_id) return;
    if (s_.phase == Phase::kHeld && committed && s_.current.strength == mesh::Strength::kWrite) {
        s_.phase = Phase::kReleasing;
        return;
    }
    if (s_.phase != Phase::kRequesting && s_.phase != Phase::kHeld) return;
    out.push_back({Action::kSendRelease, s_.current});
    end_current(now, out);
}

void Machine::release_after_commit(int64_t now, Actions &out) {
    if (s_.phase != Phase::kReleasing) return;
    out.push_back({Action::kSendRelease, s_.current});
    end_current(now, out);
}

void Machine::end_current(int64_t now, Actions &out) {
    if (s_.phase == Phase::kGranted && s_.current.strength == mesh::Strength::kWrite)
        out.push_back({Action::kUnblock, s_.current});
    s_.phase = Phase::kFree;
    s_.current = Lock{};
    clear_answers();
    if (s_.queued == 0) return;
    int best = 0;
    for (int i = 1; i < s_.queued; ++i)
        if (precedes(s_.queue[i], s_.queue[best])) best = i;
    Lock next = s_.queue[best];
    s_.queue[best] = s_.queue[--s_.queued];
    grant(next, now, out);
}

void Machine::grant(const Lock &lock, int64_t now, Actions &out) {
    s_.phase = Phase::kGranted;
    s_.current = lock;
    s_.since = now;
    clear_answers();
    take_early_grants();
    out.push_back({Action::kGrant, lock});
}

void Machine::take_early_grants() {
    for (int i = 0; i < s_.early_count;) {
        const State::EarlyGrant &e = s_.early[i];
        if (e.holder == s_.current.holder && e.lock_id == s_.current.lock_id &&
            e.seq <= s_.current.seq) {
            if (e.seq == s_.current.seq) s_.seen_grants.add(e.sender);
            s_.early[i] = s_.early[--s_.early_count];
        } else {
            ++i;
        }
    }
}

void Machine::drop_early(uint64_t holder, uint64_t lock_id) {
    for (int i = 0; i < s_.early_count;) {
        if (s_.early[i].holder == holder && s_.early[i].lock_id == lock_id)
            s_.early[i] = s_.early[--s_.early_count];
        else
            ++i;
    }
}

void Machine::drop_early_except(uint64_t holder, uint64_t lock_id) {
    for (int i = 0; i < s_.early_count;) {
        if (s_.early[i].holder == holder && s_.early[i].lock_id != lock_id)
            s_.early[i] = s_.early[--s_.early_count];
        else
            ++i;
    }
}

void Machine::enqueue(const Lock &lock) {
    for (int i = 0; i < s_.queued; ++i)
        if (s_.queue[i].holder == lock.holder) {
            s_.queue[i] = lock;  // a node asks for one lock at a time: the newest stands
            return;
        }
    if (s_.queued < kMaxNodes) s_.queue[s_.queued++] = lock;
}

void Machine::dequeue(uint64_t holder, uint64_t lock_id) {
    for (int i = 0; i < s_.queued;) {
        if (s_.queue[i].holder == holder && (lock_id == 0 || s_.queue[i].lock_id == lock_id))
            s_.queue[i] = s_.queue[--s_.queued];
        else
            ++i;
    }
}

bool Machine::forget(uint64_t node, bool drop_early_grants, int64_t now, Actions &out) {
    dequeue(node, 0);
    for (int i = 0; drop_early_grants && i < s_.early_count;) {
        if (s_.early[i].holder == node || s_.early[i].sender == node)
            s_.early[i] = s_.early[--s_.early_count];
        else
            ++i;
    }
    if (s_.phase != Phase::kGranted || s_.current.holder != node) return false;
    end_current(now, out);
    return true;
}

void Machine::on_reset(uint64_t node, int64_t now, Actions &out) {
    // Early grants stay. Those for the restarted node's new lock reach this
    // node through other nodes' streams, possibly before its RESET does
    // (its REQUEST comes after the RESET in its own stream); dropped, they
    // would never come again and this node would wait for them forever
    // after ACQUIRED. Those for its old locks match nothing (lock ids are
    // never reused) and go with its next REQUEST (drop_early_except). And a
    // write lock that the restarted node granted it keeps granting across
    // the restart (the granter keeps it on disk).
    if (forget(node, false, now, out)) return;
    if (s_.current.holder == self_ &&
        (s_.phase == Phase::kRequesting || s_.phase == Phase::kHeld)) {
        // The node forgot its grant (and any write block) when it restarted:
        // ask it again.
        bool had = false;
        for (int i = 0; i < s_.granted.count; ++i)
            if (s_.granted.ids[i] == node) {
                s_.granted.ids[i] = s_.granted.ids[--s_.granted.count];
                had = true;
                break;
            }
        if (had || s_.phase == Phase::kRequesting)
            out.push_back({Action::kSendRequest, s_.current});
    }
}

void Machine::on_parted(uint64_t node, int64_t now, Actions &out) {
    (void)forget(node, true, now, out);
}

void Machine::on_message(const mesh::LockMessage &m, int64_t now, Actions &out) {
    if (m.sender == self_) return;
    Lock lock = lock_of(m);
    switch (m.kind) {
        case mesh::LockKind::kRequest:
            if (m.holder != m.sender) return;  // only the holder asks
            drop_early_except(m.holder, m.lock_id);
            if (s_.phase == Phase::kGranted && same(m.holder, m.lock_id)) {
                if (m.seq < s_.current.seq) return;  // a repeat of an older round
                if (m.seq > s_.current.seq) {
                    // A new round (an upgrade): its grants follow new blocks.
                    s_.current.seq = m.seq;
                    s_.seen_grants.clear();
                    s_.acquired = false;
                    take_early_grants();
                }
                s_.current.strength = std::max(s_.current.strength, m.strength);
                out.push_back({Action::kGrant, s_.current});
                return;
            }
            if (s_.phase == Phase::kFree) {
                grant(lock, now, out);
                return;
            }
            // Our own request, never held yet, is younger: it gives way. An
            // upgrade (seq > 0) never does: its first round already ran DDL.
            if (s_.phase == Phase::kRequesting && s_.current.holder == self_ &&
                s_.current.seq == 0 && precedes(lock, s_.current)) {
                out.push_back({Action::kSendRelease, s_.current});
                s_.phase = Phase::kFree;
                grant(lock, now, out);
                return;
            }
            enqueue(lock);
            return;
        case mesh::LockKind::kGrant:
            if (m.holder == self_) {
                if ((s_.phase == Phase::kRequesting || s_.phase == Phase::kHeld) &&
                    same(m.holder, m.lock_id) && m.seq == s_.current.seq)
                    s_.granted.add(m.sender);
                return;
            }
            if (m.strength != mesh::Strength::kWrite) return;
            if (s_.phase == Phase::kGranted && same(m.holder, m.lock_id) &&
                m.seq <= s_.current.seq) {
                if (m.seq == s_.current.seq) s_.seen_grants.add(m.sender);
                return;
            }
            if (s_.early_count == kMaxNodes) {
                // Oldest first out.
                std::copy(s_.early + 1, s_.early + kMaxNodes, s_.early);
                s_.early_count--;
            }
            s_.early[s_.early_count++] = {m.holder, m.lock_id, m.sender, m.seq};
            return;
        case mesh::LockKind::kAcquired:
            if (m.holder != m.sender) return;
            if (s_.phase == Phase::kGranted && same(m.holder, m.lock_id)) s_.acquired = true;
            return;
        case mesh::LockKind::kRelease:
            if (m.holder != m.sender) return;
            dequeue(m.holder, m.lock_id);
            drop_early(m.holder, m.lock_id);
            if (s_.phase == Phase::kGranted && same(m.holder, m.lock_id)) end_current(now, out);
            return;
        case mesh::LockKind::kReset:
            on_reset(m.sender, now, out);
            return;
    }
}

bool Machine::all_granted(const std::vector<uint64_t> &peers) const {
    return std::all_of(peers.begin(), peers.end(),
                       [&](uint64_t p) { return p == self_ || s_.granted.contains(p); });
}

bool Machine::acquire(const std::vector<uint64_t> &peers) {
    if (s_.phase != Phase::kRequesting || s_.current.holder != self_ || !all_granted(peers))
        return false;
    s_.phase = Phase::kHeld;
    return true;
}

bool Machine::all_grants_seen(const std::vector<uint64_t> &peers) const {
    return std::all_of(peers.begin(), peers.end(), [&](uint64_t p) {
        return p == self_ || p == s_.current.holder || s_.seen_grants.contains(p);
    });
}

}  // namespace pgmesh::glock
