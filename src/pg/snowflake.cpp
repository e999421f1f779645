// pgmesh.snowflake_nextval(regclass) and pgmesh.use_snowflake(regclass,
// name): conflict-free ids (docs/ids.md). The ids themselves are
// core/snowflake.hpp's; this is where they are kept and persisted.
//
// Per (database, sequence), shared memory holds the last id this node handed
// out and what the sequence holds on disk, and every id handed out is at most
// that value, as PostgreSQL's own sequences log ahead of the values they
// give. When the next id would pass it, the sequence is set about a second
// ahead (a reservation) and its WAL flushed, and only then is the id handed
// out; the ids of that second need no write. After a restart or a crash the
// sequence's value is read back and ids go on above it, so no id is ever
// handed out twice, whatever the clock does meanwhile.
//
// Reservations of one sequence are serialized by an advisory lock of
// pgmesh's own, held only while the sequence is read and set. A lock on the
// sequence itself would not do: nextval() and setval() keep RowExclusiveLock
// until their transaction ends, so it would make every reservation wait for
// the longest transaction that ever reserved.
#include <algorithm>
#include <optional>
#include <string>

#include "guard.hpp"
#include "node_admin.hpp"
#include "shmem.hpp"
#include "snowflake.hpp"  // core: src/pg has no header of that name
#include "spi.hpp"
#include "user_context.hpp"

namespace pgmesh::snowflake {

namespace {

// Advisory lock tags of pgmesh (field4): 0x504D is the write gate's, 0x5054
// the tombstone writers'; SQL's advisory locks use 1 and 2.
constexpr uint16 kReserveField = 0x5053;

// Unix milliseconds of PostgreSQL's epoch (2000-01-01), which TimestampTz
// counts microseconds from.
constexpr int64_t kPostgresEpochUnixMs =
    int64_t{POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE} * SECS_PER_DAY * 1000;

int64_t clock_ms() {
    TimestampTz now = pg::call([] { return GetCurrentTimestamp(); });
    return ms_since_epoch(now / 1000 + kPostgresEpochUnixMs);
}

std::string qualified_name(Oid relid) {
    return pg::call([&] {
        return static_cast<const char *>(quote_qualified_identifier(
            get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid)));
    });
}

// The local node's number, read once per transaction: a node keeps its
// number for life, and one transaction sees one catalog anyway.
LocalTransactionId node_number_lxid = InvalidLocalTransactionId;
int node_number = 0;

int local_node_number() {
    LocalTransactionId lxid = pg::call([] { return compat::local_transaction_id(); });
    if (node_number != 0 && node_number_lxid == lxid) return node_number;
    spi::Rows rows = spi::query(
        "SELECT n.node_number FROM pgmesh.node n JOIN pgmesh.local_node l USING (node_id)");
    if (rows.empty() || !rows[0].at(0))
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "this database is not a pgmesh node",
                        "Snowflake ids carry the number of the node that made them.",
                        "Run pgmesh.create_group() or pgmesh.join_group() first.");
    // Shared memory holds the ids' state: it exists only when preloaded.
    if (!node_admin::loaded_at_startup)
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "pgmesh is not loaded through shared_preload_libraries", {},
                        "Add pgmesh to shared_preload_libraries in postgresql.conf and restart "
                        "the server.");
    node_number = std::stoi(*rows[0][0]);
    node_number_lxid = lxid;
    return node_number;
}

