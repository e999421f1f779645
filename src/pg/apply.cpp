#include "apply.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <variant>
#include <vector>

#include "apply_heap.hpp"
#include "ddl_lock.hpp"
#include "group_key.hpp"
#include "user_context.hpp"
#include "fault.hpp"
#include "guard.hpp"
#include "settings.hpp"
#include "shmem.hpp"
#include "tombstones.hpp"

namespace pgmesh::apply {

namespace {

// What the error context calls each change.
const char *change_name(const proto::Decoded &message) {
    if (std::holds_alternative<proto::Insert>(message)) return "INSERT";
    if (std::holds_alternative<proto::Update>(message)) return "UPDATE";
    if (std::holds_alternative<proto::Delete>(message)) return "DELETE";
    if (std::holds_alternative<proto::Truncate>(message)) return "TRUNCATE";
    return "MESSAGE";
}

uint64_t read_resolvers_version(Oid dboid) {
    LWLockAcquire(shmem::state().lock, LW_SHARED);
    shmem::DatabaseSlot *d = shmem::database_slot(dboid, false);
    uint64_t version = d ? d->resolvers_version : 0;
    LWLockRelease(shmem::state().lock);
    return version;
}

// The key of the row in `slot` as tombstones store it.
Datum tombstone_key(ChangeState &cs, TupleTableSlot *slot) {
    slot_getallattrs(slot);
    return tombstones::key_of(cs.rel, slot->tts_values, slot->tts_isnull);
}

}  // namespace

Applier::Applier(ApplyIdentity identity) : identity_(std::move(identity)) {
    message_context_ = pg::call([] {
        return AllocSetContextCreate(TopMemoryContext, "pgmesh apply message",
                                     ALLOCSET_DEFAULT_SIZES);
    });
    router_.add(std::string(mesh::kDdlPrefix), [this](const proto::Message &m) { apply_ddl(m); });
    router_.add(std::string(mesh::kLockPrefix), [this](const proto::Message &m) {
        // pgmesh sends its lock messages outside transactions: this one was
        // emitted by some role on the peer, and stopping apply for it would
        // let any role stop every peer.
        if (m.transactional) {
            ignore_forged(m, "a global lock message inside a transaction");
            return;
        }
        const mesh::Mac *key = nullptr;
        pg::in_transaction([&] {
            pg::call([] { fault::point("apply_lock_message"); });
            key = &mac();
        });
        ddl_lock::on_message(identity_.local_node_id, identity_.peer_node_id, *key, m);
    });
    // A join's barrier: its commit moves our origin for the peer, and
    // that is all it is for.
    router_.add(std::string(mesh::kBarrierPrefix), [](const proto::Message &) {});
    router_.add(std::string(mesh::kClockPrefix), [this](const proto::Message &m) {
        if (m.transactional) {
            ignore_forged(m, "a clock tick inside a transaction");
            return;
        }
        std::optional<mesh::ClockTick> tick;
        std::string problem;
        pg::in_transaction([&] {
            try {
                tick = mesh::open_clock(m.content, mac());
                if (tick->sender != identity_.peer_node_id)
                    problem = "a clock tick of another node";
            } catch (const mesh::BadMessage &e) {
                problem = e.what();
            }
        });
        if (!problem.empty()) {
            ignore_forged(m, problem.c_str());
            return;
        }
        clock_tick_ = std::max(clock_tick_, tick->time);
    });
}

void Applier::ignore_forged(const proto::Message &m, const char *what) const {
    pg::call([&] {
        ereport(WARNING, (errmsg("pgmesh ignored %s from node \"%s\" (prefix \"%s\"), which "
                                 "pgmesh does not send",
                                 what, identity_.peer_name.c_str(), m.prefix.c_str())));
    });
}

const mesh::Mac &Applier::mac() {
    if (!mac_) mac_ = group_key::mac();
    return *mac_;
}

void Applier::apply_ddl(const proto::Message &m) {
    // pgmesh sends DDL inside the transaction that ran it: see above.
    if (!m.transactional || !position_.in_transaction) {
        ignore_forged(m, "a DDL message outside a transaction");
        return;
    }
    if (skipping_) return;
    mesh::DdlStatement ddl;
    try {
        ddl = mesh::open_ddl(m.content, mac());
    } catch (const mesh::BadMessage &e) {
        // Any role on the peer may emit a message with our prefix: one that
        // is not sealed with the group's key is not acted on, and does not
        // stop apply either.
        std::string what = e.what();
        pg::call([&] {
            ereport(WARNING, (errmsg("pgmesh ignored a DDL message from node \"%s\": %s",
                                     identity_.peer_name.c_str(), what.c_str())));
        });
        return;
    }
    if (ddl.origin_node != identity_.peer_node_id || ddl.xid != position_.transaction.xid) {
        pg::call([&] {
            ereport(WARNING, (errmsg("pgmesh ignored a DDL message from node \"%s\" that was "
                                     "written by another transaction",
                                     identity_.peer_name.c_str())));
        });
        return;
    }
    position_.change = "DDL";
    replayed_ddl_ = true;
    ddl_lock::before_replay(identity_.peer_node_id);
    pg::call([&] {
        Oid role = get_role_oid(ddl.role.c_str(), false);
        user_context::Saved saved =
            user_context::switch_to_origin_role(role, ddl.search_path.c_str());
        pgstat_report_activity(STATE_RUNNING, ddl.statement.c_str());
        // Utility statements run through SPI as they would in a function:
        // under the caller's snapshot.
        PushActiveSnapshot(GetTransactionSnapshot());
        if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
        int rc = SPI_execute(ddl.statement.c_str(), false, 0);
        if (rc < 0) elog(ERROR, "replicated DDL failed: %s", SPI_result_code_string(rc));
        SPI_finish();
        PopActiveSnapshot();
        user_context::restore(saved);
        CommandCounterIncrement();
    });
}

void Applier::describe_position(char *buf, size_t size) const noexcept {
    if (size == 0) return;
    buf[0] = '\0';
    if (!position_.in_transaction) return;
    const proto::Begin &t = position_.transaction;
    int used = snprintf(
        buf, size, "processing remote transaction %u from node \"%s\" with commit LSN %X/%X", t.xid,
        identity_.peer_name.c_str(), static_cast<uint32_t>(t.final_lsn >> 32),
        static_cast<uint32_t>(t.final_lsn));
    if (used < 0 || static_cast<size_t>(used) >= size || !position_.change) return;
    const RelationMap *rel = position_.relation;
    if (rel)
        snprintf(buf + used, size - used, ", %s on table \"%s.%s\"", position_.change,
                 rel->remote.schema.c_str(), rel->remote.name.c_str());
    else
        snprintf(buf + used, size - used, ", %s", position_.change);
}

RelationMap &Applier::relation(uint32_t remote_relid) {
    RelationMap &map = relations_.find(remote_relid);
    // Set first: a failure to look the table up names it in the history.
    position_.relation = &map;
    relations_.prepare(map, resolvers_version_);
    resolvers_changed_ |= map.is_resolver_table;
    return map;
}

void Applier::begin(const proto::Begin &b) {
    if (position_.in_transaction)
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent BEGIN inside a transaction");
    position_.transaction = b;
    position_.relation = nullptr;
    position_.change = nullptr;
    conflicts_.discard_pending();
    resolvers_changed_ = false;
    replayed_ddl_ = false;
    skipping_ = skip_lsn_ != 0 && b.final_lsn == skip_lsn_;
    resolvers_version_ = pg::call([&] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        replorigin_session_origin_timestamp = b.commit_time;
        fault::point("apply_begin");
        pgstat_report_activity(STATE_RUNNING, "applying remote transaction");
        return read_resolvers_version(identity_.dboid);
    });
    position_.in_transaction = true;
}

