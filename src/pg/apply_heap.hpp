// The executor half of apply (as pglogical_apply_heap.c is pglogical's):
// rows are found by their key index and inserted, updated or deleted with
// index maintenance, constraints and (ENABLE ALWAYS/REPLICA) triggers, as
// PostgreSQL's own apply worker does; never by building SQL text.
//
// Everything here but AsTableOwner calls PostgreSQL and may ereport: call it
// inside pg::call. What to do with a row (conflicts) is decided in apply.cpp
// and conflicts.cpp.
#pragma once

#include <span>

#include "postgres_headers.hpp"
#include "protocol.hpp"
#include "relation_map.hpp"
#include "user_context.hpp"

namespace pgmesh::apply {

// Executor state for one change on one relation, as PostgreSQL's apply
// worker builds it. Plain struct: it lives in frames PostgreSQL may longjmp
// out of (the transaction abort then releases what it holds).
struct ChangeState {
    Relation rel;
    EState *estate;
    ResultRelInfo *result_rel;
};

// Opens the table, an executor state and its indexes for one change, under
// a fresh snapshot; end_change closes them and makes the change visible to
// the next one.
ChangeState begin_change(Oid relid);
void end_change(ChangeState &cs);

// Slots of the change's executor state: a virtual one (values we build) and
// one of the table's own kind (rows we find).
TupleTableSlot *virtual_slot(ChangeState &cs);
TupleTableSlot *table_slot(ChangeState &cs);

// Stores the remote values into `slot`. Columns the remote left unchanged
// (TOAST) or does not know keep what `base` has; without a base (a new row)
// those it does not know get their DEFAULT.
void fill_slot(ChangeState &cs, const RelationMap &map, const proto::Tuple &tuple,
               TupleTableSlot *slot, TupleTableSlot *base);
// Key columns of `tuple` into a slot shaped like the table, for the index
// lookup.
void fill_key_slot(const RelationMap &map, const proto::Tuple &tuple, TupleTableSlot *slot);

// Raises 55000 when the table has no key index here.
void require_key(const RelationMap &map);
// Finds and locks the row with the key of `key` into `local`.
bool find_by_key(ChangeState &cs, const RelationMap &map, const proto::Tuple &key,
                 TupleTableSlot *local);
// Rows other than `self` that `candidate` would collide with in a unique
// index other than the primary key, and in the primary key too when
// `probe_key` (an UPDATE that changes the key). Returns how many distinct
// rows (0, 1 or 2 meaning "more than one"); the first one is left in
// `conflicting`.
int unique_conflicts(ChangeState &cs, const RelationMap &map, TupleTableSlot *candidate,
                     ItemPointer self, bool probe_key, TupleTableSlot *conflicting);

// Inserts `slot`. Returns false when a local transaction committed a row
// with a colliding key between the probe and the insert: nothing was
// inserted, and the change must run again (its probe then finds that row).
[[nodiscard]] bool insert_unless_raced(ChangeState &cs, const RelationMap &map,
                                       TupleTableSlot *slot);
// Replaces the row `local` holds (found and locked by a probe) by `remote`.
void update_row(ChangeState &cs, TupleTableSlot *local, TupleTableSlot *remote);
// Deletes the row `row` holds (found and locked by a probe).
void delete_row(ChangeState &cs, TupleTableSlot *row);

// Truncates the tables, as the current user. With more than one owner
// (`one_owner` false) a table with a TRUNCATE trigger that apply fires is
// refused: one TRUNCATE cannot run as several owners.
void truncate(std::span<const RelationMap *const> maps, bool restart_identity, bool one_owner);

// The current user (the table's owner, see AsTableOwner) may make this kind
// of change to the table.
void require_privilege(Oid relid, AclMode mode);

// Applies a change as the owner of its table (user_context.hpp), who must be
// allowed to make it, as PostgreSQL 16's apply does. Triggers, defaults,
// constraints and resolver functions then run with the owner's rights, never
// with the worker's. C++ (calls through pg::call itself).
class AsTableOwner {
public:
    AsTableOwner(Oid owner, Oid relid, AclMode mode);
    ~AsTableOwner();
    AsTableOwner(const AsTableOwner &) = delete;
    AsTableOwner &operator=(const AsTableOwner &) = delete;

    // Back to the worker's user (done by the destructor if not before).
    void restore();

private:
    user_context::Saved saved_{};
    bool active_ = false;
};

}  // namespace pgmesh::apply
