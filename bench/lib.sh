# shellcheck shell=bash
# bench/lib.sh: helpers shared by bench/drain and bench/lag (sourced, not run).
#
# The sourcing script sets, before sourcing:
#   BENCH_NAME   name in log lines, error messages and postgresql.conf comments
#                (e.g. bench/lag)
#   PGBIN        PostgreSQL's bin directory
#   PGMESH_BIN   the pgmesh CLI
# and later, before the helpers that use them: KEEP (cleanup), EXTRA_SETTINGS
# (--set lines), BASE_PORT (pgmesh_local_up), SETTINGS_FILE (make_server; set
# by pgmesh_local_up). Sourcing defines functions and initialises WORK,
# SERVER_DIRS, MESH_DIR, BG_PIDS, USED_PORTS, SYSTEMS and PLDB; it starts
# nothing and sets no traps (bench_traps does).

# Every benchmark builds each server's schema itself (pgbench -i, probe
# tables), on pgmesh nodes too: DDL stays on the node it runs on, as on the
# other systems. Servers without pgmesh take the setting as a placeholder.
export PGOPTIONS="${PGOPTIONS:-} -c pgmesh.replicate_ddl=off"

# ---------------------------------------------------------------------------
# Logging, errors, cleanup

log() { printf '%s %s: %s\n' "$(date +%H:%M:%S)" "$BENCH_NAME" "$*" >&2; }