void Applier::commit(const proto::Commit &commit) {
    if (!position_.in_transaction)
        throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent COMMIT outside a transaction");
    pg::call([&] {
        fault::point("apply_before_commit");
        replorigin_session_origin_lsn = commit.end_lsn;
        replorigin_session_origin_timestamp = commit.commit_time;
        // The origin's progress is written with the commit record, which a
        // transaction that changed nothing (skipped, or every change a
        // no-op) would not write: without an xid a restart would apply (or
        // skip) it again.
        if (!TransactionIdIsValid(GetTopTransactionIdIfAny())) (void)GetTopTransactionId();
        CommitTransactionCommand();
        pgstat_report_activity(STATE_IDLE, nullptr);
    });
    position_.in_transaction = false;
    if (resolvers_changed_)
        pg::call([&] {
            // Only now that the new resolvers are visible: a worker that
            // reads the new version before our commit would cache the old
            // resolvers under it.
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            if (shmem::DatabaseSlot *d = shmem::database_slot(identity_.dboid, false))
                d->resolvers_version++;
            LWLockRelease(shmem::state().lock);
        });
    resolvers_changed_ = false;
}

void Applier::handle(const proto::Decoded &message) {
    if (const auto *rel = std::get_if<proto::Relation>(&message)) {
        relations_.describe(*rel);
        return;
    }
    if (const auto *b = std::get_if<proto::Begin>(&message)) {
        begin(*b);
        return;
    }
    if (const auto *c = std::get_if<proto::Commit>(&message)) {
        commit(*c);
        return;
    }
    if (!position_.in_transaction) {
        // A non-transactional message stands outside any transaction.
        const auto *m = std::get_if<proto::Message>(&message);
        if (!m || m->transactional)
            throw pg::Error(ERRCODE_PROTOCOL_VIOLATION, "peer sent a change outside a transaction");
        apply_message(*m);
        return;
    }
    if (skipping_) return;  // pgmesh.skip_transaction: commit() only advances the origin

    position_.change = change_name(message);
    MemoryContext old = pg::call([&] { return MemoryContextSwitchTo(message_context_); });
    apply_change(message);
    pg::call([&] {
        MemoryContextSwitchTo(old);
        MemoryContextReset(message_context_);
    });
    position_.change = nullptr;
}

