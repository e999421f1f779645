-- pgmesh 0.1: catalogs and SQL surface (see docs/ and the README).
\echo Use "CREATE EXTENSION pgmesh" to load this file. \quit

-- Every node of the group, including this one. Replicated through pgmesh
-- itself, so that a node joining through any member becomes known to all.
CREATE TABLE pgmesh.node (
    node_id    bigint PRIMARY KEY,
    node_name  text NOT NULL UNIQUE CHECK (node_name ~ '^[A-Za-z0-9_.-]{1,48}$'),
    dsn        text NOT NULL,
    state      text NOT NULL CHECK (state IN ('joining', 'ready', 'parted')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Which row of pgmesh.node is this database. Never replicated.
CREATE TABLE pgmesh.local_node (
    node_id bigint PRIMARY KEY REFERENCES pgmesh.node,
    one_row boolean NOT NULL DEFAULT true UNIQUE CHECK (one_row)
);

-- DSNs can hold passwords: only superusers read the catalogs directly.
REVOKE ALL ON pgmesh.node, pgmesh.local_node FROM PUBLIC;

CREATE FUNCTION pgmesh.mask_dsn(dsn text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT AS 'MODULE_PATHNAME', 'pgmesh_mask_dsn';

CREATE VIEW pgmesh.nodes AS
SELECT n.node_id, n.node_name, pgmesh.mask_dsn(n.dsn) AS dsn, n.state,
       (l.node_id IS NOT NULL) AS is_local
  FROM pgmesh.node n LEFT JOIN pgmesh.local_node l USING (node_id)
 ORDER BY n.node_name;

CREATE FUNCTION pgmesh.worker_status(
    OUT peer_node_id bigint, OUT connected boolean, OUT worker_pid integer,
    OUT received_lsn pg_lsn, OUT applied_lsn pg_lsn,
    OUT last_applied_commit_time timestamptz, OUT last_message_time timestamptz,
    OUT applied_transactions bigint, OUT conflicts bigint, OUT last_error text)
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
       w.last_error
  FROM pgmesh.node n
  LEFT JOIN pgmesh.worker_status() w ON w.peer_node_id = n.node_id
 WHERE n.node_id NOT IN (SELECT node_id FROM pgmesh.local_node)
   AND n.state <> 'parted'
 ORDER BY n.node_name;

CREATE FUNCTION pgmesh.create_group(node_name text, node_dsn text) RETURNS bigint
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_create_group';

CREATE FUNCTION pgmesh.join_group(node_name text, node_dsn text, join_using_dsn text)
RETURNS bigint LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_join_group';

CREATE FUNCTION pgmesh.wait_for_ready(timeout integer DEFAULT 60) RETURNS boolean
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_wait_for_ready';

CREATE FUNCTION pgmesh.wait_for_sync(timeout integer DEFAULT 60) RETURNS boolean
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_wait_for_sync';

CREATE FUNCTION pgmesh.pause_apply() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_pause_apply';

CREATE FUNCTION pgmesh.resume_apply() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'pgmesh_resume_apply';

REVOKE ALL ON FUNCTION pgmesh.create_group(text, text), pgmesh.join_group(text, text, text),
    pgmesh.pause_apply(), pgmesh.resume_apply() FROM PUBLIC;