// Opens the sequence as nextval() does: it must be a sequence the caller may
// use, and it stays locked (RowExclusiveLock, as nextval's) until the
// transaction ends, so that it is not dropped or altered under us.
void check_sequence(Oid seq) {
    enum Problem { kNone, kMissing, kNotSequence, kUnlogged, kDenied };
    struct Check {
        Problem problem;
        const char *name;
    };
    Check check = pg::call([&] {
        Check c{kNone, nullptr};
        Relation rel = try_relation_open(seq, RowExclusiveLock);
        if (!rel) return Check{kMissing, nullptr};
        if (rel->rd_rel->relkind != RELKIND_SEQUENCE)
            c.problem = kNotSequence;
        else if (rel->rd_rel->relpersistence == RELPERSISTENCE_UNLOGGED)
            c.problem = kUnlogged;
        else if (pg_class_aclcheck(seq, GetUserId(), ACL_USAGE | ACL_UPDATE) != ACLCHECK_OK)
            c.problem = kDenied;
        if (c.problem != kNone) c.name = pstrdup(RelationGetRelationName(rel));
        relation_close(rel, NoLock);
        return c;
    });
    std::string name = check.name ? check.name : "";
    switch (check.problem) {
        case kNone:
            return;
        case kMissing:
            throw pg::Error(ERRCODE_UNDEFINED_TABLE,
                            "relation with OID " + std::to_string(seq) + " does not exist");
        case kNotSequence:
            throw pg::Error(ERRCODE_WRONG_OBJECT_TYPE, "\"" + name + "\" is not a sequence", {},
                            "pgmesh.snowflake_nextval() takes the sequence that keeps its ids, "
                            "such as a bigserial column's: pg_get_serial_sequence('table', "
                            "'column') names it.");
        case kUnlogged:
            throw pg::Error(ERRCODE_FEATURE_NOT_SUPPORTED,
                            "unlogged sequence \"" + name + "\" cannot keep snowflake ids",
                            "After a crash an unlogged sequence starts over, and ids handed out "
                            "before it could be handed out again.",
                            "ALTER SEQUENCE " + qualified_name(seq) + " SET LOGGED");
        case kDenied:
            throw pg::Error(ERRCODE_INSUFFICIENT_PRIVILEGE,
                            "permission denied for sequence " + name, {},
                            "pgmesh.snowflake_nextval() needs USAGE or UPDATE on the sequence, as "
                            "nextval() does: GRANT USAGE ON SEQUENCE " +
                                qualified_name(seq) + " TO the role.");
    }
}

// Hands out the next id if the sequence already holds one at least as
// large; nullopt when a reservation must come first.
std::optional<int64_t> take_reserved(Oid seq, int node, int64_t now) {
    return pg::call([&]() -> std::optional<int64_t> {
        LWLock *lock = shmem::state().snowflake_lock;
        LWLockAcquire(lock, LW_EXCLUSIVE);
        shmem::SnowflakeSlot *slot = shmem::snowflake_slot(MyDatabaseId, seq);
        int64_t id = 0;
        try {
            id = next(slot->last_issued, now, node);
        } catch (...) {
            LWLockRelease(lock);
            throw;
        }
        bool reserved = id <= slot->reserved;
        if (reserved) slot->last_issued = id;
        LWLockRelease(lock);
        return reserved ? std::optional<int64_t>(id) : std::nullopt;
    });
}

// The sequence's value; nullopt when none was ever handed out (a fresh
// sequence, or one restarted by ALTER SEQUENCE ... RESTART).
std::optional<int64_t> sequence_value(Oid seq) {
    struct Value {
        bool is_null;
        int64 value;
    };
    // As pgmesh: the caller may hold UPDATE only, which does not read it.
    Value v = pg::call([&] {
        user_context::Saved saved = user_context::switch_to_pgmesh();
        LOCAL_FCINFO(fcinfo, 1);
        InitFunctionCallInfoData(*fcinfo, nullptr, 1, InvalidOid, nullptr, nullptr);
        fcinfo->args[0].value = ObjectIdGetDatum(seq);
        fcinfo->args[0].isnull = false;
        Datum result = pg_sequence_last_value(fcinfo);
        user_context::restore(saved);
        return Value{fcinfo->isnull, fcinfo->isnull ? 0 : DatumGetInt64(result)};
    });
    return v.is_null ? std::nullopt : std::optional<int64_t>(v.value);
}

int64_t sequence_max(Oid seq) {
    return pg::call([&] {
        HeapTuple tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seq));
        if (!HeapTupleIsValid(tuple)) elog(ERROR, "cache lookup failed for sequence %u", seq);
        int64 max = reinterpret_cast<Form_pg_sequence>(GETSTRUCT(tuple))->seqmax;
        ReleaseSysCache(tuple);
        return max;
    });
}

// Sets the sequence as pgmesh (a caller with USAGE only may not), and
// flushes that to disk: from now on ids up to `value` are handed out, also
// by sessions that write no WAL of their own (a read-only SELECT), and none
// of them may be seen before the reservation is safe.
void set_sequence(Oid seq, int64_t value) {
    pg::call([&] {
        user_context::Saved saved = user_context::switch_to_pgmesh();
        (void)DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(seq), Int64GetDatum(value),
                                  BoolGetDatum(true));
        user_context::restore(saved);
        XLogFlush(XactLastRecEnd);
    });
}

