// A stand-in for the pgmesh SQL surface, in plain SQL, for tests that check
// the fixture and the CLI on servers without the extension: the functions
// record their calls in pgmesh.calls. Its views have the columns of the
// extension's (names, types, order); test_fixture checks that where pgmesh is
// installed.
#pragma once

namespace pgmesh::test {

inline constexpr const char *kPgmeshStubSql = R"sql(
CREATE SCHEMA pgmesh;
CREATE TABLE pgmesh.calls (id serial PRIMARY KEY, function_name text, arguments text[]);
CREATE FUNCTION pgmesh.create_group(node_name text, node_dsn text) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO pgmesh.calls (function_name, arguments)
    VALUES ('create_group', ARRAY[node_name, node_dsn]) $$;
CREATE FUNCTION pgmesh.join_group(node_name text, node_dsn text, join_using_dsn text)
    RETURNS void LANGUAGE sql AS $$
    INSERT INTO pgmesh.calls (function_name, arguments)
    VALUES ('join_group', ARRAY[node_name, node_dsn, join_using_dsn]) $$;
CREATE FUNCTION pgmesh.wait_for_ready(timeout_seconds integer) RETURNS boolean
    LANGUAGE sql AS $$
    INSERT INTO pgmesh.calls (function_name, arguments)
    VALUES ('wait_for_ready', ARRAY[timeout_seconds::text]) RETURNING true $$;
CREATE FUNCTION pgmesh.wait_for_sync(timeout_seconds integer) RETURNS boolean
    LANGUAGE sql AS $$ SELECT true $$;
CREATE VIEW pgmesh.nodes AS
    SELECT 1::bigint AS node_id, 'node1'::text AS node_name,
           'host=127.0.0.1 dbname=pgmesh'::text AS dsn, 'ready'::text AS state,
           true AS is_local, 1 AS node_number;
CREATE VIEW pgmesh.status AS
    SELECT 2::bigint AS peer_node_id, 'node2'::text AS peer_node_name, true AS connected,
           4242 AS worker_pid, 0::bigint AS apply_lag_bytes,
           0.25::double precision AS apply_lag_seconds,
           now() AS last_applied_commit_time, 0::bigint AS conflicts,
           '{}'::jsonb AS conflicts_by_type, NULL::text AS last_error,
           false AS waiting_for_global_lock, now() AS caught_up_to,
           false AS holds_back_tombstones;
)sql";

}  // namespace pgmesh::test
