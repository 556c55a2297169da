# shellcheck shell=bash
# Private PostgreSQL, Redis and RabbitMQ servers for the test suite.
# Sourced by scripts/test after scripts/lib/common.sh. Needs FF_TMP (a private
# temp dir, world-traversable) set by the caller.

# ---- settings (each can be overridden from the environment) -----------------
FF_DB_USER=${FLOWFLEET_TEST_DB_USER:-flowfleet}
FF_DB_PASS=${FLOWFLEET_TEST_DB_PASSWORD:-flowfleet}
FF_DB_NAME=${FLOWFLEET_TEST_DB_NAME:-flowfleet_test}
FF_AMQP_USER=${FLOWFLEET_TEST_AMQP_USER:-flowfleet}
FF_AMQP_PASS=${FLOWFLEET_TEST_AMQP_PASSWORD:-flowfleet}
FF_AMQP_VHOST=${FLOWFLEET_TEST_AMQP_VHOST:-flowfleet_test}
FF_READY_TIMEOUT=${FLOWFLEET_TEST_READY_TIMEOUT:-120}

# ---- installation ------------------------------------------------------------

ff_pg_bindir() {
    local d
    if [[ -n ${FLOWFLEET_TEST_PG_BIN:-} ]]; then
        echo "$FLOWFLEET_TEST_PG_BIN"
        return 0
    fi
    [[ -x /usr/lib/postgresql/15/bin/postgres ]] && { echo /usr/lib/postgresql/15/bin; return 0; }
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [[ -x $d/postgres && -x $d/initdb ]] && { echo "$d"; return 0; }
    done
    return 1
}

ff_rabbit_bindir() { echo "${FLOWFLEET_TEST_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}"; }

