// Output plugin "pgmesh": decodes this node's own changes into the pgmesh
// protocol (src/core/protocol.hpp, docs/protocol.md).
//
// Loop prevention: filter_by_origin drops every change that carries a
// replication origin, i.e. everything an apply worker wrote. In a full mesh
// each node therefore receives each peer's own changes directly from it.
//
// Forwarding (option forward_origin_node_id, on the relay slot only): the
// other way round. Only the transactions this node applied from one dead
// node D go out, each as D sent it: D's node id, D's commit LSN (the origin
// LSN of our commit record) and D's commit time, so that the survivor that
// takes them applies them as D's, with its origin for D. Those at or below
// forward_after_lsn (the survivor has them) are left out, and every other
// one goes out even when empty, so that the survivor's origin reaches ours.
//
// BEGIN is sent lazily with the first replicated change, so transactions that
// touch nothing replicated cost the subscriber nothing.
//
// Batching: messages are encoded into one buffer and written as one frame at
// COMMIT, or earlier once the buffer holds kBatchBytes. Each write costs the
// walsender a send() (and the subscriber a wakeup and a recv()); a pgbench
// transaction is six messages, so one frame instead of six is most of what a
// small transaction costs the node that writes it.
//
// The callbacks below keep no C++ objects with destructors on their stack
// (state, including messages being built, lives in PluginState), so
// PostgreSQL errors may longjmp through them as through C; pg::entry keeps
// C++ exceptions from escaping into PostgreSQL.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "catalog.hpp"
#include "guard.hpp"
#include "layout.hpp"
#include "node.hpp"
#include "protocol.hpp"
#include "replicated.hpp"
#include "spi.hpp"
#include "walstream.hpp"

