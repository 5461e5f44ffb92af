#!/usr/bin/env bash
# cluster.sh -- a local 3-node shoal cluster on 127.0.0.1, default settings.
#
#   scripts/cluster.sh [start]   install deps, build, start n1..n3, show members
#   scripts/cluster.sh status    show whether each node runs, and its members
#   scripts/cluster.sh stop      SIGTERM every node (graceful leave), wait, clean up
#
# State lives in .shoal-local/: cluster.key, one data dir, log and pid file
# per node. n1 listens on UDP 7946 / HTTP 7947, n2 on 7956/7957, n3 on
# 7966/7967; n2 and n3 join through n1.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

STATE="$ROOT/.shoal-local"
BUILD=${SHOAL_BUILD_DIR:-build} # relative to the repository root
BIN="$ROOT/$BUILD/shoal"
KEY="$STATE/cluster.key"
NODES=(n1 n2 n3)
declare -A GOSSIP=([n1]=7946 [n2]=7956 [n3]=7966)
declare -A HTTP=([n1]=7947 [n2]=7957 [n3]=7967)
SEED="127.0.0.1:${GOSSIP[n1]}"
WAIT_SECONDS=30   # bound on waiting for the cluster to converge
STOP_SECONDS=10   # bound on waiting for one node's graceful leave

say() { echo "cluster: $*"; }
die() {
    echo "cluster: $*" >&2
    exit 1
}

# pid_of NODE: prints the pid if NODE's pid file names a running shoal agent.
pid_of() {
    local f="$STATE/$1.pid" pid
    [[ -f "$f" ]] || return 1
    pid=$(<"$f")
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # A recycled pid that is not our agent does not count.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "shoal agent --name $1 " || return 1
    echo "$pid"
}

# alive_count NODE: how many members NODE's API lists as alive (0 if no answer).
alive_count() {
    local body
    body=$(curl -s --max-time 2 "http://127.0.0.1:${HTTP[$1]}/v1/members" 2>/dev/null) || body=""
    python3 -c '
import json, sys
try:
    ms = json.loads(sys.argv[1])["members"]
    print(sum(1 for m in ms if m.get("status") == "alive"))
except Exception:
    print(0)
' "$body"
}

ensure_build() {
    bash "$ROOT/scripts/setup.sh"
    mkdir -p "$STATE"
    local blog="$STATE/build.log"
    : >"$blog"
    if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
        say "configuring $BUILD/"
        cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >>"$blog" 2>&1 ||
            { tail -n 30 "$blog" >&2; die "cmake configure failed (.shoal-local/build.log)"; }
    fi
    # Incremental: rebuilds only if a source changed since the binary was made.
    say "building $BUILD/shoal"
    cmake --build "$BUILD" -j2 --target shoal >>"$blog" 2>&1 ||
        { tail -n 30 "$blog" >&2; die "build failed (.shoal-local/build.log)"; }
    [[ -x "$BIN" ]] || die "build did not produce $BIN"
}