void Applier::apply_change(const proto::Decoded &message) {
    auto run_again = [] { pg::call([] { CHECK_FOR_INTERRUPTS(); }); };
    // Each change runs as its table's owner; its conflicts are written to
    // the history afterwards, as pgmesh.
    if (const auto *ins = std::get_if<proto::Insert>(&message)) {
        RelationMap &map = relation(ins->relid);
        AsTableOwner owner(map.owner, map.local_relid, ACL_INSERT);
        while (!apply_insert(map, *ins)) run_again();
        owner.restore();
    } else if (const auto *upd = std::get_if<proto::Update>(&message)) {
        RelationMap &map = relation(upd->relid);
        AsTableOwner owner(map.owner, map.local_relid, ACL_UPDATE);
        while (!apply_update(map, *upd)) run_again();
        owner.restore();
    } else if (const auto *del = std::get_if<proto::Delete>(&message)) {
        RelationMap &map = relation(del->relid);
        AsTableOwner owner(map.owner, map.local_relid, ACL_DELETE);
        apply_delete(map, *del);
        owner.restore();
    } else if (const auto *tr = std::get_if<proto::Truncate>(&message)) {
        apply_truncate(*tr);
    } else if (const auto *m = std::get_if<proto::Message>(&message)) {
        apply_message(*m);
    }
    conflicts_.write_pending();
}

void Applier::apply_message(const proto::Message &m) {
    if (router_.dispatch(m)) return;
    // Not pgmesh's (message_router.hpp): some session on the peer emitted
    // it, and nothing here acts on it.
    pg::call([&] {
        ereport(DEBUG1, (errmsg("pgmesh ignored a logical message with prefix \"%s\" from node "
                                "\"%s\", which no pgmesh subsystem sends",
                                m.prefix.c_str(), identity_.peer_name.c_str())));
    });
}