namespace pgmesh::output {

namespace {

namespace proto = pgmesh::proto;

struct ColumnOut {
    AttrNumber attnum;
    Oid type_oid;
    bool binary;
    bool varlena;
    FmgrInfo out_func;  // typsend when binary, else typoutput
};

struct RelationOut {
    bool replicated = false;
    // UPDATE and DELETE can name their row to the peers (replicated.hpp).
    bool identifies_rows = false;
    // REPLICA IDENTITY FULL: every UPDATE logs the whole old row, so the old
    // key goes out only when the key changed.
    bool full_identity = false;
    bool described = false;  // RELATION sent on this stream since the last change
    bool columns_ready = false;
    std::vector<ColumnOut> columns;
};

struct PluginState {
    MemoryContext change_context = nullptr;
    uint64_t local_node_id = 0;
    std::string local_node_name;
    // pgmesh.skip_transaction on the subscriber: this transaction goes out
    // empty (BEGIN, COMMIT), so that the subscriber records the skip.
    XLogRecPtr skip_lsn = InvalidXLogRecPtr;
    // The node that streams (option subscriber_node_id): 0 when not given,
    // as by a tool that peeks at the slot.
    uint64_t subscriber_node_id = 0;
    bool skipping = false;
    // Forwarding: the dead node, our origin for it, and what the
    // subscriber has of it already.
    uint64_t forward_node_id = 0;
    RepOriginId forward_origin = InvalidRepOriginId;
    // Where in our WAL that origin was made: before it, the same origin
    // number belonged to a node that parted since.
    XLogRecPtr forward_origin_created = InvalidXLogRecPtr;
    XLogRecPtr forward_after = InvalidXLogRecPtr;
    bool forward_skip = false;  // the current transaction is one the subscriber has
    bool binary_allowed = false;
    bool begin_sent = false;
    std::unordered_map<Oid, RelationOut> relations;
    proto::Encoder encoder;
    // Messages under construction live here rather than on callback stacks.
    proto::Relation relation_scratch;
    proto::Truncate truncate_scratch;
};

// The relcache invalidation callback has no argument for our state; there is
// one decoding context per walsender process.
PluginState *current_state = nullptr;

// Invalidation can arrive in the middle of a callback (any catalog access
// accepts it) while the callback holds a reference to the entry: entries are
// only marked stale here, never erased.
void invalidate_relation(Datum, Oid relid) {
    if (!current_state) return;
    for (auto &[id, out] : current_state->relations) {
        if (OidIsValid(relid) && id != relid) continue;
        out.columns_ready = false;
        out.described = false;
    }
}

PluginState &state_of(LogicalDecodingContext *ctx) {
    return *static_cast<PluginState *>(ctx->output_plugin_private);
}

bool type_is_builtin(Oid type_oid) {
    if (type_oid >= FirstNormalObjectId) return false;
    Oid element = get_element_type(type_oid);
    return !OidIsValid(element) || element < FirstNormalObjectId;
}

void prepare_columns(PluginState &st, RelationOut &out, Relation rel) {
    TupleDesc desc = RelationGetDescr(rel);
    out.columns.clear();
    for (int i = 0; i < desc->natts; i++) {
        Form_pg_attribute att = TupleDescAttr(desc, i);
        if (att->attisdropped || att->attgenerated) continue;
        ColumnOut col{};
        col.attnum = att->attnum;
        col.type_oid = att->atttypid;
        col.binary = st.binary_allowed && type_is_builtin(att->atttypid);
        Oid func = InvalidOid;
        if (col.binary)
            getTypeBinaryOutputInfo(att->atttypid, &func, &col.varlena);
        else
            getTypeOutputInfo(att->atttypid, &func, &col.varlena);
        fmgr_info_cxt(func, &col.out_func, CacheMemoryContext);
        out.columns.push_back(col);
    }
}

RelationOut &relation_out(PluginState &st, Relation rel) {
    RelationOut &out = st.relations[RelationGetRelid(rel)];
    if (!out.columns_ready) {
        // Marked ready first: an invalidation while preparing marks it stale
        // again, and the next change prepares it anew.
        out.columns_ready = true;
        out.described = false;
        out.replicated = replicated::is_replicated(rel);
        out.identifies_rows = replicated::identifies_rows(rel);
        out.full_identity = rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL;
        if (out.replicated) prepare_columns(st, out, rel);
    }
    return out;
}

// A frame this size is flushed before the transaction ends, so that a large
// transaction streams in pieces instead of piling up in the walsender.
constexpr size_t kBatchBytes = 64 * 1024;

// Writes every complete message encoded so far as one frame.
void flush_batch(LogicalDecodingContext *ctx, PluginState &st, bool last) {
    if (st.encoder.size() == 0) return;
    OutputPluginPrepareWrite(ctx, last);
    auto bytes = st.encoder.bytes();
    appendBinaryStringInfo(ctx->out, reinterpret_cast<const char *>(bytes.data()),
                           static_cast<int>(bytes.size()));
    OutputPluginWrite(ctx, last);
    st.encoder.clear();
}

void flush_if_full(LogicalDecodingContext *ctx, PluginState &st) {
    if (st.encoder.size() >= kBatchBytes) flush_batch(ctx, st, false);
}

void send_begin_once(LogicalDecodingContext *ctx, PluginState &st, ReorderBufferTXN *txn) {
    if (st.begin_sent) return;
    // Our commit record carries the origin's commit time as its own when it
    // has an origin (decode.c), so commit_time is D's when forwarding.
    if (st.forward_node_id)
        st.encoder.begin(proto::Begin{st.forward_node_id, txn->xid, txn->origin_lsn,
                                      txn->xact_time.commit_time});
    else
        st.encoder.begin(
            proto::Begin{st.local_node_id, txn->xid, txn->final_lsn, txn->xact_time.commit_time});
    st.begin_sent = true;
}

void send_relation_once(LogicalDecodingContext *ctx, PluginState &st, RelationOut &out,
                        Relation rel) {
    if (out.described) return;
    TupleDesc desc = RelationGetDescr(rel);
    Bitmapset *key_attrs = replicated::key_attrs(rel);
    // The message is built in the state, not on this stack: PostgreSQL
    // calls below may longjmp past this frame.
    proto::Relation &msg = st.relation_scratch;
    msg.columns.clear();
    msg.relid = RelationGetRelid(rel);
    msg.schema = get_namespace_name(RelationGetNamespace(rel));
    msg.name = RelationGetRelationName(rel);
    for (const ColumnOut &col : out.columns) {
        Form_pg_attribute att = TupleDescAttr(desc, col.attnum - 1);
        const char *type_name = format_type_extended(
            att->atttypid, att->atttypmod, FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
        bool is_key = bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, key_attrs);
        msg.columns.push_back(
            proto::Column{NameStr(att->attname), att->atttypid, type_name, att->atttypmod, is_key});
    }
    st.encoder.relation(msg);
    out.described = true;
}

// Appends natts values of `tuple` (only key columns when keys_only). A
// TOASTed value an UPDATE left unchanged comes from `unchanged_from` (the
// old row under REPLICA IDENTITY FULL, which PostgreSQL logs whole) when
// given: a peer may need the whole row to re-create it.
void encode_tuple(PluginState &st, const RelationOut &out, Relation rel, HeapTuple tuple,
                  bool keys_only, Bitmapset *key_attrs, HeapTuple unchanged_from = nullptr) {
    TupleDesc desc = RelationGetDescr(rel);
    for (const ColumnOut &col : out.columns) {
        if (keys_only &&
            !bms_is_member(col.attnum - FirstLowInvalidHeapAttributeNumber, key_attrs)) {
            st.encoder.value(proto::ValueKind::kNull);
            continue;
        }
        bool isnull = false;
        Datum value = heap_getattr(tuple, col.attnum, desc, &isnull);
        if (isnull) {
            st.encoder.value(proto::ValueKind::kNull);
            continue;
        }
        if (col.varlena && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(value)) && unchanged_from)
            value = heap_getattr(unchanged_from, col.attnum, desc, &isnull);
        if (col.varlena && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(value))) {
            // A TOASTed value the UPDATE did not change: decoding has no
            // copy of it; the subscriber keeps its own.
            st.encoder.value(proto::ValueKind::kUnchanged);
            continue;
        }
        if (col.varlena) value = PointerGetDatum(PG_DETOAST_DATUM(value));
        if (col.binary) {
            bytea *bytes = SendFunctionCall(const_cast<FmgrInfo *>(&col.out_func), value);
            st.encoder.value(proto::ValueKind::kBinary,
                             std::string_view(VARDATA(bytes), VARSIZE(bytes) - VARHDRSZ));
        } else {
            char *text = OutputFunctionCall(const_cast<FmgrInfo *>(&col.out_func), value);
            st.encoder.value(proto::ValueKind::kText, std::string_view(text));
        }
    }
}

