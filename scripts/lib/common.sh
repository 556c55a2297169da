# shellcheck shell=bash
# Small helpers shared by scripts/*: logging, process bookkeeping, ports, waiting.
# Sourced, never executed. Everything here is prefixed ff_ / FF_.

ff_log() { printf '%s %s\n' "${FF_LOG_PREFIX:-[flowfleet]}" "$*" >&2; }
ff_die() {
    ff_log "ERROR: $*"
    exit 1
}

# Milliseconds since the epoch (for short timing lines).
ff_now_ms() { date +%s%3N; }
# Elapsed seconds with one decimal since a ff_now_ms stamp.
ff_since() {
    local ms=$(($(ff_now_ms) - $1))
    printf '%d.%ds' $((ms / 1000)) $(((ms % 1000) / 100))
}

# Fields of /proc/PID/stat after "pid (comm) ", as array FF_STAT:
#   [0]=state [1]=ppid [2]=pgrp ... [19]=starttime
ff_read_stat() {
    local line
    { IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || return 1
    line=${line##*) }
    read -r -a FF_STAT <<<"$line"
}

# Start time (jiffies since boot) of a process: with the pid it identifies a
# process for good, even after the pid is reused.
ff_starttime() {
    ff_read_stat "$1" || return 1
    printf '%s\n' "${FF_STAT[19]}"
}

# True while PID exists and is not a zombie.
ff_alive() {
    ff_read_stat "$1" || return 1
    [[ ${FF_STAT[0]} != Z ]]
}

# Is PORT taken on this host (a listener, or any TCP socket bound to it)?
ff_port_busy() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        # Any socket on the port counts, not only listeners: a client connection that
        # happened to get it as its ephemeral port (or lingers in TIME-WAIT) makes a
        # server's bind fail just the same.
        [[ -n $(ss -Htan "sport = :$port" 2>/dev/null) ]] && return 0
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# ff_pick_port PREFERRED [TAKEN...]: PREFERRED, or the next free port above it
# that is not among TAKEN.
ff_pick_port() {
    local p=$1 i
    shift
    for ((i = 0; i < 200; i++, p++)); do
        [[ " $* " == *" $p "* ]] && continue
        ff_port_busy "$p" || {
            echo "$p"
            return 0
        }
    done
    ff_die "no free TCP port found in $1..$p"
}

# Run a command as USER (when root) with pdeathsig SIG, in a new session so
# that Ctrl-C on the terminal does not reach it (cleanup stops it in order),
# with a clean environment: FLOWFLEET_TEST_RUN_DIR=$FF_TMP (which marks every
# process of this run, see ff_sweep), PATH, LANG and the VAR=value arguments.
# Must be called from the main shell (not from $(...)), in the background:
#   ff_spawn USER SIG LOGFILE CWD [VAR=value...] cmd args... &
# The background job's pid is the process's own pid and its process group id.
ff_spawn() {
    local user=$1 sig=$2 log=$3 cwd=$4
    shift 4
    cd "$cwd" || exit 1
    exec 9>&- # the startup lock (see ff_start_infra) stays with this script
    local -a priv=(setpriv --pdeathsig "$sig")
    if [[ $EUID -eq 0 && $user != root ]]; then
        priv+=(--reuid="$user" --regid="$user" --init-groups)
    fi
    exec setsid "${priv[@]}" -- env -i "FLOWFLEET_TEST_RUN_DIR=$FF_TMP" \
        PATH=/usr/bin:/bin:/usr/sbin:/sbin LANG=C.UTF-8 "$@" </dev/null >>"$log" 2>&1
}

# Pids of the live processes of run DIR: those whose environment holds
# FLOWFLEET_TEST_RUN_DIR=DIR (children of the servers inherit it, even those
# that leave the process group, such as Erlang's inet_gethost).
ff_marked_pids() {
    { grep -lszxF "FLOWFLEET_TEST_RUN_DIR=$1" /proc/[0-9]*/environ 2>/dev/null || true; } |
        while IFS=/ read -r _ _ pid _; do echo "$pid"; done
}

# ff_sweep DIR GRACE: wait up to GRACE seconds for the processes of run DIR to
# end, then SIGKILL what is left.
ff_sweep() {
    local dir=$1 grace=$2 i pids
    for ((i = 0; i <= grace * 10; i++)); do
        pids=$(ff_marked_pids "$dir")
        [[ -z $pids ]] && return 0
        sleep 0.1
    done
    ff_log "killing leftover processes of $dir: ${pids//$'\n'/ }"
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        [[ -z $(ff_marked_pids "$dir") ]] && return 0
        sleep 0.1
    done
    ff_log "warning: processes of $dir are still alive: $(ff_marked_pids "$dir" | tr '\n' ' ')"
}

# Processes started by this run, stopped in reverse order by ff_stop_all.
# Each entry: "pid|name|signal|grace_seconds".
FF_PROCS=()

# ff_track PID NAME SIGNAL GRACE: remember a started process.
ff_track() {
    FF_PROCS+=("$1|$2|$3|$4")
}

ff_stop_one() {
    local pid=$1 name=$2 sig=$3 grace=$4 waited=0
    if ff_alive "$pid"; then
        kill "-$sig" "$pid" 2>/dev/null || true
        while ff_alive "$pid" && ((waited < grace * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if ff_alive "$pid"; then
            ff_log "$name did not stop within ${grace}s; killing it"
        fi
    fi
    # Whatever is left in its process group (workers, helpers) goes too.
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

ff_stop_all() {
    local i entry pid name sig grace
    for ((i = ${#FF_PROCS[@]} - 1; i >= 0; i--)); do
        entry=${FF_PROCS[i]}
        IFS='|' read -r pid name sig grace <<<"$entry"
        ff_stop_one "$pid" "$name" "$sig" "$grace"
    done
    FF_PROCS=()
    ff_sweep "$FF_TMP" 5
}

# Kill what an earlier run that died without cleaning up (SIGKILL...) left
# behind: its processes and its temp dir.
ff_reap_stale() {
    local base=$1 dir owner owner_st
    for dir in "$base"/flowfleet-test.*; do
        [[ -d $dir && -O $dir && -f $dir/owner ]] || continue
        read -r owner owner_st <"$dir/owner" || continue
        [[ $owner != "$$" ]] || continue
        if [[ $(ff_starttime "$owner" 2>/dev/null) == "$owner_st" ]]; then
            continue # still running: another live scripts/test
        fi
        if [[ -n $(ff_marked_pids "$dir") ]]; then
            ff_log "reaping processes left by a dead earlier run ($dir)"
            ff_sweep "$dir" 0
        fi
        rm -rf -- "$dir"
    done
}

# ff_wait_ready NAME PID TIMEOUT LOGS CHECK...: run CHECK until it succeeds.
# Fails with the server's log if PID dies or TIMEOUT seconds pass.
ff_wait_ready() {
    local name=$1 pid=$2 timeout=$3 logs=$4
    shift 4
    local start deadline
    start=$(ff_now_ms)
    deadline=$((start + timeout * 1000))
    while true; do
        if "$@" >/dev/null 2>&1; then
            ff_log "$name ready ($(ff_since "$start") after wait start)"
            return 0
        fi
        if ! ff_alive "$pid"; then
            ff_show_logs "$logs"
            ff_die "$name exited during startup (see log above)"
        fi
        if (($(ff_now_ms) > deadline)); then
            ff_show_logs "$logs"
            ff_die "$name not ready after ${timeout}s (see log above)"
        fi
        sleep 0.2
    done
}

# Print the tail of each log file matched by the space-separated globs.
ff_show_logs() {
    local f
    # shellcheck disable=SC2086
    for f in $1; do
        [[ -f $f ]] || continue
        printf '%s\n' "----- tail of $f -----" >&2
        tail -n 60 "$f" >&2 || true
    done
    printf '%s\n' "-----" >&2
}

# ff_pip_install DIR: a Python virtual environment in DIR/.venv with the pinned
# packages of DIR/requirements.txt. Skipped when it was made by this function from
# the same requirements and Python.
ff_pip_install() {
    local dir=$1 stamp t0
    [[ -f $dir/requirements.txt ]] || return 0
    command -v python3 >/dev/null 2>&1 || ff_die "python3 not found (needed for $dir)"
    stamp="$(cksum <"$dir/requirements.txt") $(python3 --version 2>&1)"
    if [[ -f $dir/.venv/.flowfleet-stamp && $(<"$dir/.venv/.flowfleet-stamp") == "$stamp" ]]; then
        return 0
    fi
    t0=$(ff_now_ms)
    rm -rf "$dir/.venv"
    python3 -m venv "$dir/.venv" >&2 || ff_die "python3 -m venv failed (on Debian: apt-get install python3-venv)"
    "$dir/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt" >&2
    printf '%s\n' "$stamp" >"$dir/.venv/.flowfleet-stamp"
    ff_log "Python packages of $dir installed ($(ff_since "$t0"))"
}

# ff_npm_install DIR: `npm ci` in DIR if it has a package.json (npm install
# without a lockfile). Skipped when node_modules was installed by this function
# from the same package.json, lockfile and node version (never the case in CI's
# fresh clone).
ff_npm_install() {
    local dir=$1 stamp t0
    [[ -f $dir/package.json ]] || return 0
    command -v npm >/dev/null 2>&1 || ff_die "npm not found (needed for $dir)"
    stamp=$(cat "$dir/package.json" "$dir/package-lock.json" 2>/dev/null | cksum)
    stamp="$stamp node=$(node --version 2>/dev/null)"
    if [[ -f $dir/node_modules/.flowfleet-stamp && $(<"$dir/node_modules/.flowfleet-stamp") == "$stamp" ]]; then
        return 0
    fi
    t0=$(ff_now_ms)
    if [[ -f $dir/package-lock.json ]]; then
        npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
    else
        npm install --prefix "$dir" --no-audit --no-fund --loglevel=error >&2
    fi
    printf '%s\n' "$stamp" >"$dir/node_modules/.flowfleet-stamp"
    ff_log "npm packages of $dir installed ($(ff_since "$t0"))"
}