# Installs with apt-get whatever server is missing, and promtool (Debian's
# prometheus package: tests/observability/ checks the alert rules with it; the
# server it also ships is never run). Never starts a system service
# (policy-rc.d), never prompts.
ff_install_servers() {
    local -a pkgs=()
    ff_pg_bindir >/dev/null || pkgs+=(postgresql postgresql-client)
    { command -v psql && command -v pg_isready; } >/dev/null 2>&1 || pkgs+=(postgresql-client)
    { command -v redis-server && command -v redis-cli; } >/dev/null 2>&1 || pkgs+=(redis-server)
    [[ -x $(ff_rabbit_bindir)/rabbitmq-server ]] && command -v erl >/dev/null 2>&1 || pkgs+=(rabbitmq-server)
    command -v promtool >/dev/null 2>&1 || pkgs+=(prometheus)
    ((${#pkgs[@]})) || return 0

    local sudo=()
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || ff_die "need root (or sudo) to install: ${pkgs[*]}"
        sudo=(sudo -n)
    fi
    local t0 policy_created=0
    t0=$(ff_now_ms)
    ff_log "installing ${pkgs[*]} (apt-get)"
    # Keep the packages' maintainer scripts from starting system-wide servers.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
        policy_created=1
    fi
    local -a apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=300)
    local ok=0 try
    for try in 1 2; do
        if "${apt[@]}" update >"$FF_TMP/apt.log" 2>&1 &&
            "${apt[@]}" install -y --no-install-recommends \
                -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
                "${pkgs[@]}" >>"$FF_TMP/apt.log" 2>&1; then
            ok=1
            break
        fi
        ff_log "apt-get failed (try $try)"
        sleep 3
    done
    if ((policy_created)); then "${sudo[@]}" rm -f /usr/sbin/policy-rc.d; fi
    if ((!ok)); then
        tail -n 40 "$FF_TMP/apt.log" >&2
        ff_die "could not install ${pkgs[*]}"
    fi
    # Only promtool was wanted: should a policy-rc.d that was already there have let the
    # package start its Prometheus server (systemd), stop it and keep it from booting.
    if [[ " ${pkgs[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 &&
        systemctl is-active --quiet prometheus 2>/dev/null; then
        ff_log "stopping the prometheus service the package started"
        "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
    ff_log "installed ${pkgs[*]} in $(ff_since "$t0")"
}

# s3s-fs, the S3-compatible server the storage tests run the S3 backend against:
# built from crates.io once (a few minutes), then found on PATH or in ~/.cargo/bin.
# 0.14.1 is the newest release that builds with Rust 1.95.
FF_S3S_VERSION=0.14.1

ff_s3s_bin() {
    if [[ -n ${FLOWFLEET_TEST_S3S_BIN:-} ]]; then
        echo "$FLOWFLEET_TEST_S3S_BIN"
        return 0
    fi
    local found
    found=$(command -v s3s-fs 2>/dev/null) && { echo "$found"; return 0; }
    [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs ]] && { echo "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs"; return 0; }
    return 1
}

ff_install_s3s() {
    ff_s3s_bin >/dev/null && return 0
    local t0
    t0=$(ff_now_ms)
    ff_log "installing s3s-fs $FF_S3S_VERSION (cargo install, once)"
    cargo install "s3s-fs@$FF_S3S_VERSION" --locked --features binary >"$FF_TMP/s3s-install.log" 2>&1 || {
        tail -n 40 "$FF_TMP/s3s-install.log" >&2
        ff_die "could not install s3s-fs"
    }
    ff_log "installed s3s-fs in $(ff_since "$t0")"
}

# ---- PostgreSQL --------------------------------------------------------------

ff_pg_user() { if [[ $EUID -eq 0 ]]; then echo postgres; else id -un; fi; }

# ff_start_postgres PORT  (must run in the main shell: it spawns the server)
ff_start_postgres() {
    FF_PG_PORT=$1
    local bin user dir
    bin=$(ff_pg_bindir) || ff_die "PostgreSQL server binaries not found"
    user=$(ff_pg_user)
    dir=$FF_TMP/postgres
    FF_PG_DIR=$dir
    FF_PG_SOCK=$dir/sock
    mkdir -p "$dir/sock"
    [[ $EUID -eq 0 ]] && chown -R "$user:" "$dir"
    local -a as=()
    [[ $EUID -eq 0 ]] && as=(setpriv --reuid="$user" --regid="$user" --init-groups --)
    if ! (cd "$dir" && "${as[@]}" env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
        "$bin/initdb" -D "$dir/data" -U postgres -E UTF8 --no-locale --no-sync \
        --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1); then
        ff_show_logs "$dir/initdb.log"
        ff_die "initdb failed"
    fi
    ff_spawn "$user" INT "$dir/postgres.log" "$dir" "$bin/postgres" -D "$dir/data" -p "$FF_PG_PORT" -k "$dir/sock" \
        -c listen_addresses=127.0.0.1 -c max_connections=400 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
        -c shared_buffers=128MB -c log_min_messages=warning \
        -c log_destination=stderr -c logging_collector=off &
    FF_PG_PID=$!
    ff_track "$FF_PG_PID" postgres INT 20
}

ff_wait_postgres() {
    ff_wait_ready postgres "$FF_PG_PID" "$FF_READY_TIMEOUT" "$FF_PG_DIR/postgres.log" \
        pg_isready -q -h "$FF_PG_SOCK" -p "$FF_PG_PORT" -U postgres -d postgres
    # A login role for the tests, allowed to create databases, schemas and the
    # per-service roles. CREATE DATABASE cannot share a transaction: two -c.
    if ! psql -X -q -v ON_ERROR_STOP=1 -h "$FF_PG_SOCK" -p "$FF_PG_PORT" -U postgres -d postgres \
        -c "CREATE ROLE \"$FF_DB_USER\" LOGIN SUPERUSER CREATEDB CREATEROLE PASSWORD '$FF_DB_PASS'" \
        -c "CREATE DATABASE \"$FF_DB_NAME\" OWNER \"$FF_DB_USER\"" >"$FF_PG_DIR/setup.log" 2>&1; then
        ff_show_logs "$FF_PG_DIR/setup.log $FF_PG_DIR/postgres.log"
        ff_die "PostgreSQL role/database setup failed"
    fi
    # The URL the tests get must work as is: password auth over TCP.
    if ! psql -X -q -At "$FLOWFLEET_TEST_DATABASE_URL" -c 'SELECT 1' >/dev/null 2>"$FF_PG_DIR/check.log"; then
        ff_show_logs "$FF_PG_DIR/check.log $FF_PG_DIR/postgres.log"
        ff_die "cannot log in to PostgreSQL with $FLOWFLEET_TEST_DATABASE_URL"
    fi
}

# ---- Redis -------------------------------------------------------------------

ff_start_redis() {
    FF_REDIS_PORT=$1
    FF_REDIS_DIR=$FF_TMP/redis
    mkdir -p "$FF_REDIS_DIR"
    ff_spawn root TERM "$FF_REDIS_DIR/redis.log" "$FF_REDIS_DIR" \
        "$(command -v redis-server)" --bind 127.0.0.1 --port "$FF_REDIS_PORT" \
        --dir "$FF_REDIS_DIR" --save '' --appendonly no --daemonize no \
        --databases 64 --logfile '' --loglevel warning &
    FF_REDIS_PID=$!
    ff_track "$FF_REDIS_PID" redis TERM 10
}

ff_redis_ping() { [[ $(redis-cli -h 127.0.0.1 -p "$FF_REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

ff_wait_redis() {
    ff_wait_ready redis "$FF_REDIS_PID" "$FF_READY_TIMEOUT" "$FF_REDIS_DIR/redis.log" ff_redis_ping
}

# ---- S3 (s3s-fs) ---------------------------------------------------------------

FF_S3_ACCESS_KEY=flowfleet-test
FF_S3_SECRET_KEY=flowfleet-test-secret
FF_S3_BUCKET=flowfleet-test

ff_start_s3() {
    FF_S3_PORT=$1
    FF_S3_DIR=$FF_TMP/s3
    # A bucket is a directory of the server's root.
    mkdir -p "$FF_S3_DIR/data/$FF_S3_BUCKET"
    ff_spawn root TERM "$FF_S3_DIR/s3s.log" "$FF_S3_DIR" \
        "$(ff_s3s_bin)" --host 127.0.0.1 --port "$FF_S3_PORT" \
        --access-key "$FF_S3_ACCESS_KEY" --secret-key "$FF_S3_SECRET_KEY" \
        "$FF_S3_DIR/data" &
    FF_S3_PID=$!
    ff_track "$FF_S3_PID" s3s-fs TERM 10
}

ff_s3_probe() { (exec 3<>"/dev/tcp/127.0.0.1/$FF_S3_PORT") 2>/dev/null; }

ff_wait_s3() {
    ff_wait_ready s3s-fs "$FF_S3_PID" "$FF_READY_TIMEOUT" "$FF_S3_DIR/s3s.log" ff_s3_probe
}

# ---- RabbitMQ ----------------------------------------------------------------
# Two private nodes, each named by an id: `main`, the broker every test shares,
# and `chaos`, which only tests/chaos.rs uses: it stops and starts that node's
# broker mid-run (through the script ff_write_rabbit_ctl writes) without
# disturbing the tests on `main`. Each node has its own data dir, ports, Erlang
# node name, cookie and epmd; these arrays hold them by id.
declare -A FF_RABBIT_DIR=() FF_RABBIT_NODE=() FF_RABBIT_AMQP_PORT=() \
    FF_RABBIT_DIST_PORT=() FF_RABBIT_EPMD_PORT=() FF_RABBIT_PID=()

ff_rabbit_user() { if [[ $EUID -eq 0 ]]; then echo rabbitmq; else id -un; fi; }

# ff_rabbit_env ID: the environment that node ID and its CLI tools share.
ff_rabbit_env() {
    local id=$1
    local r=${FF_RABBIT_DIR[$id]}
    printf '%s\n' \
        "PATH=/usr/bin:/bin:/usr/sbin:/sbin" "LANG=C.UTF-8" "LC_ALL=C.UTF-8" \
        "HOME=$r/home" \
        "RABBITMQ_NODENAME=${FF_RABBIT_NODE[$id]}" \
        "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1" \
        "RABBITMQ_NODE_PORT=${FF_RABBIT_AMQP_PORT[$id]}" \
        "RABBITMQ_DIST_PORT=${FF_RABBIT_DIST_PORT[$id]}" \
        "ERL_EPMD_PORT=${FF_RABBIT_EPMD_PORT[$id]}" \
        "ERL_EPMD_ADDRESS=127.0.0.1" \
        "RABBITMQ_CONF_ENV_FILE=$r/etc/rabbitmq-env.conf" \
        "RABBITMQ_CONFIG_FILE=$r/etc/rabbitmq.conf" \
        "RABBITMQ_ADVANCED_CONFIG_FILE=$r/etc/advanced.config" \
        "RABBITMQ_ENABLED_PLUGINS_FILE=$r/etc/enabled_plugins" \
        "RABBITMQ_MNESIA_BASE=$r/mnesia" \
        "RABBITMQ_LOG_BASE=$r/log" \
        "ERL_INETRC=$r/etc/erl_inetrc" \
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}

# ff_rabbit_cli_cmd ID TOOL: sets the array FF_CMD to the command that runs TOOL
# (rabbitmqctl, rabbitmq-diagnostics...) against node ID, as the node's user.
ff_rabbit_cli_cmd() {
    local id=$1 tool=$2
    local -a as=() envv=()
    [[ $EUID -eq 0 ]] && as=(setpriv --reuid="$(ff_rabbit_user)" --regid="$(ff_rabbit_user)" --init-groups --)
    mapfile -t envv < <(ff_rabbit_env "$id")
    FF_CMD=("${as[@]}" env -i "${envv[@]}" "$(ff_rabbit_bindir)/$tool" -n "${FF_RABBIT_NODE[$id]}")
}

# ff_rabbit_cli ID TOOL ARGS...: rabbitmqctl / rabbitmq-diagnostics against node
# ID (for debugging: FF_TMP must still exist).
ff_rabbit_cli() {
    ff_rabbit_cli_cmd "$1" "$2"
    shift 2
    "${FF_CMD[@]}" "$@"
}

# ff_start_rabbitmq ID AMQP_PORT DIST_PORT EPMD_PORT: starts node ID and its own
# epmd in the background (ff_wait_rabbitmq ID waits for it). Must run in the
# main shell: it spawns the servers.
ff_start_rabbitmq() {
    local id=$1
    FF_RABBIT_AMQP_PORT[$id]=$2
    FF_RABBIT_DIST_PORT[$id]=$3
    FF_RABBIT_EPMD_PORT[$id]=$4
    # `main` keeps the names it always had (its files in $FF_TMP/rabbitmq).
    local suffix=
    [[ $id == main ]] || suffix=-$id
    FF_RABBIT_DIR[$id]=$FF_TMP/rabbitmq$suffix
    FF_RABBIT_NODE[$id]=flowfleet-test$suffix@localhost
    local r=${FF_RABBIT_DIR[$id]} user
    user=$(ff_rabbit_user)
    mkdir -p "$r/home" "$r/etc" "$r/mnesia" "$r/log"
    : >"$r/etc/rabbitmq-env.conf"
    printf '[].\n' >"$r/etc/enabled_plugins"
    cat >"$r/etc/rabbitmq.conf" <<EOF
default_vhost = $FF_AMQP_VHOST
default_user = $FF_AMQP_USER
default_pass = $FF_AMQP_PASS
default_user_tags.administrator = true
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
loopback_users = none
log.file.level = info
log.console = false
EOF
    # Resolve names in Erlang itself (the node is localhost): no inet_gethost
    # helper, which outlives the node for a moment after it stops.
    cat >"$r/etc/erl_inetrc" <<'EOF'
{host, {127,0,0,1}, ["localhost"]}.
{hosts_file, "/etc/hosts"}.
{lookup, [file]}.
EOF
    # A private Erlang cookie (the CLI tools read the same HOME).
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F >"$r/home/.erlang.cookie"
    chmod 400 "$r/home/.erlang.cookie"
    [[ $EUID -eq 0 ]] && chown -R "$user:" "$r"

    local -a envv=()
    mapfile -t envv < <(ff_rabbit_env "$id")
    local epmd
    epmd=$(command -v epmd 2>/dev/null || ls /usr/lib/erlang/erts-*/bin/epmd 2>/dev/null | head -n 1)
    [[ -x $epmd ]] || ff_die "epmd not found (is erlang-base installed?)"
    # Our own epmd on a private port, so nothing touches a system-wide one on 4369.
    ff_spawn "$user" TERM "$r/epmd.log" "$r" "${envv[@]}" \
        "$epmd" -port "${FF_RABBIT_EPMD_PORT[$id]}" -address 127.0.0.1 &
    ff_track "$!" "epmd$suffix" TERM 5
    ff_spawn "$user" TERM "$r/server.log" "$r" "${envv[@]}" \
        "$(ff_rabbit_bindir)/rabbitmq-server" &
    FF_RABBIT_PID[$id]=$!
    ff_track "$!" "rabbitmq$suffix" TERM 30
}

# ff_amqp_probe PORT: an AMQP 0-9-1 check: send the protocol header, expect a
# method frame (Connection.Start) back. RabbitMQ opens its listener only once it
# has booted (after the default user and vhost exist).
ff_amqp_probe() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'AMQP\x00\x00\x09\x01' >&3
        IFS= read -r -t 5 -N 1 -d '' b <&3 || exit 1
        [[ $b == $'\x01' ]]
    ) 2>/dev/null
}

# ff_wait_rabbitmq ID
ff_wait_rabbitmq() {
    local id=$1 name=rabbitmq
    [[ $id == main ]] || name=rabbitmq-$id
    ff_wait_ready "$name" "${FF_RABBIT_PID[$id]}" "$FF_READY_TIMEOUT" \
        "${FF_RABBIT_DIR[$id]}/server.log ${FF_RABBIT_DIR[$id]}/log/*.log" \
        ff_amqp_probe "${FF_RABBIT_AMQP_PORT[$id]}"
}

# ff_rabbit_url ID: the URL the tests reach node ID's vhost with.
ff_rabbit_url() {
    printf 'amqp://%s:%s@127.0.0.1:%s/%s\n' "$FF_AMQP_USER" "$FF_AMQP_PASS" \
        "${FF_RABBIT_AMQP_PORT[$1]}" "$FF_AMQP_VHOST"
}

# ff_write_rabbit_ctl ID FILE: writes FILE, an executable script taking `stop` or
# `start`, which stops or starts the broker of node ID: `rabbitmqctl stop_app` /
# `start_app`. The Erlang node stays up (so --infra-only still sees its server
# alive); its durable queues and persistent messages are recovered on start, as
# after a restart of the broker. Both return once done.
# shellcheck disable=SC2016 # $1, $0 and $action are the written script's own
ff_write_rabbit_ctl() {
    local id=$1 file=$2
    ff_rabbit_cli_cmd "$id" rabbitmqctl
    {
        printf '#!/usr/bin/env bash\n'
        printf '# Written by scripts/test: "%s stop|start" stops or starts the broker of\n' "${file##*/}"
        printf '# the private RabbitMQ node %s (AMQP port %s); the node itself stays up.\n' \
            "${FF_RABBIT_NODE[$id]}" "${FF_RABBIT_AMQP_PORT[$id]}"
        printf 'set -euo pipefail\n'
        printf 'case ${1:-} in\n'
        printf 'stop) action=stop_app ;;\n'
        printf 'start) action=start_app ;;\n'
        printf '*) echo "usage: $0 stop|start" >&2; exit 2 ;;\n'
        printf 'esac\n'
        printf 'exec'
        printf ' %q' "${FF_CMD[@]}"
        printf ' -q "$action"\n'
    } >"$file"
    chmod 755 "$file"
}

# ---- all together ------------------------------------------------------------

# Starts the servers in parallel on private ports and waits for them: PostgreSQL,
# Redis and the two RabbitMQ nodes (see above). Sets and exports
# FLOWFLEET_TEST_{DATABASE,REDIS,AMQP}_URL, FLOWFLEET_TEST_CHAOS_AMQP_URL (the
# chaos node) and FLOWFLEET_TEST_CHAOS_RABBIT_CTL (its stop|start script).
ff_start_infra() {
    local t0 taken=()
    t0=$(ff_now_ms)
    # Runs started at the same moment must not pick the same free ports: hold a
    # machine-wide lock (flock on the temp base dir itself, so no lock file is
    # left behind) from picking the ports until the servers listen on them.
    exec 9<"${FF_TMP_BASE:-/tmp}"
    if ! flock -n 9; then
        ff_log "another scripts/test is starting its servers; waiting for it"
        flock -w 600 9 || ff_die "could not lock ${FF_TMP_BASE:-/tmp} (startup lock)"
    fi
    local pg_port redis_port amqp_port dist_port epmd_port
    local chaos_amqp_port chaos_dist_port chaos_epmd_port
    pg_port=${FLOWFLEET_TEST_PG_PORT:-$(ff_pick_port 55432)}
    taken+=("$pg_port")
    redis_port=${FLOWFLEET_TEST_REDIS_PORT:-$(ff_pick_port 56379 "${taken[@]}")}
    taken+=("$redis_port")
    amqp_port=${FLOWFLEET_TEST_AMQP_PORT:-$(ff_pick_port 55672 "${taken[@]}")}
    taken+=("$amqp_port")
    dist_port=${FLOWFLEET_TEST_RABBITMQ_DIST_PORT:-$(ff_pick_port 55679 "${taken[@]}")}
    taken+=("$dist_port")
    epmd_port=${FLOWFLEET_TEST_EPMD_PORT:-$(ff_pick_port 54369 "${taken[@]}")}
    taken+=("$epmd_port")
    chaos_amqp_port=${FLOWFLEET_TEST_CHAOS_AMQP_PORT:-$(ff_pick_port 55682 "${taken[@]}")}
    taken+=("$chaos_amqp_port")
    chaos_dist_port=${FLOWFLEET_TEST_CHAOS_RABBITMQ_DIST_PORT:-$(ff_pick_port 55689 "${taken[@]}")}
    taken+=("$chaos_dist_port")
    chaos_epmd_port=${FLOWFLEET_TEST_CHAOS_EPMD_PORT:-$(ff_pick_port 54379 "${taken[@]}")}
    taken+=("$chaos_epmd_port")
    local s3_port
    s3_port=${FLOWFLEET_TEST_S3_PORT:-$(ff_pick_port 58014 "${taken[@]}")}

    ff_log "starting postgres :$pg_port, redis :$redis_port, rabbitmq :$amqp_port (dist :$dist_port, epmd :$epmd_port), chaos rabbitmq :$chaos_amqp_port (dist :$chaos_dist_port, epmd :$chaos_epmd_port), s3s-fs :$s3_port in $FF_TMP"
    # RabbitMQ is the slowest to boot: start both nodes first, to boot side by side.
    ff_start_rabbitmq main "$amqp_port" "$dist_port" "$epmd_port"
    ff_start_rabbitmq chaos "$chaos_amqp_port" "$chaos_dist_port" "$chaos_epmd_port"
    ff_start_redis "$redis_port"
    ff_start_postgres "$pg_port"
    ff_start_s3 "$s3_port"

    export FLOWFLEET_TEST_DATABASE_URL="postgres://$FF_DB_USER:$FF_DB_PASS@127.0.0.1:$FF_PG_PORT/$FF_DB_NAME"
    export FLOWFLEET_TEST_REDIS_URL="redis://127.0.0.1:$FF_REDIS_PORT"
    FLOWFLEET_TEST_AMQP_URL=$(ff_rabbit_url main)
    FLOWFLEET_TEST_CHAOS_AMQP_URL=$(ff_rabbit_url chaos)
    FLOWFLEET_TEST_CHAOS_RABBIT_CTL=$FF_TMP/chaos-rabbitmqctl
    export FLOWFLEET_TEST_AMQP_URL FLOWFLEET_TEST_CHAOS_AMQP_URL FLOWFLEET_TEST_CHAOS_RABBIT_CTL
    # Path-style URLs: http://127.0.0.1:PORT/BUCKET/KEY.
    export FLOWFLEET_TEST_S3_URL="http://$FF_S3_ACCESS_KEY:$FF_S3_SECRET_KEY@127.0.0.1:$FF_S3_PORT/$FF_S3_BUCKET"
    ff_write_rabbit_ctl chaos "$FLOWFLEET_TEST_CHAOS_RABBIT_CTL"

    ff_wait_redis
    ff_wait_s3
    ff_wait_postgres
    ff_wait_rabbitmq main
    ff_wait_rabbitmq chaos
    flock -u 9
    exec 9>&-
    ff_log "infrastructure up in $(ff_since "$t0")"
}

ff_print_exports() {
    printf 'export %s=%q\n' \
        FLOWFLEET_TEST_DATABASE_URL "$FLOWFLEET_TEST_DATABASE_URL" \
        FLOWFLEET_TEST_REDIS_URL "$FLOWFLEET_TEST_REDIS_URL" \
        FLOWFLEET_TEST_AMQP_URL "$FLOWFLEET_TEST_AMQP_URL" \
        FLOWFLEET_TEST_CHAOS_AMQP_URL "$FLOWFLEET_TEST_CHAOS_AMQP_URL" \
        FLOWFLEET_TEST_CHAOS_RABBIT_CTL "$FLOWFLEET_TEST_CHAOS_RABBIT_CTL" \
        FLOWFLEET_TEST_S3_URL "$FLOWFLEET_TEST_S3_URL"
}

# In --infra-only mode: exits non-zero as soon as a server dies.
ff_check_infra_alive() {
    local entry pid name rest
    for entry in "${FF_PROCS[@]}"; do
        IFS='|' read -r pid name rest <<<"$entry"
        ff_alive "$pid" || {
            ff_log "$name (pid $pid) died"
            return 1
        }
    done
}
