// Apply worker: one per peer. Streams the peer's own changes from its slot
// and applies them (apply.cpp) with this node's replication origin for that
// peer, so the origin's progress commits atomically with the data. After any
// crash streaming restarts right after the last applied commit: exactly once,
// in commit order.
//
// Feedback tells the peer what may be freed. Apply commits asynchronously,
// so each applied commit is remembered with its local commit LSN and reported
// as flushed only once local WAL is flushed past it; with nothing pending and
// no transaction open, everything received counts. Feedback goes out when the
// stream goes quiet and the positions moved, and at least every second.
//
// The same worker forwards (forward_main, for pgmesh.forward_missing): it
// streams a dead peer's transactions from another survivor's relay slot
// (relay.hpp, output_plugin.cpp) and applies them as that peer's, with our
// origin for it, so that each is applied once whichever way it arrives. It
// confirms nothing (the relay slot stays where it is, for the next survivor
// that needs it) and stops once our origin for the dead peer reaches
// `up_to`, or with an error once the survivor has sent all it has.
#include <algorithm>
#include <deque>
#include <optional>
#include <string>

#include "apply.hpp"
#include "catalog.hpp"
#include "ddl_lock.hpp"
#include "fault.hpp"
#include "guard.hpp"
#include "layout.hpp"
#include "node.hpp"
#include "origins.hpp"
#include "remote.hpp"
#include "shmem.hpp"
#include "walstream.hpp"
#include "workers.hpp"

namespace pgmesh::workers {

namespace {

constexpr long kFeedbackIntervalMs = 1000;
constexpr int kFramesPerClockCheck = 256;
// While applied commits wait for the local WAL flush (the WAL writer's
// delay), look again this often.
constexpr long kPendingFlushPollMs = 50;

apply::Applier *current_applier = nullptr;  // for the relcache callback

void invalidate_applier(Datum, Oid relid) {
    if (current_applier) current_applier->invalidate(relid);
}

void release_worker_slot(int, Datum arg) {
    auto *slot = reinterpret_cast<shmem::WorkerSlot *>(DatumGetPointer(arg));
    LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
    if (slot->pid == MyProcPid) {
        slot->pid = 0;
        slot->proc = nullptr;
        slot->connected = false;
        slot->holding = false;
    }
    LWLockRelease(shmem::state().lock);
}

// Names the remote transaction and change being applied in the context of
// every error and message raised while applying, as PostgreSQL's apply
// worker does with its ApplyErrorCallbackArg.
class ApplyErrorContext {
public:
    explicit ApplyErrorContext(const apply::Applier &applier) : applier_(applier) {
        callback_.callback = describe;
        callback_.arg = this;
        callback_.previous = error_context_stack;
        error_context_stack = &callback_;
    }
    ~ApplyErrorContext() {
        if (error_context_stack == &callback_) error_context_stack = callback_.previous;
    }
    ApplyErrorContext(const ApplyErrorContext &) = delete;
    ApplyErrorContext &operator=(const ApplyErrorContext &) = delete;

    // `error` with the apply context line. Errors PostgreSQL raised while
    // applying have it already; pgmesh's own (a conflict, a protocol
    // violation) get it here.
    pg::Error located(const pg::Error &error) const {
        pg::Error out = error;
        char line[kLineSize];
        applier_.describe_position(line, sizeof line);
        if (line[0] && out.context.find(line) == std::string::npos)
            out.context += out.context.empty() ? line : "\n" + std::string(line);
        return out;
    }

private:
    static constexpr size_t kLineSize = 512;

    static void describe(void *arg) {
        char line[kLineSize];
        static_cast<const ApplyErrorContext *>(arg)->applier_.describe_position(line, sizeof line);
        if (line[0]) errcontext("%s", line);
    }

    const apply::Applier &applier_;
    ErrorContextCallback callback_{};
};

class ApplyWorker {
public:
    ApplyWorker(Oid dboid, uint64_t peer_id, std::optional<ForwardJob> forward = std::nullopt)
        : dboid_(dboid), peer_id_(peer_id), forward_(forward) {}

