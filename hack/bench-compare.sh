#!/usr/bin/env bash
# Compares imnode with Centrifugo on this machine with one load tool
# (imbench, its LeanCloud and Centrifugo drivers) and prints a summary with
# the ratios imnode/Centrifugo and three nodes/one node. `make bench-compare`
# installs Centrifugo and runs this; docs/benchmarks.md explains the shapes
# and the figures.
#
# Systems (SYSTEMS, in this order by default):
#   imnode-1    one imnode (hack/bench-local.sh, NODES=1)
#   imnode-3    three imnodes on 127.0.0.1, R=3/W=2 (hack/bench-local.sh, NODES=3)
#   centrifugo  Centrifugo (memory engine, no persistence) on 127.0.0.1
# Shapes, each against a freshly started system:
#   pairs  1:1, PAIRS_CLIENTS clients on as many sockets, every client sending
#          SIZE-byte messages; the rate steps through PAIRS_STEPS (msg/s per
#          client) until a step misses the SLO (>= 99% of the offered
#          messages acknowledged and received, send->receive p99 <= 100 ms)
#   room   ROOM_CLIENTS clients in one room (chat room / channel), one of
#          them sending at ROOM_STEPS msg/s, the others receiving
#   idle   IDLE_SOCKETS logged-in idle sockets; the servers' resident memory
#          per socket
# Every step runs STEP_DURATION. The server CPU per message comes from
# /proc/PID/stat of the server processes (all nodes).
#
# Environment: CENTRIFUGO (path of the centrifugo binary, required when
# SYSTEMS has centrifugo), BIN (directory with imnode and imbench, ./bin),
# OUT (directory for the results, default a new temp dir; kept), SYSTEMS,
# SHAPES (pairs room idle), PAIRS_CLIENTS (1000), PAIRS_STEPS (1,2,3,4,5,6,8,10,12,16,20,24),
# ROOM_CLIENTS (1000), ROOM_STEPS (10,20,40,80), IDLE_SOCKETS (5000),
# STEP_DURATION (10s), SIZE (100), SHARDS (256), IMBENCH_ARGS (extra imbench
# flags for every run, e.g. --keep-going).
#
# Every server binds 127.0.0.1 only, on free ports; every process started is
# stopped on exit, Ctrl-C or SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-bin}
systems=${SYSTEMS:-imnode-1 imnode-3 centrifugo}
shapes=${SHAPES:-pairs room idle}
pairs_clients=${PAIRS_CLIENTS:-1000}
pairs_steps=${PAIRS_STEPS:-1,2,3,4,5,6,8,10,12,16,20,24}
room_clients=${ROOM_CLIENTS:-1000}
room_steps=${ROOM_STEPS:-10,20,40,80}
idle_sockets=${IDLE_SOCKETS:-5000}
duration=${STEP_DURATION:-10s}
size=${SIZE:-100}
shards=${SHARDS:-256}
read -r -a extra <<<"${IMBENCH_ARGS:-}"
out=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-compare.XXXXXX")}
mkdir -p "$out"

for b in imnode imbench; do
  [ -x "$bin/$b" ] || { echo "$bin/$b not found: run 'make build'" >&2; exit 1; }
done
if [[ " $systems " == *" centrifugo "* ]]; then
  [ -x "${CENTRIFUGO:-}" ] || { echo "CENTRIFUGO must name the centrifugo binary (make bench-compare installs it)" >&2; exit 1; }
fi

# Many sockets per process: raise the descriptor limit for everything
# started from here.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
fds=$(ulimit -n)
if [ "$fds" != unlimited ] && [ "$fds" -lt $((idle_sockets + 1000)) ]; then
  echo "WARNING: the descriptor limit is $fds, below the $idle_sockets idle sockets plus margin: raise 'ulimit -Hn'" >&2
fi

# quiet checks the machine is idle before a run: it prints the load average
# and warns when anything else is using the cores.
quiet() {
  local load cores
  read -r load _ </proc/loadavg
  cores=$(nproc)
  echo "machine: $cores cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
  if awk -v l="$load" -v c="$cores" 'BEGIN {exit !(l > 0.25 * c)}'; then
    echo "WARNING: the machine is not quiet (1-minute load $load on $cores cores): the figures compete with other work; compare the ratios of one run, not absolute numbers" >&2
  fi
}