// Moves the reservation of `seq` above the next id. Everything up to the
// sequence's value counts as handed out: ours, or values someone else took
// with nextval() or set with setval() (a join's copy holds the join
// target's).
void reserve(Oid seq, int node) {
    LOCKTAG tag;
    pg::call([&] {
        SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, seq, 0, kReserveField);
        (void)LockAcquire(&tag, ExclusiveLock, false, false);
    });
    std::optional<int64_t> held = sequence_value(seq);
    int64_t max = sequence_max(seq);
    int64_t now = clock_ms();
    struct Plan {
        int64_t floor;  // every id handed out so far is at most this
        int64_t id;
    };
    Plan plan = pg::call([&] {
        LWLock *lock = shmem::state().snowflake_lock;
        LWLockAcquire(lock, LW_EXCLUSIVE);
        shmem::SnowflakeSlot *slot = shmem::snowflake_slot(MyDatabaseId, seq);
        int64_t value = held.value_or(INT64_MIN);
        slot->last_issued = std::max(slot->last_issued, value);
        // What is on disk now. Only a reservation (under the advisory lock)
        // writes it, so it is ours unless someone set the sequence back.
        slot->reserved = value;
        Plan p{slot->last_issued, 0};
        try {
            p.id = next(p.floor, now, node);
        } catch (...) {
            LWLockRelease(lock);
            throw;
        }
        LWLockRelease(lock);
        return p;
    });
    if (plan.id > max)
        throw pg::Error(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
                        "sequence " + qualified_name(seq) + " cannot hold snowflake id " +
                            std::to_string(plan.id),
                        "Its maximum value is " + std::to_string(max) + ".",
                        "ALTER SEQUENCE " + qualified_name(seq) + " AS bigint NO MAXVALUE");
    int64_t target = std::min(reservation(plan.id, now, node), max);
    set_sequence(seq, target);
    pg::call([&] {
        LWLock *lock = shmem::state().snowflake_lock;
        LWLockAcquire(lock, LW_EXCLUSIVE);
        // The slot may have gone to another sequence meanwhile, and come
        // back knowing nothing.
        shmem::SnowflakeSlot *slot = shmem::snowflake_slot(MyDatabaseId, seq);
        slot->last_issued = std::max(slot->last_issued, plan.floor);
        slot->reserved = target;
        LWLockRelease(lock);
        LockRelease(&tag, ExclusiveLock, false);
    });
}

int64_t nextval(Oid seq) {
    check_sequence(seq);
    // As nextval(): the reservation writes, and must not come and go with
    // the ids' pace.
    pg::call([] {
        PreventCommandIfReadOnly("pgmesh.snowflake_nextval()");
        PreventCommandIfParallelMode("pgmesh.snowflake_nextval()");
    });
    int node = local_node_number();
    try {
        for (;;) {
            if (std::optional<int64_t> id = take_reserved(seq, node, clock_ms())) return *id;
            reserve(seq, node);
        }
    } catch (const OutOfRange &e) {
        throw pg::Error(
            ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED,
            "pgmesh.snowflake_nextval() cannot give another id for sequence " + qualified_name(seq),
            e.what(), "Check the server's clock.");
    }
}

// --- use_snowflake ----------------------------------------------------------

struct Column {
    bool table_exists;
    char relkind;
    bool owned;  // by the caller
    AttrNumber attnum;
    Oid type;  // the base type, under any domain
    char identity;
    char generated;
    Oid sequence;       // owned by the column (serial), InvalidOid if none
    const char *table;  // schema-qualified, quoted
    const char *table_name;
};

Column describe_column(Oid relid, const char *column) {
    return pg::call([&] {
        Column c{};
        Relation rel = try_relation_open(relid, AccessShareLock);
        if (!rel) return c;
        c.table_exists = true;
        c.relkind = rel->rd_rel->relkind;
        c.owned = compat::owns_relation(relid, GetUserId());
        c.table_name = pstrdup(RelationGetRelationName(rel));
        c.table = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
                                             RelationGetRelationName(rel));
        c.attnum = get_attnum(relid, column);
        if (c.attnum > 0) {
            Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), c.attnum - 1);
            c.type = getBaseType(att->atttypid);
            c.identity = att->attidentity;
            c.generated = att->attgenerated;
            // What pg_get_serial_sequence() finds for a serial column.
            ListCell *lc;
            foreach (lc, getOwnedSequences(relid)) {
                Oid table = InvalidOid;
                int32 owner_column = 0;
                if (sequenceIsOwned(lfirst_oid(lc), DEPENDENCY_AUTO, &table, &owner_column) &&
                    owner_column == c.attnum)
                    c.sequence = lfirst_oid(lc);
            }
        }
        relation_close(rel, AccessShareLock);
        return c;
    });
}

