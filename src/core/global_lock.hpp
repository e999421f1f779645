// The global DDL/write lock as one node sees it: a pure state machine over a
// plain struct (it lives in shared memory), fed by local requests and by the
// lock messages of mesh_message.hpp, answering with what to send. Pure C++.
//
// Protocol (docs/ddl.md): a holder sends REQUEST; every other node GRANTs
// when it holds no other lock (a write lock first blocks local writes to the
// tables and waits for writers in flight), or queues the request until the
// lock it knows of is released. Two requests at once: the older (priority,
// then node id) wins; a node whose own request is younger gives way
// (releases it and grants the older), so exactly one holder proceeds and
// nobody waits on a cycle. A write-lock holder with every grant sends
// ACQUIRED; every node then waits, before it applies anything more from the
// holder, until it has seen every other node's GRANT in that node's stream,
// so that every row written before the lock is applied before the DDL.
// RELEASE ends it (for a write lock only once every node applied the DDL);
// RESET from a restarted node and the node's parting void its locks.
#pragma once

#include <cstdint>
#include <vector>

#include "mesh_message.hpp"

namespace pgmesh::glock {

inline constexpr int kMaxNodes = 64;

enum class Phase : uint8_t {
    kFree,
    kRequesting,  // a local backend asked; grants are coming in
    kHeld,        // the local backend has every grant
    kReleasing,   // the local holder committed a write lock; RELEASE waits for the peers
    kGranted,     // a remote node's lock, granted here
};
const char *name(Phase phase);

struct Lock {
    uint64_t holder;
    uint64_t lock_id;
    uint32_t seq;
    mesh::Strength strength;
    int64_t priority;
    int32_t holder_pid;
};

// True when a is older than b (wins).
bool precedes(const Lock &a, const Lock &b);

struct NodeSet {
    int count;
    uint64_t ids[kMaxNodes];
    bool contains(uint64_t id) const;
    void add(uint64_t id);  // no-op when present or full
    void clear() { count = 0; }
};

// One node's view. Zero-initialised memory is a valid free state.
struct State {
    Phase phase;
    Lock current;
    int64_t since;        // when current began here (µs)
    NodeSet granted;      // kRequesting/kHeld: nodes that granted current.seq
    NodeSet seen_grants;  // kGranted: nodes whose write GRANT of current.seq this node applied
    bool acquired;        // kGranted: the holder said ACQUIRED
    int queued;
    Lock queue[kMaxNodes];  // requests waiting for current to end
    // Write-lock GRANTs can arrive (in the granter's stream) before the
    // REQUEST does (in the holder's): kept until the request comes.
    struct EarlyGrant {
        uint64_t holder, lock_id, sender;
        uint32_t seq;
    };
    int early_count;
    EarlyGrant early[kMaxNodes];
    uint64_t last_local_lock_id;  // the lock id of the last request()
};

// What the node must do after an event, in order.
struct Action {
    enum Kind {
        kSendRequest,  // current (local)
        kGrant,        // block writes if write lock, then send GRANT for `lock`
        kSendRelease,  // RELEASE of `lock` (a local lock)
        kUnblock,      // drop the local write block of `lock`
    } kind;
    Lock lock;
};
using Actions = std::vector<Action>;

class Machine {
public:
    Machine(State &state, uint64_t self) : s_(state), self_(self) {}

    // A local backend asks. False (nothing changes) when another lock is
    // current: the backend waits and asks again, under a new lock id (one
    // this node never used, across restarts too: a GRANT of the old request
    // may still be on its way). Throws std::invalid_argument for the id of
    // the previous request.
    bool request(const Lock &lock, int64_t now, Actions &out);
    // The local holder asks for more (write strength): same lock, next seq.
    void upgrade(mesh::Strength strength, Actions &out);
    // The local holder of `lock_id` is done: abort (release now) or commit
    // (a write lock waits in kReleasing until release_after_commit()).
    // Nothing happens when lock_id is not the current local lock (it gave
    // way, or a restarted peer voided it).
    void local_end(uint64_t lock_id, bool committed, int64_t now, Actions &out);
    void release_after_commit(int64_t now, Actions &out);

    // Messages from the stream of another node.
    void on_message(const mesh::LockMessage &m, int64_t now, Actions &out);
    // A node parted: its locks are void and it no longer answers.
    void on_parted(uint64_t node, int64_t now, Actions &out);

    // kRequesting: has every node in `peers` granted current.seq?
    bool all_granted(const std::vector<uint64_t> &peers) const;
    // kRequesting with every grant: the local backend holds the lock now
    // (kHeld). False otherwise.
    bool acquire(const std::vector<uint64_t> &peers);
    // kGranted write lock: has this node seen the GRANT of every node in
    // `peers` other than the holder (and itself)?
    bool all_grants_seen(const std::vector<uint64_t> &peers) const;

private:
    void end_current(int64_t now, Actions &out);
    void grant(const Lock &lock, int64_t now, Actions &out);
    void enqueue(const Lock &lock);
    void dequeue(uint64_t holder, uint64_t lock_id);  // lock_id 0: every lock of holder
    bool same(uint64_t holder, uint64_t lock_id) const;
    // Forgets the grants, seen grants and ACQUIRED of the previous round.
    void clear_answers();
    void on_reset(uint64_t node, int64_t now, Actions &out);
    // Drops what `node` asked for (and, if drop_early_grants, the early
    // grants by it or for its locks), and the lock it holds here (true then).
    bool forget(uint64_t node, bool drop_early_grants, int64_t now, Actions &out);
    // Moves the early GRANTs of current (its seq) into seen_grants.
    void take_early_grants();
    void drop_early(uint64_t holder, uint64_t lock_id);
    void drop_early_except(uint64_t holder, uint64_t lock_id);

    State &s_;
    uint64_t self_;
};

Lock lock_of(const mesh::LockMessage &m);

}  // namespace pgmesh::glock