# PostgreSQL refuses to run as root: servers run as the postgres OS user.
as_pg() {
    if [[ "$EUID" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

WORK=""
SERVER_DIRS=()   # data directories started by this script (not the CLI's)
MESH_DIR=""
BG_PIDS=()       # background processes (samplers) to stop on exit

# diagnostics: state of the pgmesh nodes and the pglogical subscriber (when
# the script has them), then the ERROR/FATAL lines and tail of every log.
diagnostics() {
    [[ -n "$WORK" && -d "$WORK" ]] || return 0
    local logfile port
    for port in "${MESH1:-}" "${MESH2:-}"; do
        [[ -n "$port" ]] || continue
        echo "----- pgmesh node on port $port: pgmesh.nodes, pgmesh.status, slots, origins -----" >&2
        timeout 15 "$PGBIN/psql" -X -d "host=127.0.0.1 port=$port dbname=pgmesh user=postgres connect_timeout=5" \
            -c "SELECT * FROM pgmesh.nodes" -c "SELECT * FROM pgmesh.status" \
            -c "SELECT slot_name, active, restart_lsn, confirmed_flush_lsn FROM pg_replication_slots" \
            -c "SELECT * FROM pg_replication_origin_status" >&2 2>&1 || true
    done
    if [[ -n "${PLSUB:-}" ]]; then
        echo "----- pglogical subscriber on port $PLSUB: subscription status, workers -----" >&2
        timeout 15 "$PGBIN/psql" -X -d "$(dsn "$PLSUB" "${PLDB:-bench}")" \
            -c "SELECT * FROM pglogical.show_subscription_status()" \
            -c "SELECT pid, backend_type, state, wait_event FROM pg_stat_activity WHERE backend_type LIKE 'pglogical%'" >&2 2>&1 || true
    fi
    for logfile in "$WORK"/*/postgres.log "$WORK"/mesh/node*/postgres.log; do
        [[ -f "$logfile" ]] || continue
        echo "----- ${logfile#"$WORK"/}: ERROR/FATAL/PANIC lines (last 20) -----" >&2
        grep -E 'ERROR|FATAL|PANIC|terminated by signal' "$logfile" | tail -n 20 >&2 || true
        echo "----- ${logfile#"$WORK"/}: last 15 lines -----" >&2
        tail -n 15 "$logfile" >&2 || true
    done
}

die() {
    echo "$BENCH_NAME: FAILED: $*" >&2
    diagnostics
    exit 1
}

# cleanup (EXIT trap): stop the background processes, the servers this script
# started and the CLI's cluster, then remove WORK unless KEEP=1.
cleanup() {
    local status=$?
    trap - EXIT
    set +e
    local pid dir
    for pid in "${BG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${BG_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for dir in "${SERVER_DIRS[@]}"; do
        if [[ -f "$dir/postmaster.pid" ]]; then
            as_pg "$PGBIN/pg_ctl" stop -D "$dir" -m fast -w -t 30 -s >/dev/null 2>&1 ||
                as_pg "$PGBIN/pg_ctl" stop -D "$dir" -m immediate -w -t 30 -s >/dev/null 2>&1
        fi
    done
    if [[ -n "$MESH_DIR" && -f "$MESH_DIR/pgmesh-local.conf" ]]; then
        timeout 120 "$PGMESH_BIN" local down --dir "$MESH_DIR" >/dev/null 2>&1
    fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ "$KEEP" == 1 ]]; then
            log "kept $WORK (servers stopped)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}

bench_traps() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ---------------------------------------------------------------------------
# Options

# parse_systems LIST: the comma-separated subset of pgmesh,native,pglogical
# into SYSTEMS (in the given order); exits 2 on a bad list.
SYSTEMS=()
parse_systems() {
    local system system_list=()
    SYSTEMS=()
    IFS=, read -r -a system_list <<<"$1"
    for system in "${system_list[@]}"; do
        system="${system// /}"
        [[ -n "$system" ]] || continue
        case "$system" in
        pgmesh | native | pglogical) ;;
        *) echo "$BENCH_NAME: --systems: unknown system $system (pgmesh, native, pglogical)" >&2; exit 2 ;;
        esac
        [[ " ${SYSTEMS[*]} " != *" $system "* ]] ||
            { echo "$BENCH_NAME: --systems: $system given twice" >&2; exit 2; }
        SYSTEMS+=("$system")
    done
    [[ ${#SYSTEMS[@]} -gt 0 ]] || { echo "$BENCH_NAME: --systems: no system given" >&2; exit 2; }
}

# has SYSTEM: whether SYSTEM is measured in this invocation.
has() { [[ " ${SYSTEMS[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------
# SQL

dsn() { echo "host=127.0.0.1 port=$1 dbname=$2 user=postgres connect_timeout=10"; }

# q PORT DB SQL: run SQL, print the unaligned result; dies on error.
q() {
    local out
    if ! out=$(timeout 300 "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -d "$(dsn "$1" "$2")" -c "$3" 2>&1); then
        die "psql on port $1 ($2): $3
$out"
    fi
    printf '%s\n' "$out"
}

# wait_for PORT DB SQL EXPECTED TIMEOUT WHAT: poll until SQL prints EXPECTED.
wait_for() {
    local port=$1 db=$2 sql=$3 expected=$4 limit=$5 what=$6 got=""
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        got=$(timeout 60 "$PGBIN/psql" -X -At -q -d "$(dsn "$port" "$db")" -c "$sql" 2>&1) || true
        [[ "$got" == "$expected" ]] && return 0
        sleep 0.2
    done
    die "timed out after ${limit}s waiting for $what (last answer: ${got:-none})"
}

# copy_schema FROM_PORT TO_PORT DB WHAT: pg_dump -s into the other server.
copy_schema() {
    local from=$1 to=$2 db=$3 what=$4 out
    out=$( (timeout 300 "$PGBIN/pg_dump" -s -d "$(dsn "$from" "$db")" |
        timeout 300 "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$(dsn "$to" "$db")") 2>&1) ||
        die "copying the schema to $what failed:
$out"
}

# ---------------------------------------------------------------------------
# Ports and servers

port_free() {
    local port=$1
    if command -v ss >/dev/null && [[ -n "$(ss -Htan "sport = :$port" 2>/dev/null)" ]]; then
        return 1
    fi
    ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# next_free_port FROM: the first free port > FROM not handed out yet.
USED_PORTS=" "
next_free_port() {
    local port=$(($1 + 1))
    while ((port < 65535)); do
        if [[ "$USED_PORTS" != *" $port "* ]] && port_free "$port"; then
            USED_PORTS+="$port "
            echo "$port"
            return 0
        fi
        port=$((port + 1))
    done
    die "no free TCP port above $1"
}

# check_requirements: the CLI, PostgreSQL's programs, the installed pgmesh
# extension, pglogical when it is in SYSTEMS, jq, and the postgres OS user
# when running as root.
check_requirements() {
    local program
    [[ -x "$PGMESH_BIN" ]] || die "no pgmesh CLI at $PGMESH_BIN (build first, or set PGMESH_BIN)"
    for program in initdb pg_ctl pgbench psql pg_dump postgres; do
        [[ -x "$PGBIN/$program" ]] || die "no $program in $PGBIN (set PGMESH_PG_BINDIR)"
    done
    [[ -f "$("$PGBIN/pg_config" --sharedir)/extension/pgmesh.control" ]] ||
        die "the pgmesh extension is not installed into $PGBIN/.. (cmake --install build)"
    if has pglogical; then
        [[ -f "$("$PGBIN/pg_config" --sharedir)/extension/pglogical.control" &&
            -f "$("$PGBIN/pg_config" --pkglibdir)/pglogical.so" ]] ||
            die "pglogical is not installed into $PGBIN/.. (apt-get install postgresql-15-pglogical, or --systems without pglogical)"
    fi
    command -v jq >/dev/null || die "jq is needed for the results (apt-get install jq)"
    if [[ "$EUID" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user"
    fi
}

# make_work_dir PREFIX: WORK = a new directory /tmp/PREFIX.XXXXXX the
# postgres OS user may use.
make_work_dir() {
    WORK="$(mktemp -d "/tmp/$1.XXXXXX")"
    chmod 755 "$WORK"
    if [[ "$EUID" == 0 ]]; then chown postgres: "$WORK"; fi
}

# make_server NAME PORT PRELOAD [SETTING...]: initdb + the CLI's settings,
# then the given extra "name = value" lines (they win).
make_server() {
    local name=$1 port=$2 preload=$3 dir="$WORK/$1"
    shift 3
    mkdir -p "$dir"
    if [[ "$EUID" == 0 ]]; then chown postgres: "$dir"; fi
    local out
    out=$(as_pg "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C \
        --no-instructions --no-sync 2>&1) || die "$name: initdb failed:
$out"
    {
        echo ""
        echo "# --- $BENCH_NAME: the settings pgmesh local up wrote for the pgmesh nodes ---"
        grep -v -E '^(port|unix_socket_directories|shared_preload_libraries) *=' "$SETTINGS_FILE" || true
        echo "port = '$port'"
        echo "unix_socket_directories = '$dir'"
        echo "shared_preload_libraries = '$preload'"
        if [[ $# -gt 0 ]]; then
            echo "# --- $BENCH_NAME: settings for this server ---"
            printf '%s\n' "$@"
        fi
    } >>"$dir/data/postgresql.conf"
    SERVER_DIRS+=("$dir/data")
}

start_server() {
    local name=$1 dir="$WORK/$1"
    as_pg "$PGBIN/pg_ctl" start -D "$dir/data" -l "$dir/postgres.log" -w -t 120 -s >/dev/null 2>&1 ||
        die "$name: the server did not start (log: $dir/postgres.log)"
}

# ---------------------------------------------------------------------------
# pgmesh

# pgmesh_local_up: node1 from `pgmesh local up --nodes 1` in MESH_DIR
# (WORK/mesh) on BASE_PORT or above, with the --set settings; sets MESH1 and
# SETTINGS_FILE, the settings block the CLI appended to node1's
# postgresql.conf (later lines win), reused for the servers the script makes.
pgmesh_local_up() {
    local set_args=() setting out
    MESH_DIR="$WORK/mesh"
    for setting in "${EXTRA_SETTINGS[@]}"; do set_args+=(--set "$setting"); done
    log "pgmesh: local up --nodes 1"
    out=$(timeout 300 "$PGMESH_BIN" local up --nodes 1 --dir "$MESH_DIR" \
        --base-port "$BASE_PORT" "${set_args[@]}" 2>&1) || die "pgmesh local up failed:
$out"
    MESH1=$(sed -n 's/^node1\.port=//p' "$MESH_DIR/pgmesh-local.conf")
    [[ -n "$MESH1" ]] || die "no node1.port in $MESH_DIR/pgmesh-local.conf"
    USED_PORTS+="$MESH1 "
    SETTINGS_FILE="$WORK/settings.conf"
    sed -n '/^# --- pgmesh local cluster settings/,$p' "$MESH_DIR/node1/data/postgresql.conf" |
        { grep -v '^#' || true; } >"$SETTINGS_FILE"
    [[ -s "$SETTINGS_FILE" ]] || die "cannot find the CLI's settings in node1's postgresql.conf"
}

# pgmesh_local_drop: stop and remove the CLI's node1 when pgmesh is left out
# of SYSTEMS (only its settings were wanted). MESH1's port stays handed out.
pgmesh_local_drop() {
    local out
    out=$(timeout 120 "$PGMESH_BIN" local down --dir "$MESH_DIR" 2>&1) || die "pgmesh local down failed:
$out"
    rm -rf "$MESH_DIR"
    MESH_DIR="" MESH1=""
}

# pgmesh_join_node2 DB READY_TIMEOUT: make node2 (server "mesh2" on port
# MESH2) with the CLI's settings and join it through node1 (MESH1) with
# pgmesh.join_group, then wait until it is ready.
pgmesh_join_node2() {
    local db=$1 ready_timeout=$2 attempt out
    # A failed join leaves node2 unusable (copied data, slots): start it afresh.
    for attempt in 1 2 3; do
        log "pgmesh: node2 on port $MESH2, join_group via node1 (attempt $attempt)"
        if [[ "$attempt" -gt 1 ]]; then
            as_pg "$PGBIN/pg_ctl" stop -D "$WORK/mesh2/data" -m fast -w -t 60 -s >/dev/null 2>&1 || true
            mv "$WORK/mesh2" "$WORK/mesh2-failed-$((attempt - 1))"
            unset 'SERVER_DIRS[-1]'
        fi
        make_server mesh2 "$MESH2" pgmesh
        start_server mesh2
        q "$MESH2" postgres "CREATE DATABASE $db" >/dev/null
        q "$MESH2" "$db" "CREATE EXTENSION pgmesh" >/dev/null
        if out=$(timeout 900 "$PGBIN/psql" -X -At -q -v ON_ERROR_STOP=1 -d "$(dsn "$MESH2" "$db")" \
            -c "SELECT pgmesh.join_group('node2', '$(dsn "$MESH2" "$db")', '$(dsn "$MESH1" "$db")')" 2>&1); then
            break
        fi
        log "pgmesh: join_group failed: $out"
        [[ "$attempt" -lt 3 ]] || die "pgmesh: join_group failed 3 times, last: $out"
    done
    # wait_for_ready from fresh sessions: before commit 567c0a7 one call never saw
    # the node turn ready while it waited.
    wait_for "$MESH2" "$db" "SELECT pgmesh.wait_for_ready(1)" t "$ready_timeout" \
        "pgmesh node2 to be ready (wait_for_ready)"
}

# ---------------------------------------------------------------------------
# pglogical pair: provider PLPROV with the data, subscriber PLSUB with the
# schema only (pg_dump -s), initial copy by pglogical.create_subscription
# (synchronize_data). Same settings as the other servers plus pglogical
# preloaded and the lines of pglogical_settings.

PLDB=bench      # the pglogical pair's database

# pglogical_settings: the extra postgresql.conf lines for its servers.
pglogical_settings() {
    # pglogical's conflict handling uses commit timestamps; the CLI's settings
    # turn them on already, repeated here so that the pair does not depend on it.
    local lines=() line setting
    lines+=("track_commit_timestamp = on" "wal_level = logical")
    # A supervisor, a manager per database, an apply worker per subscription
    # and sync workers during the initial copy.
    lines+=("max_worker_processes = 20" "max_replication_slots = 12" "max_wal_senders = 12")
    if [[ "$("$PGBIN/postgres" --describe-config 2>/dev/null || true)" == *$'\n'output_plugin_libraries$'\t'* ]]; then
        # Debian's 15.20 only lets listed plugins be used for logical
        # decoding; pglogical's slots use the plugin "pglogical_output"
        # (a stub library that loads pglogical.so).
        lines+=("output_plugin_libraries = 'pgoutput, test_decoding, pglogical_output'")
    fi
    # --set wins (it is in the CLI's settings already).
    for line in "${lines[@]}"; do
        for setting in "${EXTRA_SETTINGS[@]}"; do
            [[ "${line%% *}" != "${setting%%=*}" ]] || continue 2
        done
        echo "$line"
    done
}

# pglogical_counts PORT: row counts of the four pgbench tables.
pglogical_counts() {
    q "$1" "$PLDB" "SELECT (SELECT count(*) FROM pgbench_accounts) || '/' || (SELECT count(*) FROM pgbench_branches)
        || '/' || (SELECT count(*) FROM pgbench_tellers) || '/' || (SELECT count(*) FROM pgbench_history)"
}

# pglogical_wait_replicating LIMIT WHAT: poll show_subscription_status until
# 'replicating'. The apply worker retries after errors (status 'down'), so a
# subscription that stays down for 30 s fails at once, with the server logs.
pglogical_wait_replicating() {
    local limit=$1 what=$2 status="" down_since=""
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        status=$(timeout 60 "$PGBIN/psql" -X -At -q -d "$(dsn "$PLSUB" "$PLDB")" \
            -c "SELECT status FROM pglogical.show_subscription_status('s')" 2>&1) || true
        [[ "$status" != replicating ]] || return 0
        if [[ "$status" == down ]]; then
            down_since=${down_since:-$SECONDS}
            ((SECONDS - down_since < 30)) ||
                die "$what: the pglogical subscription has been 'down' for 30 s (apply worker failing, see the logs)"
        else
            down_since=""
        fi
        sleep 0.2
    done
    die "timed out after ${limit}s waiting for $what (subscription status: ${status:-none})"
}

# pglogical_setup_pair INIT: servers "plprov" and "plsub" on the ports
# PLPROV and PLSUB (set by the caller), INIT PORT DB loads the data on the
# provider, then nodes "provider" and "subscriber", every table of schema
# public in replication set 'default', subscription "s" with the initial
# copy; returns once it is 'replicating' and the pgbench tables' row counts
# match. Sets PGLOGICAL_SLOT, the provider's slot (pgl_<db>_provider_s).
pglogical_setup_pair() {
    local init=$1 settings=()
    mapfile -t settings < <(pglogical_settings)
    log "pglogical: provider on port $PLPROV, subscriber on port $PLSUB"
    make_server plprov "$PLPROV" pglogical "${settings[@]}"
    make_server plsub "$PLSUB" pglogical "${settings[@]}"
    start_server plprov
    start_server plsub
    q "$PLPROV" postgres "CREATE DATABASE $PLDB" >/dev/null
    q "$PLSUB" postgres "CREATE DATABASE $PLDB" >/dev/null
    "$init" "$PLPROV" "$PLDB"
    copy_schema "$PLPROV" "$PLSUB" "$PLDB" "the pglogical subscriber"
    q "$PLPROV" "$PLDB" "CREATE EXTENSION pglogical" >/dev/null
    q "$PLSUB" "$PLDB" "CREATE EXTENSION pglogical" >/dev/null
    q "$PLPROV" "$PLDB" "SELECT pglogical.create_node(node_name := 'provider', dsn := '$(dsn "$PLPROV" "$PLDB")')" >/dev/null
    q "$PLSUB" "$PLDB" "SELECT pglogical.create_node(node_name := 'subscriber', dsn := '$(dsn "$PLSUB" "$PLDB")')" >/dev/null
    q "$PLPROV" "$PLDB" "SELECT pglogical.replication_set_add_all_tables('default', ARRAY['public'])" >/dev/null
    q "$PLSUB" "$PLDB" "SELECT pglogical.create_subscription(subscription_name := 's',
        provider_dsn := '$(dsn "$PLPROV" "$PLDB")', synchronize_data := true)" >/dev/null
    log "pglogical: waiting for the initial data synchronisation"
    pglogical_wait_replicating 900 "the pglogical subscription's initial sync"
    wait_for "$PLSUB" "$PLDB" "SELECT (SELECT count(*) FROM pgbench_accounts) || '/' || (SELECT count(*) FROM pgbench_branches)
        || '/' || (SELECT count(*) FROM pgbench_tellers) || '/' || (SELECT count(*) FROM pgbench_history)" \
        "$(pglogical_counts "$PLPROV")" 900 "the pglogical subscriber's row counts to match the provider's"
    PGLOGICAL_SLOT=$(q "$PLSUB" "$PLDB" "SELECT slot_name FROM pglogical.show_subscription_status('s')")
    [[ -n "$PGLOGICAL_SLOT" ]] || die "pglogical: no slot name in show_subscription_status('s')"
}

# ---------------------------------------------------------------------------
# Results

# result_meta: BENCH_SECONDS_TOTAL (since BENCH_START), PG_VERSION, COMMIT,
# DIRTY (tracked files changed) and settings_json (the CLI's settings as a
# JSON array, without port and socket directory).
# shellcheck disable=SC2034  # used by the sourcing script
result_meta() {
    BENCH_SECONDS_TOTAL=$(awk -v a="$BENCH_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    PG_VERSION=$("$PGBIN/postgres" --version)
    COMMIT=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)
    DIRTY=false
    if [[ -n "$(GIT_OPTIONAL_LOCKS=0 git -C "$ROOT" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        DIRTY=true
    fi
    settings_json=$(jq -Rn '[inputs | select(length > 0)
        | select(test("^(port|unix_socket_directories) *=") | not)]' "$SETTINGS_FILE")
}