// Runs a statement pgmesh built, as the caller, who owns the table: DDL
// capture sees it as theirs, and replicates it under the global lock like
// any ALTER TABLE they run (docs/ddl.md).
void run_as_caller(const std::string &sql) {
    pg::call([&] {
        SPI_connect();
        int rc = SPI_execute(sql.c_str(), false, 0);
        if (rc != SPI_OK_UTILITY) elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
        SPI_finish();
    });
}

void use_snowflake(Oid relid, const std::string &column_name) {
    Column c = describe_column(relid, column_name.c_str());
    if (!c.table_exists)
        throw pg::Error(ERRCODE_UNDEFINED_TABLE,
                        "relation with OID " + std::to_string(relid) + " does not exist");
    std::string column_text = "column \"" + column_name + "\" of table \"" + c.table_name + "\"";
    if (c.relkind != RELKIND_RELATION && c.relkind != RELKIND_PARTITIONED_TABLE)
        throw pg::Error(ERRCODE_WRONG_OBJECT_TYPE,
                        "\"" + std::string(c.table_name) + "\" is not a table");
    if (!c.owned)
        throw pg::Error(ERRCODE_INSUFFICIENT_PRIVILEGE,
                        "must be owner of table " + std::string(c.table), {},
                        "Only the table's owner changes its columns' defaults.");
    if (c.attnum <= 0) throw pg::Error(ERRCODE_UNDEFINED_COLUMN, column_text + " does not exist");
    if (c.identity)
        throw pg::Error(
            ERRCODE_FEATURE_NOT_SUPPORTED, column_text + " is an identity column",
            "An identity column takes its values from its own sequence and cannot have a "
            "default; DROP IDENTITY also drops that sequence.",
            "Make it a bigint with a sequence of its own: ALTER TABLE ... ALTER COLUMN ... DROP "
            "IDENTITY, CREATE SEQUENCE ... OWNED BY the column, then call "
            "pgmesh.use_snowflake() again. Snowflake ids are far above the ids it holds "
            "(docs/ids.md).");
    if (c.generated)
        throw pg::Error(ERRCODE_INVALID_COLUMN_DEFINITION, column_text + " is a generated column");
    if (c.type != INT8OID)
        throw pg::Error(
            ERRCODE_DATATYPE_MISMATCH, column_text + " is not bigint",
            "Snowflake ids are 64-bit integers.",
            c.type == INT4OID || c.type == INT2OID
                ? "Change its type to bigint, or keep it and give each node ids of its own with "
                  "the sequence's step and start: INCREMENT BY 1024 and a start that leaves "
                  "node_number as remainder (the step/offset scheme in docs/ids.md)."
                : "Use pgmesh.use_snowflake() on a bigint (bigserial) column.");
    if (!OidIsValid(c.sequence))
        throw pg::Error(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        column_text + " has no sequence of its own",
                        "pgmesh.snowflake_nextval() keeps its ids in the column's sequence.",
                        "Declare it bigserial, or CREATE SEQUENCE ... OWNED BY the column.");
    std::string sequence = qualified_name(c.sequence);
    std::string sequence_literal =
        pg::call([&] { return static_cast<const char *>(quote_literal_cstr(sequence.c_str())); });
    std::string quoted_column =
        pg::call([&] { return static_cast<const char *>(quote_identifier(column_name.c_str())); });
    run_as_caller("ALTER TABLE " + std::string(c.table) + " ALTER COLUMN " + quoted_column +
                  " SET DEFAULT pgmesh.snowflake_nextval(" + sequence_literal +
                  "::pg_catalog.regclass)");
}

}  // namespace

}  // namespace pgmesh::snowflake

extern "C" {

PG_FUNCTION_INFO_V1(pgmesh_snowflake_nextval);
PG_FUNCTION_INFO_V1(pgmesh_use_snowflake);

Datum pgmesh_snowflake_nextval(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry(
        [&] { return Int64GetDatum(pgmesh::snowflake::nextval(PG_GETARG_OID(0))); });
}

Datum pgmesh_use_snowflake(PG_FUNCTION_ARGS) {
    return pgmesh::pg::entry([&] {
        pgmesh::snowflake::use_snowflake(PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1)));
        return (Datum)0;
    });
}

}  // extern "C"