    void run() {
        // A forwarding worker is not the peer's apply worker, and shows
        // in no status slot; its error goes to pgmesh.forward_missing.
        if (!forward_) attach_slot();
        try {
            stream();
        } catch (const pg::Error &e) {
            record_error(e.context.empty() ? e.message() : e.message() + "\nCONTEXT: " + e.context);
            throw;
        } catch (const std::exception &e) {
            record_error(e.what());
            throw;
        }
    }

private:
    void attach_slot() {
        slot_ = pg::call([&] {
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            shmem::WorkerSlot *s = shmem::worker_slot(dboid_, peer_id_, true);
            if (s) {
                s->pid = MyProcPid;
                s->proc = MyProc;
                s->connected = false;
                s->holding = false;
            }
            LWLockRelease(shmem::state().lock);
            if (s) before_shmem_exit(release_worker_slot, PointerGetDatum(s));
            return s;
        });
        if (!slot_)
            throw pg::Error(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED, "no free pgmesh worker slot", {},
                            "Raise max_worker_processes.");
    }

    void record_error(const std::string &message) {
        LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
        if (slot_) {
            strlcpy(slot_->last_error, message.c_str(), shmem::kErrorLength);
            slot_->connected = false;
        } else if (shmem::DatabaseSlot *d = shmem::database_slot(dboid_, false)) {
            strlcpy(d->forward_error, message.c_str(), shmem::kErrorLength);
        }
        LWLockRelease(shmem::state().lock);
    }

    template <typename F>
    void update_slot(F &&f) {
        if (!slot_) return;
        pg::call([&] {
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            f(*slot_);
            LWLockRelease(shmem::state().lock);
        });
    }

    uint64_t skip_lsn() {
        uint64_t lsn = 0;
        update_slot([&](shmem::WorkerSlot &s) { lsn = s.skip_lsn; });
        return lsn;
    }

    // Called at transaction boundaries only. Says so in the worker's slot
    // when it stays there, under the same lock as the check: a session in
    // pgmesh.hold_apply that sees every worker holding knows that none
    // will commit until it lets go.
    bool paused() {
        if (!slot_) return false;
        return pg::call([&] {
            LWLockAcquire(shmem::state().lock, LW_EXCLUSIVE);
            shmem::DatabaseSlot *d = shmem::database_slot(dboid_, false);
            bool p = d && (d->apply_paused || d->apply_holds > 0);
            slot_->holding = p;
            LWLockRelease(shmem::state().lock);
            return p;
        });
    }

    void stream() {
        pg::call([] {
            // No user's schema may put a function or operator into what
            // apply runs (CVE-2020-14349): user code qualifies its names.
            SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);
            SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_OVERRIDE);
            SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
            CacheRegisterRelcacheCallback(invalidate_applier, (Datum)0);
            StartTransactionCommand();
        });
        catalog::Nodes nodes = catalog::read_nodes();
        const catalog::Node *peer = nodes.find(peer_id_);
        // Forwarding streams from a survivor, not from the (dead) peer.
        const catalog::Node *source = forward_ ? nodes.find(forward_->source_id) : peer;
        if (!nodes.local_id || !peer || !source || source->state != node::State::kReady ||
            (forward_ ? peer->state == node::State::kParted : peer->state != node::State::kReady)) {
            pg::call([] { CommitTransactionCommand(); });
            if (forward_)
                throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                                "cannot forward: the nodes are not as pgmesh.forward_missing saw "
                                "them");
            return;  // nothing to stream from: the manager will notice
        }
        uint64_t local_id = *nodes.local_id;
        int64_t copied_until = nodes.copied_until;
        std::string source_dsn = source->dsn;
        std::string source_name = source->name;
        std::string peer_name = peer->name;
        peer_name_ = peer_name;
        fault::set_worker_peer(peer_name.c_str());
        // pg_stat_activity.application_name tells the workers apart.
        const std::string application_name =
            (forward_ ? "pgmesh forward from " + source_name : "pgmesh apply from " + peer_name);
        pg::call([&] { pgstat_report_appname(application_name.c_str()); });
        std::string slot_name = forward_ ? node::relay_slot_name(forward_->source_id)
                                         : node::slot_name(peer_id_, local_id);
        RepOriginId origin = origins::find_or_create(node::origin_name(peer_id_));
        pg::call([] { CommitTransactionCommand(); });