# show_members [NODE...]: each node's `shoal members` (default: all nodes).
show_members() {
    local n nodes=("$@")
    [[ ${#nodes[@]} -gt 0 ]] || nodes=("${NODES[@]}")
    for n in "${nodes[@]}"; do
        echo
        echo "--- $n (SHOAL_HTTP_ADDR=127.0.0.1:${HTTP[$n]}) ---"
        "$BIN" members --http "127.0.0.1:${HTTP[$n]}" || true
    done
}

usage_hint() {
    cat <<EOF

The cluster runs in the background (logs: .shoal-local/n1.log ...). Try:

  export SHOAL_HTTP_ADDR=127.0.0.1:${HTTP[n2]}     # talk to n2 (default: n1's 127.0.0.1:7947)
  $BUILD/shoal members
  $BUILD/shoal info
  $BUILD/shoal members --format json
  curl -s http://127.0.0.1:${HTTP[n1]}/v1/members
  curl -s http://127.0.0.1:${HTTP[n1]}/v1/info
  # the web UI of any node, in a browser: http://127.0.0.1:${HTTP[n1]}/ui/
  kill -9 \$(cat .shoal-local/n3.pid)    # crash n3; the others mark it suspect, then dead
  scripts/cluster.sh                     # starts whatever is not running again
  scripts/cluster.sh stop                # graceful leave of every node
EOF
}

start() {
    ensure_build
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    if [[ ! -f "$KEY" ]]; then
        "$BIN" keygen --out "$KEY" >/dev/null
        say "created cluster key $KEY"
    fi

    local n pid started=0 already=()
    for n in "${NODES[@]}"; do
        if pid=$(pid_of "$n"); then
            already+=("$n(pid $pid)")
            continue
        fi
        mkdir -p "$STATE/$n"
        local args=(agent --name "$n" --bind "127.0.0.1:${GOSSIP[$n]}"
            --http "127.0.0.1:${HTTP[$n]}" --data-dir "$STATE/$n" --cluster-key "$KEY")
        if [[ "$n" != n1 ]]; then
            args+=(--join "$SEED")
        fi
        echo "=== $(date -u +%FT%TZ) start: shoal ${args[*]}" >>"$STATE/$n.log"
        # setsid: the agents outlive this script and ignore the terminal's ^C.
        setsid "$BIN" "${args[@]}" >>"$STATE/$n.log" 2>&1 </dev/null &
        echo $! >"$STATE/$n.pid"
        say "started $n (pid $!): udp 127.0.0.1:${GOSSIP[$n]}, http 127.0.0.1:${HTTP[$n]}"
        started=$((started + 1))
    done
    if [[ $started -eq 0 ]]; then
        say "already running: ${already[*]}"
        show_members
        usage_hint
        return 0
    fi
    if [[ ${#already[@]} -gt 0 ]]; then
        say "already running: ${already[*]}"
    fi

    say "waiting (at most ${WAIT_SECONDS}s) until every node sees ${#NODES[@]} alive members"
    local deadline=$((SECONDS + WAIT_SECONDS)) ok=0
    while [[ $SECONDS -lt $deadline ]]; do
        ok=1
        for n in "${NODES[@]}"; do
            if ! pid_of "$n" >/dev/null; then
                echo "cluster: $n is not running; last lines of .shoal-local/$n.log:" >&2
                tail -n 20 "$STATE/$n.log" >&2 || true
                echo "cluster: fix that and run scripts/cluster.sh again (it starts only what" \
                    "is not running), or scripts/cluster.sh stop" >&2
                exit 1
            fi
            if [[ $(alive_count "$n") -ne ${#NODES[@]} ]]; then
                ok=0
            fi
        done
        [[ $ok -eq 1 ]] && break
        sleep 0.2
    done
    if [[ $ok -ne 1 ]]; then
        show_members
        die "not converged after ${WAIT_SECONDS}s; see .shoal-local/*.log"
    fi
    say "all ${#NODES[@]} nodes see ${#NODES[@]} alive members"
    show_members
    usage_hint
}

stop() {
    local n pid i stopped=0
    for n in "${NODES[@]}"; do
        if ! pid=$(pid_of "$n"); then
            rm -f "$STATE/$n.pid"
            continue
        fi
        kill -TERM "$pid"
        for ((i = 0; i < STOP_SECONDS * 10; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$n (pid $pid) still running after ${STOP_SECONDS}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        else
            say "stopped $n (pid $pid)"
        fi
        rm -f "$STATE/$n.pid"
        stopped=$((stopped + 1))
    done
    [[ $stopped -gt 0 ]] || say "no node was running"
}

status() {
    local n pid running=()
    for n in "${NODES[@]}"; do
        if pid=$(pid_of "$n"); then
            say "$n running (pid $pid), sees $(alive_count "$n") alive"
            running+=("$n")
        else
            say "$n not running"
        fi
    done
    if [[ ${#running[@]} -gt 0 ]]; then
        show_members "${running[@]}"
    fi
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
status) status ;;
-h | --help | help)
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    ;;
*)
    echo "usage: scripts/cluster.sh [start|stop|status]" >&2
    exit 2
    ;;
esac