bool Applier::apply_insert(RelationMap &map, const proto::Insert &m) {
    ChangeState cs{};
    TupleTableSlot *remote = nullptr;
    TupleTableSlot *local = nullptr;
    TupleTableSlot *other = nullptr;
    bool exists = false;
    Datum key = 0;
    pg::call([&] {
        cs = begin_change(map.local_relid);
        remote = virtual_slot(cs);
        fill_slot(cs, map, m.new_tuple, remote, nullptr);
        local = table_slot(cs);
        other = table_slot(cs);
        exists = OidIsValid(map.key_index) && find_by_key(cs, map, m.new_tuple, local);
        if (!exists && OidIsValid(map.key_index)) key = tombstone_key(cs, remote);
    });
    // The key's own history first (conflict.hpp): a row, a tombstone or
    // nothing, against this insert's version.
    conflict::KeyState state = conflicts_.key_state(exists, local, cs.rel, key);
    std::optional<conflict::Type> type =
        conflict::classify(conflict::Change::kInsert, state, identity_.peer_node_id);
    std::optional<conflict::Resolution> resolution;
    if (type)
        resolution =
            conflicts_.decide(cs, map, *type, exists ? local : nullptr, remote, state.version);
    if (conflict::outcome(conflict::Change::kInsert, resolution) == conflict::Outcome::kUnchanged)
        return pg::call([&] {
            end_change(cs);
            return true;
        });
    if (exists)
        return pg::call([&] {
            require_privilege(map.local_relid, ACL_UPDATE);
            update_row(cs, local, remote);
            end_change(cs);
            return true;
        });
    int collisions =
        pg::call([&] { return unique_conflicts(cs, map, remote, nullptr, false, other); });
    if (collisions == 0)
        return pg::call([&] {
            bool inserted = insert_unless_raced(cs, map, remote);
            end_change(cs);
            return inserted;
        });
    if (collisions > 1) {
        conflicts_.decide(cs, map, conflict::Type::kMultipleUniqueConflicts, other,
                          remote);  // throws
        return true;
    }
    // Another unique key collides: one version wins.
    conflict::Resolution r =
        conflicts_.decide(cs, map, conflict::Type::kInsertExists, other, remote);
    return pg::call([&] {
        bool done = true;
        if (r == conflict::Resolution::kApplyRemote) {
            require_privilege(map.local_relid, ACL_DELETE);
            delete_row(cs, other);
            done = insert_unless_raced(cs, map, remote);
        }
        end_change(cs);
        return done;
    });
}

bool Applier::apply_update(RelationMap &map, const proto::Update &m) {
    ChangeState cs{};
    TupleTableSlot *local = nullptr;
    TupleTableSlot *updated = nullptr;
    TupleTableSlot *other = nullptr;
    bool found = false;
    pg::call([&] {
        require_key(map);
        cs = begin_change(map.local_relid);
        local = table_slot(cs);
        other = table_slot(cs);
        updated = virtual_slot(cs);
        found = find_by_key(cs, map, m.old_key ? *m.old_key : m.new_tuple, local);
    });
    if (!found) return update_where_no_row(cs, map, m, updated);
    int collisions = 0;
    pg::call([&] {
        fill_slot(cs, map, m.new_tuple, updated, local);
        // The origin logs the old key only when the key changed (or for
        // REPLICA IDENTITY FULL): only then can the new key collide.
        collisions =
            unique_conflicts(cs, map, updated, &local->tts_tid, m.old_key.has_value(), other);
    });
    TupleTableSlot *remote = updated;
    if (conflicts_.written_by_another_node(cs.rel, local) &&
        conflicts_.decide(cs, map, conflict::Type::kUpdateOriginDiffers, local, remote) !=
            conflict::Resolution::kApplyRemote) {
        pg::call([&] { end_change(cs); });
        return true;
    }
    if (collisions > 1)
        conflicts_.decide(cs, map, conflict::Type::kMultipleUniqueConflicts, other, remote);
    bool delete_other = false;
    if (collisions == 1) {
        if (conflicts_.decide(cs, map, conflict::Type::kUpdateExists, other, remote) !=
            conflict::Resolution::kApplyRemote) {
            // By version, the colliding row keeps the value and the row this
            // update moved loses. On the update's origin the colliding row
            // arrives as an insert_exists or update_exists that deletes the
            // older holder of the value; the same row goes here. Other
            // resolvers only skip the update.
            conflict::Resolver resolver =
                map.resolvers[static_cast<size_t>(conflict::Type::kUpdateExists)].resolver;
            bool by_version = resolver == conflict::Resolver::kLastUpdateWins ||
                              resolver == conflict::Resolver::kFirstUpdateWins;
            pg::call([&] {
                if (by_version) {
                    require_privilege(map.local_relid, ACL_DELETE);
                    delete_row(cs, local);
                }
                end_change(cs);
            });
            return true;
        }
        delete_other = true;
    }
    pg::call([&] {
        if (delete_other) {
            require_privilege(map.local_relid, ACL_DELETE);
            delete_row(cs, other);
        }
        update_row(cs, local, remote);
        end_change(cs);
    });
    return true;
}