// A change the peers could not apply as sent: stop the stream with an error
// that says why, rather than leave the peers behind in silence.
[[noreturn]] void refuse_change(const PluginState &st, Relation rel, ReorderBufferTXN *txn,
                                const char *what) {
    ereport(ERROR,
            (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
             errmsg("pgmesh cannot replicate %s on table \"%s.%s\" (transaction %u, commit "
                    "LSN %X/%X), which has no primary key or has REPLICA IDENTITY NOTHING",
                    what, get_namespace_name(RelationGetNamespace(rel)),
                    RelationGetRelationName(rel), txn->xid, LSN_FORMAT_ARGS(txn->final_lsn)),
             errdetail("The transaction, on node \"%s\", changed rows that other nodes cannot "
                       "find without their key.",
                       st.local_node_name.c_str()),
             errhint("pgmesh refuses such statements before they commit; this one got past "
                     "that check. To go on without it, run on the receiving node: SELECT "
                     "pgmesh.skip_transaction('%s', '%X/%X');",
                     st.local_node_name.c_str(), LSN_FORMAT_ARGS(txn->final_lsn))));
    pg_unreachable();
}

// Whether an UPDATE under REPLICA IDENTITY FULL changed the key.
bool key_changed(Relation rel, HeapTuple old_tuple, HeapTuple new_tuple, Bitmapset *key_attrs) {
    TupleDesc desc = RelationGetDescr(rel);
    int member = -1;
    while ((member = bms_next_member(key_attrs, member)) >= 0) {
        AttrNumber attnum = member + FirstLowInvalidHeapAttributeNumber;
        Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);
        bool old_null = false;
        bool new_null = false;
        Datum old_value = heap_getattr(old_tuple, attnum, desc, &old_null);
        Datum new_value = heap_getattr(new_tuple, attnum, desc, &new_null);
        if (old_null != new_null) return true;
        if (!old_null && !datumIsEqual(old_value, new_value, att->attbyval, att->attlen))
            return true;
    }
    return false;
}

