-- pgmesh 0.1: catalogs and SQL surface (see docs/ and the README).
\echo Use "CREATE EXTENSION pgmesh" to load this file. \quit

-- Every node of the group, including this one. Replicated through pgmesh
-- itself, so that a node joining through any member becomes known to all.
CREATE TABLE pgmesh.node (
    node_id    bigint PRIMARY KEY,
    node_name  text NOT NULL UNIQUE CHECK (node_name ~ '^[A-Za-z0-9_.-]{1,48}$'),
    dsn        text NOT NULL,
    state      text NOT NULL CHECK (state IN ('joining', 'ready', 'parted')),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Small and never reused in the group: the node's part of the ids
    -- pgmesh.snowflake_nextval hands out. Given by the join target, one join
    -- at a time; a parted node keeps its row, and so its number.
    node_number integer NOT NULL UNIQUE CHECK (node_number BETWEEN 1 AND 1023)
);

-- Which row of pgmesh.node is this database. Never replicated.
-- copied_until: when this node joined, the data it copied from its join
-- target; rows written locally up to then are that copy, older than any
-- change that streams in afterwards (see docs/conflicts.md).
-- group_key: the group's secret, the same on every node: pgmesh's own logical
-- messages (DDL, global lock) are sealed with it (HMAC-SHA256), since any role
-- may call pg_logical_emit_message (docs/protocol.md).
CREATE TABLE pgmesh.local_node (
    node_id bigint PRIMARY KEY REFERENCES pgmesh.node,
    one_row boolean NOT NULL DEFAULT true UNIQUE CHECK (one_row),
    copied_until timestamptz,
    group_key bytea NOT NULL CHECK (length(group_key) = 32)
);

-- DSNs can hold passwords: only superusers read the catalogs directly.
REVOKE ALL ON pgmesh.node, pgmesh.local_node FROM PUBLIC;

-- Wakes this node's manager when a change to pgmesh.node commits, made here or
-- applied from a peer, so that streams to a node that joined (or from one
-- that left) start at once instead of at the manager's next round.
CREATE FUNCTION pgmesh.node_changed() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_node_changed';
CREATE TRIGGER node_changed AFTER INSERT OR UPDATE OR DELETE ON pgmesh.node
    FOR EACH ROW EXECUTE FUNCTION pgmesh.node_changed();
ALTER TABLE pgmesh.node ENABLE ALWAYS TRIGGER node_changed;