void Applier::apply_delete(RelationMap &map, const proto::Delete &m) {
    ChangeState cs{};
    TupleTableSlot *local = nullptr;
    TupleTableSlot *key = nullptr;
    bool found = false;
    Datum tombstone = 0;
    pg::call([&] {
        require_key(map);
        cs = begin_change(map.local_relid);
        local = table_slot(cs);
        key = virtual_slot(cs);
        fill_key_slot(map, m.old_key, key);
        found = RelationFindReplTupleByIndex(cs.rel, map.key_index, LockTupleExclusive, key, local);
        tombstone = tombstone_key(cs, key);
    });
    conflict::KeyState state = conflicts_.key_state(found, local, cs.rel, tombstone);
    std::optional<conflict::Type> type =
        conflict::classify(conflict::Change::kDelete, state, identity_.peer_node_id);
    std::optional<conflict::Resolution> resolution;
    if (type)
        resolution = conflicts_.decide(cs, map, *type, found ? local : nullptr, key, state.version);
    bool wins = conflict::outcome(conflict::Change::kDelete, resolution) ==
                conflict::Outcome::kRemoteDelete;
    pg::call([&] {
        if (wins && found) delete_row(cs, local);
        // The delete's version stays behind, whether or not a row was here:
        // an older insert or update that arrives later loses to it.
        if (wins && tombstone != 0) tombstones::record(map.local_relid, tombstone);
        end_change(cs);
    });
}

bool Applier::update_where_no_row(ChangeState &cs, RelationMap &map, const proto::Update &m,
                                  TupleTableSlot *updated) {
    Datum key = pg::call([&] {
        TupleTableSlot *key_slot = virtual_slot(cs);
        fill_key_slot(map, m.old_key ? *m.old_key : m.new_tuple, key_slot);
        return tombstone_key(cs, key_slot);
    });
    conflict::KeyState state = conflicts_.key_state(false, nullptr, cs.rel, key);
    std::optional<conflict::Type> type =
        conflict::classify(conflict::Change::kUpdate, state, identity_.peer_node_id);
    // An update newer than what the key holds re-creates its row, which
    // takes every column: a TOASTed value the update left unchanged is not
    // in the stream (REPLICA IDENTITY FULL sends it, as the old row).
    bool complete = std::none_of(m.new_tuple.begin(), m.new_tuple.end(), [](const auto &v) {
        return v.kind == proto::ValueKind::kUnchanged;
    });
    TupleTableSlot *remote = complete ? updated : nullptr;
    if (complete) pg::call([&] { fill_slot(cs, map, m.new_tuple, updated, nullptr); });
    std::optional<conflict::Resolution> resolution;
    if (type) resolution = conflicts_.decide(cs, map, *type, nullptr, remote, state.version);
    bool recreate =
        conflict::outcome(conflict::Change::kUpdate, resolution) == conflict::Outcome::kRemoteRow;
    if (recreate && !complete)
        throw pg::Error(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "cannot re-create a deleted row of table \"" + map.remote.schema + "." +
                map.remote.name + "\" from an UPDATE that left a TOASTed column unchanged",
            "The update is newer than the row's delete on this node, so the row comes back, "
            "but the stream carries only the columns the update changed.",
            "Set REPLICA IDENTITY FULL on the table on every node (then updates carry every "
            "column), or skip the remote transaction with pgmesh.skip_transaction().");
    return pg::call([&] {
        bool done = true;
        if (recreate) {
            require_privilege(map.local_relid, ACL_INSERT);
            done = insert_unless_raced(cs, map, remote);
        }
        end_change(cs);
        return done;
    });
}