uint64_t option_node_id(const char *name, const char *value) {
    char *end = nullptr;
    errno = 0;
    unsigned long long id = strtoull(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0' || id == 0 || id > INT64_MAX)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid pgmesh output plugin option %s \"%s\"", name, value)));
    return id;
}

const char *option_string(DefElem *elem) {
    if (elem->arg == nullptr || !IsA(elem->arg, String))
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("pgmesh output plugin option \"%s\" needs a value", elem->defname)));
    return strVal(elem->arg);
}

void on_startup(LogicalDecodingContext *ctx, OutputPluginOptions *options, bool is_init) {
    auto owned = std::make_unique<PluginState>();
    PluginState &st = *owned;
    options->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
    options->receive_rewrites = false;
    st.change_context =
        AllocSetContextCreate(ctx->context, "pgmesh change", ALLOCSET_DEFAULT_SIZES);
    ctx->output_plugin_private = owned.release();
    current_state = &st;
    static bool callback_registered = false;
    if (!callback_registered) {
        CacheRegisterRelcacheCallback(invalidate_relation, (Datum)0);
        callback_registered = true;
    }
    // Slot creation, and pg_replication_slot_advance (the relay slot,
    // relay.hpp): no options, and nothing comes out.
    if (is_init || ctx->fast_forward) return;

    bool version_given = false;
    ListCell *lc;
    foreach (lc, ctx->output_plugin_options) {
        DefElem *elem = lfirst_node(DefElem, lc);
        const char *value = option_string(elem);
        std::string_view name(elem->defname);
        if (name == proto::start_option::kProtoVersion) {
            if (strcmp(value, std::to_string(proto::kProtocolVersion).c_str()) != 0)
                ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                                errmsg("pgmesh protocol version %s is not supported", value),
                                errdetail("This node speaks protocol version %u.",
                                          proto::kProtocolVersion),
                                errhint("Run the same pgmesh version on every node.")));
            version_given = true;
        } else if (name == proto::start_option::kBinaryLayout) {
            st.binary_allowed = binary_layout() == value;
        } else if (name == proto::start_option::kEncoding) {
            if (strcmp(value, GetDatabaseEncodingName()) != 0)
                ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                                errmsg("peer database encoding %s differs from this node's %s",
                                       value, GetDatabaseEncodingName()),
                                errhint("Create every node's database with the same encoding.")));
        } else if (name == proto::start_option::kSkipCommitLsn) {
            st.skip_lsn = DatumGetLSN(DirectFunctionCall1(pg_lsn_in, CStringGetDatum(value)));
        } else if (name == proto::start_option::kSubscriberNodeId) {
            st.subscriber_node_id = option_node_id(elem->defname, value);
        } else if (name == proto::start_option::kForwardOrigin) {
            st.forward_node_id = option_node_id(elem->defname, value);
        } else if (name == proto::start_option::kForwardAfterLsn) {
            st.forward_after = DatumGetLSN(DirectFunctionCall1(pg_lsn_in, CStringGetDatum(value)));
        } else {
            ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                            errmsg("unknown pgmesh output plugin option \"%s\"", elem->defname)));
        }
    }
    if (!version_given)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("pgmesh output plugin needs option proto_version")));
    if (st.forward_node_id && !st.subscriber_node_id)
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("pgmesh output plugin option forward_origin_node_id needs "
                               "subscriber_node_id")));
}