CREATE FUNCTION pgmesh.mask_dsn(dsn text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pgmesh_mask_dsn';

CREATE VIEW pgmesh.nodes AS
SELECT n.node_id, n.node_name, pgmesh.mask_dsn(n.dsn) AS dsn, n.state,
       (l.node_id IS NOT NULL) AS is_local, n.node_number
  FROM pgmesh.node n LEFT JOIN pgmesh.local_node l USING (node_id)
 ORDER BY n.node_name;

-- One row per detected conflict on this node. Never replicated.
-- relid: the local table, for the owner's view of its rows (pgmesh.conflicts).
-- A failure that stops apply is one row however often the worker retries
-- the same remote transaction: occurrences counts them, last_occurred_at
-- says when the last one was.
CREATE TABLE pgmesh.conflict_history (
    id                 bigserial PRIMARY KEY,
    recorded_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    local_node_id      bigint NOT NULL,
    remote_node_id     bigint NOT NULL,
    table_schema       text NOT NULL,
    table_name         text NOT NULL,
    relid              oid,
    conflict_type      text NOT NULL,
    resolution         text NOT NULL,
    local_tuple        jsonb,
    remote_tuple       jsonb,
    local_commit_time  timestamptz,
    remote_commit_time timestamptz,
    remote_commit_lsn  pg_lsn,
    remote_xid         bigint,
    message            text,
    occurrences        bigint NOT NULL DEFAULT 1,
    last_occurred_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON pgmesh.conflict_history (recorded_at);
-- Finds the row a retried failure repeats.
CREATE INDEX ON pgmesh.conflict_history (remote_node_id, remote_commit_lsn)
    WHERE resolution = 'error';

-- Tombstones (docs/conflicts.md): one row per deleted key of a replicated
-- table, so that an older insert or update arriving later loses to the
-- delete. Node-local. A tombstone's version is that of its own row: the
-- commit time and origin of the transaction that last wrote it. key: the
-- key columns' text, in the key index's order; an empty key is a TRUNCATE's,
-- and stands for every key of its table.
-- commit_time and node_id: the version of a tombstone the join copied from
-- another node (NULL: the version of its xmin).
CREATE TABLE pgmesh.tombstone (
    relid       oid NOT NULL,
    key         text[] NOT NULL,
    commit_time timestamptz,
    node_id     bigint,
    PRIMARY KEY (relid, key)
);
-- The versions that rows copied at the join had on the node they were
-- copied from (pg_restore wrote them here with a local xmin). A copied row
-- keeps its version until it is written again. Node-local.
CREATE TABLE pgmesh.row_version (
    relid       oid NOT NULL,
    key         text[] NOT NULL,
    commit_time timestamptz NOT NULL,
    node_id     bigint NOT NULL,
    PRIMARY KEY (relid, key)
);
-- What a joining node copies besides the data (join.cpp), read in the join's
-- snapshot: the version of every row of every replicated table, and every
-- tombstone with its version. Superusers only: it shows every table's keys.
CREATE FUNCTION pgmesh.versions_for_copy(
    OUT table_schema text, OUT table_name text, OUT key text[], OUT deleted boolean,
    OUT commit_time timestamptz, OUT node_id bigint)
RETURNS SETOF record LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_versions_for_copy';
-- Every replicated table gets two triggers that call this, pgmesh_tombstone
-- (AFTER DELETE, FOR EACH ROW) and pgmesh_truncate (AFTER TRUNCATE): pgmesh
-- adds them when a node is created and when a table is created. They record
-- local deletes.
CREATE FUNCTION pgmesh.record_tombstone() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_record_tombstone';

-- Per-table choice of resolver per conflict type. Replicated, so that every
-- node resolves the same way (the defaults need no row here).
-- What this node's relay slot holds (src/pg/relay.hpp): every transaction
-- of origin_node_id applied here whose commit LSN on that node is above
-- covered_after. origin_created_at is this node's WAL position when it
-- made its replication origin for that node: PostgreSQL hands a dropped
-- origin's number to the next one made, so older transactions in the
-- relay slot under the same number are a parted node's, not this one's.
-- Not replicated: each node's own.
CREATE TABLE pgmesh.relay_coverage (
    origin_node_id    bigint PRIMARY KEY,
    covered_after     pg_lsn NOT NULL DEFAULT '0/0',
    origin_created_at pg_lsn
);

-- A remote node's write lock that this node granted and that has not ended
-- here yet (docs/ddl.md, "The global lock"): shared memory forgets it when
-- the server restarts, but this node must keep blocking writes to the
-- tables until it has applied the holder's DDL, and must keep what it knew
-- of the other nodes' grants. Written before the GRANT goes out, deleted
-- when the lock ends here, read back at startup. Not replicated.
CREATE TABLE pgmesh.granted_write_lock (
    lock_id        bigint PRIMARY KEY,
    holder_node_id bigint NOT NULL,
    seq            integer NOT NULL,
    priority       bigint NOT NULL,
    holder_pid     integer NOT NULL,
    all_tables     boolean NOT NULL,
    relids         oid[] NOT NULL,
    seen_grants    bigint[] NOT NULL DEFAULT '{}',
    granted_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE pgmesh.conflict_resolver (
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    conflict_type text NOT NULL,
    resolver      text NOT NULL,
    PRIMARY KEY (table_schema, table_name, conflict_type)
);

-- Readers of monitoring data (history, status) without superuser rights.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgmesh_monitor') THEN
        CREATE ROLE pgmesh_monitor NOLOGIN;
    END IF;
END $$;
-- Monitors see what happened, not the rows it happened to: the tuples are
-- for superusers and, through pgmesh.conflicts, the table's owner. The error
-- message is PostgreSQL's primary message plus where; key values, which
-- PostgreSQL puts in the detail, are never stored.
REVOKE ALL ON pgmesh.conflict_history, pgmesh.conflict_resolver, pgmesh.tombstone,
    pgmesh.row_version, pgmesh.granted_write_lock FROM PUBLIC;
REVOKE ALL ON FUNCTION pgmesh.versions_for_copy() FROM PUBLIC;
GRANT SELECT (id, recorded_at, local_node_id, remote_node_id, table_schema, table_name, relid,
              conflict_type, resolution, local_commit_time, remote_commit_time,
              remote_commit_lsn, remote_xid, message, occurrences, last_occurred_at)
    ON pgmesh.conflict_history TO pgmesh_monitor;
GRANT SELECT ON pgmesh.conflict_resolver TO pgmesh_monitor;
GRANT USAGE ON SCHEMA pgmesh TO PUBLIC;

-- The conflicts a role may see: monitors (members of pgmesh_monitor) see
-- every conflict without its rows; the owner of a table (and a superuser)
-- also sees the rows of that table's conflicts. Rows of conflicts whose
-- table is gone are for superusers only.
CREATE VIEW pgmesh.conflicts WITH (security_barrier) AS
SELECT h.id, h.recorded_at, h.local_node_id, h.remote_node_id, h.table_schema, h.table_name,
       h.conflict_type, h.resolution,
       CASE WHEN v.rows_visible THEN h.local_tuple END AS local_tuple,
       CASE WHEN v.rows_visible THEN h.remote_tuple END AS remote_tuple,
       h.local_commit_time, h.remote_commit_time, h.remote_commit_lsn, h.remote_xid, h.message,
       h.occurrences, h.last_occurred_at
  FROM pgmesh.conflict_history h
  LEFT JOIN pg_catalog.pg_class c ON c.oid = h.relid
 CROSS JOIN LATERAL (SELECT
         EXISTS (SELECT FROM pg_catalog.pg_roles r
                  WHERE r.rolname = CURRENT_USER AND r.rolsuper)
         OR (c.relowner IS NOT NULL AND pg_catalog.pg_has_role(c.relowner, 'USAGE'))
         AS rows_visible) v
 WHERE v.rows_visible OR pg_catalog.pg_has_role('pgmesh_monitor', 'USAGE');
GRANT SELECT ON pgmesh.conflicts TO PUBLIC;

CREATE FUNCTION pgmesh.set_conflict_resolver(relation regclass, conflict_type text, resolver text)
RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_set_conflict_resolver';

CREATE FUNCTION pgmesh.skip_transaction(peer_node_name text, remote_commit_lsn pg_lsn)
RETURNS void LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_skip_transaction';

CREATE FUNCTION pgmesh.worker_status(
    OUT peer_node_id bigint, OUT connected boolean, OUT worker_pid integer,
    OUT received_lsn pg_lsn, OUT applied_lsn pg_lsn,
    OUT last_applied_commit_time timestamptz, OUT last_message_time timestamptz,
    OUT applied_transactions bigint, OUT conflicts bigint, OUT conflicts_by_type text,
    OUT last_error text, OUT waiting_for_global_lock boolean, OUT caught_up_to timestamptz)
RETURNS SETOF record LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pgmesh_worker_status';

CREATE VIEW pgmesh.status AS
SELECT n.node_id AS peer_node_id,
       n.node_name AS peer_node_name,
       coalesce(w.connected, false) AS connected,
       w.worker_pid,
       greatest(w.received_lsn - w.applied_lsn, 0)::bigint AS apply_lag_bytes,
       CASE WHEN w.received_lsn > w.applied_lsn AND w.last_applied_commit_time IS NOT NULL
            THEN extract(epoch FROM now() - w.last_applied_commit_time)::double precision
            ELSE 0::double precision END AS apply_lag_seconds,
       w.last_applied_commit_time,
       coalesce(w.conflicts, 0) AS conflicts,
       coalesce(w.conflicts_by_type, '{}')::jsonb AS conflicts_by_type,
       w.last_error,
       coalesce(w.waiting_for_global_lock, false) AS waiting_for_global_lock,
       w.caught_up_to,
       -- Tombstones wait for every peer's progress (pgmesh.collect_tombstones):
       -- one not heard of for two clock ticks (a node down, cut off, or
       -- far behind) holds their collection back.
       (w.caught_up_to IS NULL OR w.caught_up_to < now() - interval '15 s')
           AS holds_back_tombstones
  FROM pgmesh.node n
  LEFT JOIN pgmesh.worker_status() w ON w.peer_node_id = n.node_id
 WHERE n.node_id NOT IN (SELECT node_id FROM pgmesh.local_node)
   AND n.state <> 'parted'
 ORDER BY n.node_name;

-- Removes the tombstones no change can still lose to: older, by
-- pgmesh.max_clock_skew, than the time every peer is known to have caught
-- up to (pgmesh.status.caught_up_to). A peer whose progress is unknown (down
-- since this server started, say) keeps them all. The manager calls it
-- every minute; returns how many went.
CREATE FUNCTION pgmesh.collect_tombstones() RETURNS bigint
LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    -- Waits for the transactions writing tombstones, and keeps new ones
    -- out while it runs: a tombstone a writer found must not go before it
    -- rewrites it.
    LOCK TABLE pgmesh.tombstone IN SHARE ROW EXCLUSIVE MODE;
    WITH horizon AS (
        SELECT CASE WHEN bool_or(caught_up_to IS NULL) THEN '-infinity'::timestamptz
                    ELSE coalesce(min(caught_up_to), now()) END
               - current_setting('pgmesh.max_clock_skew')::interval AS t
          FROM pgmesh.status
    ), copied AS (
        -- A copied row's version no longer decides anything either.
        DELETE FROM pgmesh.row_version WHERE commit_time < (SELECT t FROM horizon)
    ), collected AS (
        DELETE FROM pgmesh.tombstone
         WHERE coalesce(commit_time, pg_xact_commit_timestamp(xmin), '-infinity')
               < (SELECT t FROM horizon)
        RETURNING 1
    )
    SELECT count(*) FROM collected
$$;

CREATE FUNCTION pgmesh.create_group(node_name text, node_dsn text) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_create_group';

CREATE FUNCTION pgmesh.join_group(node_name text, node_dsn text, join_using_dsn text)
RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_join_group';

-- Removes a node from the group, from a surviving node: a live node after
-- its last changes reached every survivor, a dead one when every survivor
-- got equally far (docs/operations.md).
CREATE FUNCTION pgmesh.part_node(node_name text) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_part_node';

-- Internal to part_node (src/pg/forward.cpp), which calls them on each
-- survivor that got fewer of a dead node's transactions than another:
-- forward_missing starts a worker that applies those it lacks from that
-- survivor's relay slot, as the dead node sent them, and returns at once;
-- forward_progress says how far it got, whether it still runs, and why it
-- stopped short. part_node polls rather than waits inside one call: a call
-- that waits holds a snapshot, and with it back the pruning of every row
-- the forwarded transactions update.
CREATE FUNCTION pgmesh.forward_missing(dead_node_id bigint, source_node_id bigint,
                                       up_to pg_lsn) RETURNS void
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pgmesh_forward_missing';
CREATE FUNCTION pgmesh.forward_progress(dead_node_id bigint, OUT applied pg_lsn,
                                        OUT running boolean, OUT error text)
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pgmesh_forward_progress';

CREATE FUNCTION pgmesh.wait_for_ready(timeout integer DEFAULT 60) RETURNS boolean
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_wait_for_ready';

CREATE FUNCTION pgmesh.wait_for_sync(timeout integer DEFAULT 60) RETURNS boolean
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_wait_for_sync';

CREATE FUNCTION pgmesh.pause_apply() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_pause_apply';

CREATE FUNCTION pgmesh.resume_apply() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_resume_apply';

-- Holds every apply worker here at a transaction boundary until the calling
-- transaction ends (a join reads this node's origin positions under it).
CREATE FUNCTION pgmesh.hold_apply(timeout integer DEFAULT 30) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_hold_apply';

-- The global DDL/write lock as this node sees it (docs/ddl.md): who holds
-- it, how strong, what this node does about it, and which nodes have not
-- answered yet (the ones a holder waits for; for a remote write lock, the
-- nodes whose grant this node has not applied yet).
CREATE FUNCTION pgmesh.global_lock_info(
    OUT holder_node_id bigint, OUT holder_pid integer, OUT strength text, OUT state text,
    OUT answered bigint[], OUT since timestamptz, OUT lock_id bigint)
RETURNS SETOF record LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pgmesh_global_lock_info';

CREATE VIEW pgmesh.global_lock AS
SELECT l.holder_node_id,
       h.node_name AS holder_node,
       l.holder_pid,
       l.strength,
       l.state,
       CASE WHEN l.state = 'requesting' OR (l.state = 'granted' AND l.strength = 'write')
            THEN ARRAY(SELECT n.node_name FROM pgmesh.node n
                        WHERE n.state = 'ready'
                          AND n.node_id <> l.holder_node_id
                          AND n.node_id NOT IN (SELECT node_id FROM pgmesh.local_node)
                          AND n.node_id <> ALL (l.answered)
                        ORDER BY n.node_name)
            ELSE '{}'::text[] END AS not_answered,
       l.since
  FROM pgmesh.global_lock_info() l
  LEFT JOIN pgmesh.node h ON h.node_id = l.holder_node_id;

-- Conflict-free ids (docs/ids.md): milliseconds since 2025, this node's
-- node_number and a counter. The sequence keeps a reservation ahead of the
-- ids handed out, so that none is handed out twice after a restart; like
-- nextval(), it needs USAGE or UPDATE on the sequence.
CREATE FUNCTION pgmesh.snowflake_nextval(seq regclass) RETURNS bigint
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'pgmesh_snowflake_nextval';

-- Sets a bigserial column's default to pgmesh.snowflake_nextval() of its
-- own sequence. The table's owner only; the ALTER TABLE it runs is theirs
-- (replicated under the global lock like any other).
CREATE FUNCTION pgmesh.use_snowflake(relation regclass, column_name name) RETURNS void
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'pgmesh_use_snowflake';

REVOKE ALL ON FUNCTION pgmesh.create_group(text, text), pgmesh.join_group(text, text, text),
    pgmesh.part_node(text), pgmesh.forward_missing(bigint, bigint, pg_lsn),
    pgmesh.forward_progress(bigint),
    pgmesh.pause_apply(), pgmesh.resume_apply(), pgmesh.hold_apply(integer),
    pgmesh.skip_transaction(text, pg_lsn) FROM PUBLIC;
-- Checks ownership of the table and the right to execute a resolver
-- function itself: a table's owner chooses how its conflicts resolve.
GRANT EXECUTE ON FUNCTION pgmesh.set_conflict_resolver(regclass, text, text) TO PUBLIC;
-- Check the caller's rights on the sequence, and ownership of the table.
GRANT EXECUTE ON FUNCTION pgmesh.snowflake_nextval(regclass),
    pgmesh.use_snowflake(regclass, name) TO PUBLIC;
-- Status shows DSN-free, password-free facts: monitors may read it.
REVOKE ALL ON FUNCTION pgmesh.worker_status(), pgmesh.collect_tombstones() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgmesh.worker_status() TO pgmesh_monitor;
REVOKE ALL ON FUNCTION pgmesh.global_lock_info() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgmesh.global_lock_info() TO pgmesh_monitor;
GRANT SELECT ON pgmesh.status, pgmesh.nodes, pgmesh.global_lock TO pgmesh_monitor;