void Applier::apply_truncate(const proto::Truncate &m) {
    std::vector<const RelationMap *> maps;
    for (uint32_t relid : m.relids) maps.push_back(&relation(relid));
    if (maps.empty()) return;
    // A TRUNCATE deletes every row of its tables, with one version: each
    // table keeps the TRUNCATE's tombstone, and a row newer than it (written
    // here or elsewhere after the TRUNCATE, as its origin did not see) stays.
    // Only tables left with no such row are truncated whole.
    std::vector<const RelationMap *> whole;
    for (const RelationMap *map : maps) {
        AsTableOwner owner(map->owner, map->local_relid, ACL_TRUNCATE);
        if (!truncate_keeping_newer_rows(*map)) whole.push_back(map);
        owner.restore();
    }
    if (whole.empty()) return;
    bool one_owner = std::all_of(whole.begin(), whole.end(), [&](const RelationMap *map) {
        return map->owner == whole.front()->owner;
    });
    // Triggers run as the owner of the tables; TRUNCATE fires them all from
    // one call, so that works when the tables share their owner. With
    // several owners it runs as the worker, which is safe only while no
    // user code runs.
    std::optional<AsTableOwner> as_owner;
    if (one_owner) as_owner.emplace(whole.front()->owner, whole.front()->local_relid, ACL_TRUNCATE);
    pg::call([&] { truncate(whole, m.restart_identity, one_owner); });
}

bool Applier::truncate_keeping_newer_rows(const RelationMap &map) {
    ChangeState cs = pg::call([&] { return begin_change(map.local_relid); });
    Datum table_key = pg::call([] { return tombstones::whole_table_key(); });
    TupleTableSlot *none = nullptr;
    conflict::KeyState table_state = conflicts_.key_state(false, nullptr, cs.rel, table_key);
    std::optional<conflict::Type> type =
        conflict::classify(conflict::Change::kDelete, table_state, identity_.peer_node_id);
    std::optional<conflict::Resolution> resolution;
    // The first TRUNCATE of a table meets no other: nothing to record. One
    // that meets another node's is decided like two deletes of a key.
    if (type && table_state.kind != conflict::KeyState::Kind::kNothing)
        resolution = conflicts_.decide(cs, map, *type, nullptr, none, table_state.version);
    if (conflict::outcome(conflict::Change::kDelete, resolution) ==
            conflict::Outcome::kRemoteDelete &&
        settings::tombstones)
        pg::call([&] { tombstones::record(map.local_relid, table_key); });

    // Each row meets the TRUNCATE as it would meet a DELETE. Only the rows
    // that stay are conflicts worth recording.
    conflict::Resolver resolver =
        map.resolvers[static_cast<size_t>(conflict::Type::kDeleteOriginDiffers)].resolver;
    if (resolver == conflict::Resolver::kUserFunction)
        resolver = conflict::default_resolver(conflict::Type::kDeleteOriginDiffers);
    std::vector<ItemPointerData> older;
    bool kept = false;
    TupleTableSlot *row = pg::call([&] { return table_slot(cs); });
    TableScanDesc scan =
        pg::call([&] { return table_beginscan(cs.rel, GetActiveSnapshot(), 0, nullptr); });
    while (pg::call([&] { return table_scan_getnextslot(scan, ForwardScanDirection, row); })) {
        conflict::KeyState state{conflict::KeyState::Kind::kRow,
                                 conflicts_.version_of(cs.rel, row)};
        std::optional<conflict::Type> row_type =
            conflict::classify(conflict::Change::kDelete, state, identity_.peer_node_id);
        std::optional<conflict::Resolution> decided;
        if (row_type)
            decided =
                conflict::resolve(*row_type, resolver, state.version, conflicts_.remote_version());
        if (decided == conflict::Resolution::kError)
            conflicts_.decide(cs, map, *row_type, row, none);  // throws: apply stops
        if (!decided || decided == conflict::Resolution::kApplyRemote) {
            older.push_back(row->tts_tid);
            continue;
        }
        kept = true;
        conflicts_.record(*row_type, conflict::Resolution::kKeepLocal, row, nullptr,
                          state.version.commit_time);
    }
    return pg::call([&] {
        table_endscan(scan);
        if (kept)
            for (ItemPointerData &tid : older)
                if (table_tuple_fetch_row_version(cs.rel, &tid, GetActiveSnapshot(), row))
                    delete_row(cs, row);
        end_change(cs);
        return kept;
    });
}

}  // namespace pgmesh::apply