        pg::call([] { fault::point("apply_connect"); });
        remote::Connection conn =
            remote::connect(source_dsn, true,
                            (forward_ ? "pgmesh forward " : "pgmesh apply ") +
                                node::hex_id(local_id) + " from " + source_name);
        // Our origin for the peer, taken only once connected: while the
        // peer is unreachable (dead, being parted) a forwarding worker may
        // need it, and two sessions cannot hold one origin.
        origins::start_session(origin);
        uint64_t start_lsn = pg::call([] { return replorigin_session_get_progress(false); });
        flushed_remote_ = start_lsn;
        forwarded_up_to_ = start_lsn;
        if (forward_ && start_lsn >= forward_->up_to) return;  // nothing missing
        // A replication connection takes no parameters (nor the extended
        // protocol): values are quoted by libpq.
        remote::Result exists = remote::exec(
            conn.get(), "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = " +
                            remote::quote_literal(conn.get(), slot_name));
        if (PQntuples(exists.get()) == 0) {
            if (forward_)
                throw pg::Error(
                    ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                    "node \"" + source_name + "\" has no relay slot \"" + slot_name + "\"",
                    "Without it, it cannot forward what it applied from node \"" + peer_name +
                        "\".");
            remote::create_logical_slot(conn.get(), slot_name, remote::SlotSnapshot::kNothing);
        }
        if (forward_) {
            // Where in its WAL the source's last commit of the dead peer's
            // transactions ends; once the stream has passed it, the source
            // has sent all it holds of them. Its origin's local_lsn says
            // where, unless the source restarted since (a restart keeps
            // only remote_lsn), and then every commit it applied is in WAL
            // already flushed. Not the flushed WAL end alone: apply commits
            // asynchronously, so the last commits may lie beyond it, and
            // forwarding then gave up with them on their way (issue 22).
            remote::Result end = remote::exec(
                conn.get(),
                "SELECT pg_catalog.max(lsn)::text FROM (SELECT "
                "pg_catalog.pg_current_wal_flush_lsn() AS lsn UNION ALL SELECT local_lsn FROM "
                "pg_catalog.pg_replication_origin_status WHERE external_id = " +
                    remote::quote_literal(conn.get(), node::origin_name(peer_id_)) + ") AS ends");
            source_end_ = walstream::parse_lsn(remote::value(end.get(), 0, 0).value_or(""))
                              .value_or(UINT64_MAX);
        }
        std::vector<proto::StartOption> options = {
            {proto::start_option::kProtoVersion, std::to_string(proto::kProtocolVersion)},
            {proto::start_option::kSubscriberNodeId, std::to_string(local_id)},
            {proto::start_option::kBinaryLayout, binary_layout()},
            {proto::start_option::kEncoding, pg::call([] { return GetDatabaseEncodingName(); })},
        };
        if (forward_) {
            options.push_back({proto::start_option::kForwardOrigin, std::to_string(peer_id_)});
            options.push_back(
                {proto::start_option::kForwardAfterLsn, walstream::format_lsn(start_lsn)});
        }
        // A transaction the operator asked to skip may be one the peer
        // cannot even send (docs/conflicts.md): the peer sends it empty.
        if (uint64_t skip = skip_lsn())
            options.push_back({proto::start_option::kSkipCommitLsn, walstream::format_lsn(skip)});
        remote::exec(conn.get(),
                     "START_REPLICATION SLOT " + remote::quote_identifier(conn.get(), slot_name) +
                         // The relay slot is in the source's WAL, where
                         // its own position is the start.
                         " LOGICAL " + walstream::format_lsn(forward_ ? 0 : start_lsn) + " (" +
                         proto::format_start_options(options) + ")",
                     PGRES_COPY_BOTH);
        update_slot([&](shmem::WorkerSlot &s) {
            s.connected = true;
            s.last_error[0] = '\0';
            s.applied_lsn = std::max<uint64_t>(s.applied_lsn, start_lsn);
        });
        pg::call([&] {
            if (forward_)
                ereport(LOG, (errmsg("pgmesh forwarding node \"%s\"'s transactions after %X/%X "
                                     "up to %X/%X from node \"%s\", whose WAL holds them up "
                                     "to %X/%X",
                                     peer_name.c_str(), LSN_FORMAT_ARGS(start_lsn),
                                     LSN_FORMAT_ARGS(forward_->up_to), source_name.c_str(),
                                     LSN_FORMAT_ARGS(source_end_))));
            else
                ereport(LOG, (errmsg("pgmesh apply worker streaming from node \"%s\" at %X/%X",
                                     peer_name.c_str(), LSN_FORMAT_ARGS(start_lsn))));
        });
        source_name_ = source_name;