# child is the running imbench or hack/bench-local.sh, in the background so
# that a signal reaches the traps at once (bash runs a trap only after the
# foreground command ends).
child=
cf_pid=
cf_dir=
cleanup() {
  local status=$?
  trap - INT TERM EXIT
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  stop_centrifugo
  echo "results in $out" >&2
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_centrifugo() {
  if [ -n "$cf_pid" ]; then
    kill -TERM "$cf_pid" 2>/dev/null || true
    wait "$cf_pid" 2>/dev/null || true
    cf_pid=
  fi
  [ -z "$cf_dir" ] || rm -rf "$cf_dir"
  cf_dir=
}

# start_centrifugo starts Centrifugo on a free port of 127.0.0.1 (retrying
# with another port if the one picked was taken meanwhile) and sets cf_pid
# and cf_port.
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_centrifugo() {
  local try
  for try in 1 2 3 4 5; do
    cf_port=$((20000 + RANDOM % 10000))
    [ -z "$(ss -ltnH "sport = :$cf_port" 2>/dev/null)" ] || continue
    cf_dir=$(mktemp -d "${TMPDIR:-/tmp}/centrifugo.XXXXXX")
    cat >"$cf_dir/config.json" <<EOF
{"client": {"token": {"hmac_secret_key": "$secret"}, "allowed_origins": ["*"]},
 "channel": {"without_namespace": {"allow_subscribe_for_client": true, "allow_publish_for_client": true}},
 "http_server": {"address": "127.0.0.1", "port": $cf_port},
 "health": {"enabled": true},
 "log": {"level": "warn"}}
EOF
    "$CENTRIFUGO" --config "$cf_dir/config.json" >"$cf_dir/centrifugo.log" 2>&1 &
    cf_pid=$!
    local deadline=$((SECONDS + 30))
    while [ $SECONDS -lt $deadline ] && kill -0 "$cf_pid" 2>/dev/null; do
      if curl -fsS "http://127.0.0.1:$cf_port/health" >/dev/null 2>&1; then
        echo "centrifugo (pid $cf_pid) on 127.0.0.1:$cf_port" >&2
        return 0
      fi
      sleep 0.1
    done
    echo "centrifugo did not start on port $cf_port (try $try):" >&2
    tail -n 5 "$cf_dir/centrifugo.log" >&2 || true
    stop_centrifugo
  done
  echo "centrifugo did not start" >&2
  exit 1
}

# shape_args SHAPE prints imbench's flags for a shape.
shape_args() {
  case $1 in
  pairs) echo "--shape pairs --clients $pairs_clients --conns $pairs_clients --steps $pairs_steps" ;;
  room) echo "--shape room --clients $room_clients --conns $room_clients --steps $room_steps" ;;
  idle) echo "--shape idle --clients $idle_sockets --conns $idle_sockets" ;;
  *) echo "unknown shape $1" >&2; exit 2 ;;
  esac
}

start=$SECONDS
failed=()
for system in $systems; do
  for shape in $shapes; do
    quiet
    read -r -a args <<<"$(shape_args "$shape")"
    args+=(--duration "$duration" --size "$size" --label "$system" --json "$out/$system.$shape.json" "${extra[@]}")
    echo "=== $system $shape: imbench ${args[*]}" >&2
    case $system in
    imnode-1 | imnode-3)
      nodes=${system#imnode-}
      NODES=$nodes SHARDS=$shards REPLICATION=3/2 BIN=$bin LOG_LEVEL=warn STOP_TIMEOUT=30 \
        hack/bench-local.sh "${args[@]}" > >(tee "$out/$system.$shape.txt") 2>&1 &
      child=$!
      wait "$child" || failed+=("$system $shape")
      child=
      ;;
    centrifugo)
      start_centrifugo
      pid_args=(--pid "$cf_pid")
      "$bin/imbench" --protocol centrifugo --centrifugo-secret "$secret" \
        --url "ws://127.0.0.1:$cf_port/connection/websocket" "${pid_args[@]}" "${args[@]}" \
        > >(tee "$out/$system.$shape.txt") 2>&1 &
      child=$!
      wait "$child" || failed+=("$system $shape")
      child=
      stop_centrifugo
      ;;
    *)
      echo "unknown system $system (imnode-1, imnode-3, centrifugo)" >&2
      exit 2
      ;;
    esac
  done
done

echo
echo "bench-compare: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $((SECONDS - start))s;" \
  "1:1 $pairs_clients clients, room $room_clients clients, idle $idle_sockets sockets, $size-byte messages, $duration per step"
echo "SLO: >= 99% of the offered messages acknowledged and received, send->receive p99 <= 100 ms;" \
  "cpu = server CPU per acknowledged message; @N/c = at N msg/s per client, the highest 1:1 step every system ran"
shopt -s nullglob
results=("$out"/*.json)
[ "${#results[@]}" -eq 0 ] || "$bin/imbench" compare --baseline centrifugo --versus imnode-3/imnode-1 "${results[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