// A node streams only from its own slot here, and never once it parted
// from the group: what it would receive is no longer its business, and its
// confirmations would free WAL that the survivors may still need.
void check_subscriber(LogicalDecodingContext *ctx, const catalog::Nodes &nodes, uint64_t subscriber,
                      bool forwarding) {
    // Forwarded transactions come from the relay slot, and only from it:
    // no other slot of ours holds them.
    std::string own_slot = forwarding ? node::relay_slot_name(*nodes.local_id)
                                      : node::slot_name(*nodes.local_id, subscriber);
    std::string slot = pg::call([&] { return NameStr(ctx->slot->data.name); });
    if (slot != own_slot)
        throw pg::Error(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "replication slot \"" + slot + "\" does not belong to node " +
                std::to_string(subscriber),
            "Node " + std::to_string(subscriber) + " streams from slot \"" + own_slot + "\".");
    const catalog::Node *peer = nodes.find(subscriber);
    if (peer && peer->state == node::State::kParted)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + peer->name + "\" has parted from the group", {},
                        "A parted node does not come back: to return, it joins again, as a new "
                        "node from a fresh database.");
}

// Forwarding: our origin for the dead node, whose transactions go out, and
// where in our WAL it was made.
struct ForwardedOrigin {
    RepOriginId id;
    XLogRecPtr created;
};

ForwardedOrigin forwarded_origin(const catalog::Nodes &nodes, uint64_t dead) {
    const catalog::Node *node = nodes.find(dead);
    if (!node || node->is_local)
        throw pg::Error(ERRCODE_INVALID_PARAMETER_VALUE,
                        "cannot forward the transactions of node " + std::to_string(dead),
                        node ? "It is this node." : "No such node is known here.");
    RepOriginId origin =
        pg::call([&] { return replorigin_by_name(node::origin_name(dead).c_str(), true); });
    if (origin == InvalidRepOriginId)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + nodes.require_local().name +
                            "\" has no transactions of node \"" + node->name + "\" to forward",
                        "It has no replication origin for that node.");
    spi::Rows rows = spi::query(
        "SELECT origin_created_at::text FROM pgmesh.relay_coverage WHERE origin_node_id = $1",
        {spi::int8(static_cast<int64_t>(dead))});
    std::optional<uint64_t> created =
        rows.empty() || !rows[0][0] ? std::nullopt : walstream::parse_lsn(*rows[0][0]);
    if (!created)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "node \"" + nodes.require_local().name + "\" cannot tell node \"" +
                            node->name + "\"'s transactions from those of an earlier node",
                        "pgmesh.relay_coverage does not say when its origin for that node was "
                        "made.");
    return ForwardedOrigin{origin, *created};
}

}  // namespace

// The C++ side of each callback; the extern "C" shims below call these
// through pg::entry.
void startup(LogicalDecodingContext *ctx, OutputPluginOptions *options, bool is_init) {
    on_startup(ctx, options, is_init);
    if (is_init || ctx->fast_forward) return;
    PluginState &st = state_of(ctx);
    bool started = pg::call([] { return !IsTransactionState(); });
    if (started) pg::call([] { StartTransactionCommand(); });
    catalog::Nodes nodes = catalog::read_nodes();
    if (st.forward_node_id) {
        ForwardedOrigin origin = forwarded_origin(nodes, st.forward_node_id);
        st.forward_origin = origin.id;
        st.forward_origin_created = origin.created;
    }
    if (started) pg::call([] { CommitTransactionCommand(); });
    st.local_node_id = nodes.require_local().id;
    st.local_node_name = nodes.require_local().name;
    if (st.subscriber_node_id)
        check_subscriber(ctx, nodes, st.subscriber_node_id, st.forward_node_id != 0);
}

void shutdown(LogicalDecodingContext *ctx) {
    std::unique_ptr<PluginState> owned(static_cast<PluginState *>(ctx->output_plugin_private));
    ctx->output_plugin_private = nullptr;
    if (current_state == owned.get()) current_state = nullptr;
}

void begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn) {
    PluginState &st = state_of(ctx);
    st.begin_sent = false;
    st.skipping = st.skip_lsn != InvalidXLogRecPtr && txn->final_lsn == st.skip_lsn;
    st.encoder.clear();  // nothing of an earlier, failed callback goes out
    if (!st.forward_node_id) return;
    st.forward_skip =
        txn->origin_lsn <= st.forward_after || txn->final_lsn < st.forward_origin_created;
    // Replicated DDL is not in our WAL as the message the dead node sent,
    // only as its effect on our catalog: the survivor could not run it.
    // Stop rather than forward the rows that follow it without it.
    if (!st.forward_skip && rbtxn_has_catalog_changes(txn))
        ereport(ERROR,
                (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                 errmsg("pgmesh cannot forward the transaction of node %llu with commit LSN "
                        "%X/%X: it changed the schema (DDL or TRUNCATE)",
                        static_cast<unsigned long long>(st.forward_node_id),
                        LSN_FORMAT_ARGS(txn->origin_lsn)),
                 errhint("Forwarding carries row changes only. Start the dead node again so that "
                         "every survivor streams the rest from it, or part the survivors that "
                         "lack it and join them again.")));
}

void commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn) {
    PluginState &st = state_of(ctx);
    if (st.skipping || (st.forward_node_id && !st.forward_skip)) {
        send_begin_once(ctx, st, txn);
        st.skipping = false;
    }
    OutputPluginUpdateProgress(ctx, !st.begin_sent);
    if (!st.begin_sent) return;
    if (st.forward_node_id)
        st.encoder.commit(
            proto::Commit{txn->origin_lsn, txn->origin_lsn, txn->xact_time.commit_time});
    else
        st.encoder.commit(proto::Commit{commit_lsn, txn->end_lsn, txn->xact_time.commit_time});
    flush_batch(ctx, st, true);
    st.begin_sent = false;
}

void change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
            ReorderBufferChange *change) {
    PluginState &st = state_of(ctx);
    if (st.skipping || st.forward_skip) return;
    RelationOut &out = relation_out(st, rel);
    if (!out.replicated) return;
    if ((change->action == REORDER_BUFFER_CHANGE_UPDATE ||
         change->action == REORDER_BUFFER_CHANGE_DELETE) &&
        !out.identifies_rows)
        refuse_change(st, rel, txn,
                      change->action == REORDER_BUFFER_CHANGE_UPDATE ? "an UPDATE" : "a DELETE");
    MemoryContext old = MemoryContextSwitchTo(st.change_context);
    send_begin_once(ctx, st, txn);
    send_relation_once(ctx, st, out, rel);
    auto natts = static_cast<uint16_t>(out.columns.size());
    Oid relid = RelationGetRelid(rel);
    Bitmapset *key_attrs = nullptr;
    switch (change->action) {
        case REORDER_BUFFER_CHANGE_INSERT:
            st.encoder.start_insert(relid, natts);
            encode_tuple(st, out, rel, &change->data.tp.newtuple->tuple, false, nullptr);
            break;
        case REORDER_BUFFER_CHANGE_UPDATE: {
            ReorderBufferTupleBuf *old_tuple = change->data.tp.oldtuple;
            HeapTuple whole_old_row = out.full_identity && old_tuple ? &old_tuple->tuple : nullptr;
            if (old_tuple) key_attrs = replicated::key_attrs(rel);
            // The peers need the old key only when the key changed; under
            // REPLICA IDENTITY FULL the whole old row is logged every time.
            if (old_tuple && out.full_identity &&
                !key_changed(rel, &old_tuple->tuple, &change->data.tp.newtuple->tuple, key_attrs))
                old_tuple = nullptr;
            if (old_tuple) {
                st.encoder.start_update(relid, natts);
                encode_tuple(st, out, rel, &old_tuple->tuple, true, key_attrs);
            } else {
                st.encoder.start_update(relid, std::nullopt);
            }
            st.encoder.start_tuple(natts);
            encode_tuple(st, out, rel, &change->data.tp.newtuple->tuple, false, nullptr,
                         whole_old_row);
            break;
        }
        case REORDER_BUFFER_CHANGE_DELETE:
            if (!change->data.tp.oldtuple) refuse_change(st, rel, txn, "a DELETE");
            key_attrs = replicated::key_attrs(rel);
            st.encoder.start_delete(relid, natts);
            encode_tuple(st, out, rel, &change->data.tp.oldtuple->tuple, true, key_attrs);
            break;
        default:
            MemoryContextSwitchTo(old);
            return;
    }
    flush_if_full(ctx, st);
    MemoryContextSwitchTo(old);
    MemoryContextReset(st.change_context);
}

void truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int nrelations,
              Relation relations[], ReorderBufferChange *change) {
    PluginState &st = state_of(ctx);
    if (st.skipping || st.forward_skip) return;
    proto::Truncate &msg = st.truncate_scratch;
    msg.relids.clear();
    MemoryContext old = MemoryContextSwitchTo(st.change_context);
    for (int i = 0; i < nrelations; i++) {
        RelationOut &out = relation_out(st, relations[i]);
        if (!out.replicated) continue;
        send_begin_once(ctx, st, txn);
        send_relation_once(ctx, st, out, relations[i]);
        msg.relids.push_back(RelationGetRelid(relations[i]));
    }
    if (!msg.relids.empty()) {
        msg.cascade = change->data.truncate.cascade;
        msg.restart_identity = change->data.truncate.restart_seqs;
        st.encoder.truncate(msg);
        flush_if_full(ctx, st);
    }
    MemoryContextSwitchTo(old);
    MemoryContextReset(st.change_context);
}

void message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr, bool transactional,
             const char *prefix, Size size, const char *content) {
    if (!std::string_view(prefix).starts_with(proto::kMessagePrefix)) return;
    PluginState &st = state_of(ctx);
    // What our apply worker wrote with the dead node's origin: its replies
    // in the lock protocol, not anything the dead node sent.
    if (st.forward_node_id) return;
    if (transactional && st.skipping) return;
    if (transactional) send_begin_once(ctx, st, txn);
    st.encoder.message(proto::Message{transactional, prefix, std::string(content, size)});
    // A non-transactional message stands alone: out at once.
    if (transactional)
        flush_if_full(ctx, st);
    else
        flush_batch(ctx, st, true);
}

bool filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id) {
    const auto *st = static_cast<const PluginState *>(ctx->output_plugin_private);
    if (st && st->forward_node_id) return origin_id != st->forward_origin;
    return origin_id != InvalidRepOriginId;
}

}  // namespace pgmesh::output

extern "C" {

PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

static void pgmesh_startup_cb(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool init) {
    pgmesh::pg::entry([&] { pgmesh::output::startup(ctx, opt, init); });
}
static void pgmesh_shutdown_cb(LogicalDecodingContext *ctx) {
    pgmesh::pg::entry([&] { pgmesh::output::shutdown(ctx); });
}
static void pgmesh_begin_cb(LogicalDecodingContext *ctx, ReorderBufferTXN *txn) {
    pgmesh::pg::entry([&] { pgmesh::output::begin(ctx, txn); });
}
static void pgmesh_commit_cb(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr lsn) {
    pgmesh::pg::entry([&] { pgmesh::output::commit(ctx, txn, lsn); });
}
static void pgmesh_change_cb(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, Relation rel,
                             ReorderBufferChange *change) {
    pgmesh::pg::entry([&] { pgmesh::output::change(ctx, txn, rel, change); });
}
static void pgmesh_truncate_cb(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, int n,
                               Relation rels[], ReorderBufferChange *change) {
    pgmesh::pg::entry([&] { pgmesh::output::truncate(ctx, txn, n, rels, change); });
}
static void pgmesh_message_cb(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr lsn,
                              bool transactional, const char *prefix, Size size,
                              const char *content) {
    pgmesh::pg::entry(
        [&] { pgmesh::output::message(ctx, txn, lsn, transactional, prefix, size, content); });
}
static bool pgmesh_filter_by_origin_cb(LogicalDecodingContext *ctx, RepOriginId origin_id) {
    return pgmesh::output::filter_by_origin(ctx, origin_id);
}

void _PG_output_plugin_init(OutputPluginCallbacks *cb) {
    cb->startup_cb = pgmesh_startup_cb;
    cb->begin_cb = pgmesh_begin_cb;
    cb->change_cb = pgmesh_change_cb;
    cb->truncate_cb = pgmesh_truncate_cb;
    cb->commit_cb = pgmesh_commit_cb;
    cb->message_cb = pgmesh_message_cb;
    cb->filter_by_origin_cb = pgmesh_filter_by_origin_cb;
    cb->shutdown_cb = pgmesh_shutdown_cb;
}

}  // extern "C"