        apply::Applier applier(
            apply::ApplyIdentity{dboid_, local_id, peer_id_, peer_name, copied_until});
        // The relcache callback must never see the applier once it is gone
        // (error cleanup after this frame still processes invalidations).
        struct Registration {
            explicit Registration(apply::Applier *a) { current_applier = a; }
            ~Registration() { current_applier = nullptr; }
        } registration(&applier);
        ApplyErrorContext context(applier);
        try {
            loop(conn.get(), applier);
        } catch (const pg::Error &e) {
            if (!applier.in_transaction()) throw;
            // Record the failure once its transaction is rolled back, and
            // name the remote transaction, so that the operator can skip it.
            pg::call([] { AbortCurrentTransaction(); });
            applier.record_failure(e);
            throw context.located(e);
        }
    }

    void loop(PGconn *conn, apply::Applier &applier) {
        TimestampTz last_feedback = 0;
        int frames_since_clock_check = 0;
        while (!finished_) {
            bool hold = !applier.in_transaction() && paused();
            if (!hold) {
                char *raw = nullptr;
                int len = PQgetCopyData(conn, &raw, 1);
                if (len > 0) {
                    std::unique_ptr<char, decltype(&PQfreemem)> buffer(raw, PQfreemem);
                    handle_frame(
                        conn, applier,
                        {reinterpret_cast<const uint8_t *>(raw), static_cast<size_t>(len)});
                    if (forward_) check_source_has_more(applier);
                    // Reading the clock per frame costs more than it
                    // tells: while data flows, look every so many frames.
                    if (++frames_since_clock_check >= kFramesPerClockCheck) {
                        frames_since_clock_check = 0;
                        maybe_feedback(conn, applier, last_feedback, false);
                        if (!applier.in_transaction() && !forward_)
                            ddl_lock::apply_worker_tick(peer_id_);
                    }
                    continue;
                }
                if (len == -1) {
                    // The peer's walsender stopped, with an error that says
                    // why (e.g. a change it cannot send).
                    remote::Result end(PQgetResult(conn));
                    if (end && PQresultStatus(end.get()) == PGRES_FATAL_ERROR)
                        remote::throw_result_error(conn, end.get());
                    throw pg::Error(ERRCODE_CONNECTION_FAILURE,
                                    "peer ended the replication stream");
                }
                if (len < -1)
                    throw pg::Error(ERRCODE_CONNECTION_FAILURE,
                                    std::string("lost replication connection to peer: ") +
                                        PQerrorMessage(conn));
            }
            if (hold) {
                maybe_feedback(conn, applier, last_feedback, false);
                // Paused: leave the peer's data unread (TCP pushes back on the
                // walsender) and keep the connection alive with feedback.
                pg::wait_latch(200);
                continue;
            }
            // A global write lock of the peer's: hold or drop its blocks.
            if (!applier.in_transaction() && !forward_) ddl_lock::apply_worker_tick(peer_id_);
            // The stream is quiet: tell the peer where we are if that moved.
            if (positions_moved(applier))
                send_feedback(conn, applier);
            else
                maybe_feedback(conn, applier, last_feedback, false);
            remote::wait_socket(conn, false,
                                pending_.empty() ? kFeedbackIntervalMs : kPendingFlushPollMs);
            if (!PQconsumeInput(conn))
                throw pg::Error(
                    ERRCODE_CONNECTION_FAILURE,
                    std::string("lost replication connection to peer: ") + PQerrorMessage(conn));
        }
    }

    // Forwarding: the stream has passed the source's last commit of the
    // peer's transactions, so none is still to come, yet we have not
    // reached up_to. Its relay slot had moved past what we lack (or lost
    // it): stop, rather than call this complete.
    void check_source_has_more(const apply::Applier &applier) const {
        if (finished_ || applier.in_transaction() || received_lsn_ < source_end_) return;
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + source_name_ + "\" has no more transactions of node \"" +
                            peer_name_ +
                            "\" to forward, but this node has applied them only up to " +
                            walstream::format_lsn(forwarded_up_to_) + " of " +
                            walstream::format_lsn(forward_->up_to),
                        "Its relay slot no longer holds them.");
    }

    void handle_frame(PGconn *conn, apply::Applier &applier, std::span<const uint8_t> bytes) {
        walstream::Frame frame = walstream::parse_frame(bytes);
        if (auto *ka = std::get_if<walstream::Keepalive>(&frame)) {
            received_lsn_ = std::max(received_lsn_, ka->end_lsn);
            bool idle = !applier.in_transaction();
            update_slot([&](shmem::WorkerSlot &s) {
                s.received_lsn = received_lsn_;
                // Between transactions everything sent so far is applied.
                if (idle) s.applied_lsn = std::max<uint64_t>(s.applied_lsn, received_lsn_);
            });
            if (ka->reply_requested) send_feedback(conn, applier);
            return;
        }
        auto &data = std::get<walstream::XLogData>(frame);
        received_lsn_ = std::max({received_lsn_, data.start_lsn, data.end_lsn});
        // A batch: one or more messages back to back (docs/protocol.md).
        std::span<const uint8_t> rest = data.payload;
        do {
            size_t used = 0;
            proto::Decoded message = proto::decode_next(rest, used);
            rest = rest.subspan(used);
            handle_message(applier, message);
        } while (!rest.empty());
    }

    void handle_message(apply::Applier &applier, const proto::Decoded &message) {
        if (std::holds_alternative<proto::Begin>(message)) applier.skip_transaction_at(skip_lsn());
        applier.handle(message);
        if (std::holds_alternative<proto::Message>(message) &&
            applier.clock_tick() > caught_up_to_) {
            caught_up_to_ = applier.clock_tick();
            update_slot([&](shmem::WorkerSlot &s) {
                s.caught_up_to = std::max(s.caught_up_to, caught_up_to_);
            });
        }
        if (auto *commit = std::get_if<proto::Commit>(&message)) {
            TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
            bool skipped = applier.skipping();
            if (skipped)
                pg::call([&] {
                    ereport(LOG, (errmsg("pgmesh skipped remote transaction from node \"%s\" "
                                         "with commit LSN %X/%X, as asked",
                                         peer_name_.c_str(), LSN_FORMAT_ARGS(commit->commit_lsn))));
                });
            XLogRecPtr local_end = pg::call([] { return XactLastCommitEnd; });
            // Apply commits asynchronously; after DDL, whose holder waits for
            // our feedback before it releases a write lock, flush now rather
            // than within wal_writer_delay.
            if (applier.replayed_ddl()) pg::call([&] { XLogFlush(local_end); });
            pending_.push_back(AppliedCommit{commit->end_lsn, local_end});
            if (forward_) {
                forwarded_up_to_ = commit->end_lsn;
                // part_node marks the peer parted once we return: what we
                // applied must survive a crash of ours by then.
                if (commit->end_lsn >= forward_->up_to) {
                    pg::call([&] { XLogFlush(local_end); });
                    finished_ = true;
                }
                pg::call([] { fault::point("forward_commit"); });
            }
            update_slot([&](shmem::WorkerSlot &s) {
                if (skipped) s.skip_lsn = 0;
                s.applied_lsn = commit->end_lsn;
                s.received_lsn = received_lsn_;
                s.last_commit_time = commit->commit_time;
                s.caught_up_to = std::max(s.caught_up_to, commit->commit_time);
                s.last_message_time = now;
                s.applied_transactions++;
            });
        }
    }

    void maybe_feedback(PGconn *conn, apply::Applier &applier, TimestampTz &last, bool force) {
        TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
        if (!force && !TimestampDifferenceExceeds(last, now, kFeedbackIntervalMs)) return;
        send_feedback(conn, applier);
        last = now;
    }

    // The remote position whose changes are durable here.
    uint64_t flushed_position(apply::Applier &applier) {
        XLogRecPtr local_flush = pg::call([] { return GetFlushRecPtr(nullptr); });
        while (!pending_.empty() && pending_.front().local_end <= local_flush) {
            flushed_remote_ = std::max(flushed_remote_, pending_.front().remote_end);
            pending_.pop_front();
        }
        if (!applier.in_transaction() && pending_.empty())
            return std::max(flushed_remote_, received_lsn_);
        return flushed_remote_;
    }

    bool positions_moved(apply::Applier &applier) {
        if (forward_) return false;  // nothing to report: see send_feedback
        return received_lsn_ != sent_write_ || flushed_position(applier) != sent_flush_;
    }

    void send_feedback(PGconn *conn, apply::Applier &applier) {
        pg::call([] { fault::point("apply_feedback"); });
        uint64_t flushed = forward_ ? 0 : flushed_position(applier);
        TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
        // Forwarding confirms nothing, so that the relay slot stays for the
        // next survivor; with nothing written either, the walsender keeps
        // sending keepalives, which tell when it has sent all it has.
        std::string msg =
            walstream::standby_status(forward_ ? 0 : received_lsn_, flushed, flushed, now, false);
        if (PQputCopyData(conn, msg.data(), static_cast<int>(msg.size())) <= 0 || PQflush(conn))
            throw pg::Error(
                ERRCODE_CONNECTION_FAILURE,
                std::string("could not send feedback to peer: ") + PQerrorMessage(conn));
        sent_write_ = received_lsn_;
        sent_flush_ = flushed;
    }

    struct AppliedCommit {
        uint64_t remote_end;   // the peer's commit end LSN
        XLogRecPtr local_end;  // our commit record's end
    };

    Oid dboid_;
    uint64_t peer_id_;
    std::optional<ForwardJob> forward_;
    // Forwarding: where in the source's WAL its last commit of the peer's
    // transactions ends.
    uint64_t source_end_ = UINT64_MAX;
    uint64_t forwarded_up_to_ = 0;  // forwarding: the peer's commit LSN applied up to
    bool finished_ = false;         // forwarding: up_to reached
    std::string source_name_;
    shmem::WorkerSlot *slot_ = nullptr;
    uint64_t received_lsn_ = 0;
    int64_t caught_up_to_ = 0;           // the peer's newest clock tick applied
    std::deque<AppliedCommit> pending_;  // applied, local WAL not yet flushed
    uint64_t flushed_remote_ = 0;        // durable here up to this remote LSN
    uint64_t sent_write_ = 0;            // positions last reported
    uint64_t sent_flush_ = 0;
    std::string peer_name_;
};

}  // namespace

void apply_main(Oid dboid, uint64_t peer_node_id) {
    pg::call([&] { BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0); });
    ApplyWorker worker(dboid, peer_node_id);
    worker.run();
}

void forward_main(Oid dboid, uint64_t dead_node_id, ForwardJob job) {
    pg::call([&] { BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0); });
    ApplyWorker worker(dboid, dead_node_id, job);
    worker.run();
}

}  // namespace pgmesh::workers
