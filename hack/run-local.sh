#!/usr/bin/env bash
# Starts a local three-node imcluster on 127.0.0.1 with the built-in
# development app and prints the options to connect with. Ctrl-C stops all
# nodes cleanly (SIGTERM, then waits for them).
#
# Node N (imnode-N, N = 0, 1, 2) listens on
#   client    CLIENT_PORT + 2N  (8080, 8082, 8084): WebSocket and REST
#   admin     ADMIN_PORT  + 2N  (8081, 8083, 8085): /readyz, /metrics, /admin/v1
#   gossip    PEER_PORT   + 2N  (7946, 7948, 7950): memberlist, TCP and UDP
#   transport PEER_PORT + 2N + 1 (7947, 7949, 7951): peer data transport, TCP
# keeps its data in $IMCLUSTER_DATA/node-N and its log in $IMCLUSTER_DATA/node-N.log.
# Nodes 1 and 2 join node 0's gossip address.
#
# Environment: IMCLUSTER_DATA (default ~/.cache/imcluster/run), NODES (default 3;
# 1 starts a single node), CLIENT_PORT (8080), ADMIN_PORT
# (8081), PEER_PORT (7946), SHARDS (the node's default, 256), REPLICATION_FACTOR
# (3), WRITE_QUORUM (2), LOG_LEVEL (info), READY_TIMEOUT (seconds, 120),
# RESET=1 (delete the data of earlier runs first).
#
# On new data directories node 0 starts with --bootstrap and forms the
# cluster; on the data of an earlier run every node starts with --join of the
# others. A cluster already running on the ports is detected (its admin API
# answers, or a node finds its data directory locked) and left alone: logs
# are only ever appended to. When a node exits the script prints the command
# that starts it again.
set -euo pipefail
cd "$(dirname "$0")/.."

data=${IMCLUSTER_DATA:-$HOME/.cache/imcluster/run}
nodes=${NODES:-3}
client_port=${CLIENT_PORT:-8080}
admin_port=${ADMIN_PORT:-8081}
peer_port=${PEER_PORT:-7946}
replication_factor=${REPLICATION_FACTOR:-3}
write_quorum=${WRITE_QUORUM:-2}
log_level=${LOG_LEVEL:-info}
ready_timeout=${READY_TIMEOUT:-120}
imnode=bin/imnode

[[ $nodes =~ ^[1-9][0-9]*$ ]] || { echo "NODES must be a positive integer, got '$nodes'" >&2; exit 2; }
[ -x "$imnode" ] || { echo "$imnode not found: run 'make run' (it builds it)" >&2; exit 1; }

client() { echo $((client_port + 2 * $1)); }
admin() { echo $((admin_port + 2 * $1)); }
gossip() { echo $((peer_port + 2 * $1)); }
transport() { echo $((peer_port + 2 * $1 + 1)); }

pids=()
reported=()
cmds=()

# stop sends SIGTERM to every node still running and waits for all of them.
stop() {
  trap - INT TERM EXIT
  local i
  for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" 2>/dev/null || true
  done
}
trap 'echo; echo "stopping the nodes..."; stop; echo "stopped"; exit 0' INT TERM
trap stop EXIT

# report prints why node $1 is gone, with the end of its log and the command
# that starts it again.
report() {
  local i=$1 code=0
  wait "${pids[$i]}" 2>/dev/null || code=$?
  echo >&2
  echo "imnode-$i exited (status $code); last lines of $data/node-$i.log:" >&2
  ours "$i" | tail -n 40 | sed 's/^/  | /' >&2
  if ours "$i" | tail -n 5 | grep -q 'locked by another process'; then
    echo "A node is already running on $data/node-$i (its data directory is locked): is another 'make run' up?" >&2
    echo "Stop it (Ctrl-C in its terminal) or use another IMCLUSTER_DATA and other ports." >&2
    reported[i]=1
    return
  elif ours "$i" | tail -n 5 | grep -q 'store: open'; then
    echo "(data of an older, incompatible build? RESET=1 make run starts from empty data dirs)" >&2
  fi
  if [ "$nodes" -gt 1 ]; then
    echo "Start it again (it rejoins the running nodes) with:" >&2
    echo "  $imnode ${cmds[$i]} --join $(seeds "$i")" >&2
  fi
  reported[i]=1
}

# ours prints the part of node $1's log this script's run wrote (from its
# header to the next run's, if another run appended since).
ours() {
  awk -v tag="[run $$]" 'index($0, "=== ") == 1 { mine = index($0, tag) > 0 } mine' "$data/node-$1.log"
}

# seeds prints the gossip addresses of every node but $1, comma-separated.
seeds() {
  local i out=""
  for ((i = 0; i < nodes; i++)); do
    [ "$i" = "$1" ] || out+="${out:+,}127.0.0.1:$(gossip "$i")"
  done
  echo "$out"
}

# running prints the ids of nodes whose admin API answers on the ports of an
# earlier run (a cluster still up on $data).
running() {
  local i
  for ((i = 0; i < nodes; i++)); do
    if curl -fsS -m 1 "http://127.0.0.1:$(admin "$i")/healthz" >/dev/null 2>&1; then echo "imnode-$i"; fi
  done
}

start_node() {
  local i=$1
  shift
  mkdir -p "$data/node-$i"
  rm -f "$data/node-$i.addr"
  local args=(--node-id "imnode-$i" --data-dir "$data/node-$i"
    --client-addr "127.0.0.1:$(client "$i")" --admin-addr "127.0.0.1:$(admin "$i")"
    --insecure --dev-app --addr-file "$data/node-$i.addr" --log-level "$log_level")
  # --cluster-profile local: failure detection tuned for nodes on one machine.
  # The advertised host defaults to the bind host, 127.0.0.1.
  args+=(--peer-addr "127.0.0.1:$(gossip "$i")" --transport-addr "127.0.0.1:$(transport "$i")"
    --cluster-profile local
    --replication-factor "$replication_factor" --write-quorum "$write_quorum")
  if [ -n "${SHARDS:-}" ]; then args+=(--shards "$SHARDS"); fi
  cmds[i]="${args[*]}"
  args+=("$@")
  # Append, never truncate: the log may be a running node's.
  echo "=== $(date -u +%FT%TZ) [run $$] $imnode ${args[*]}" >>"$data/node-$i.log"
  "$imnode" "${args[@]}" >>"$data/node-$i.log" 2>&1 &
  pids[i]=$!
}

# wait_for waits until "$2..." succeeds, failing if node $1 exits first.
wait_for() {
  local i=$1 what=$2
  shift 2
  local deadline=$((SECONDS + ready_timeout))
  until "$@" >/dev/null 2>&1; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      report "$i"
      echo "imnode-$i exited while waiting for $what" >&2
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "imnode-$i: no $what after ${ready_timeout}s; last lines of $data/node-$i.log:" >&2
      tail -n 40 "$data/node-$i.log" | sed 's/^/  | /' >&2
      exit 1
    fi
    sleep 0.2
  done
}

up=$(running)
if [ -n "$up" ]; then
  echo "A cluster is already running on these ports ($(echo $up)): nothing started." >&2
  echo "Use it, or stop it (Ctrl-C in its terminal) first; for a second cluster set IMCLUSTER_DATA," >&2
  echo "CLIENT_PORT, ADMIN_PORT and PEER_PORT." >&2
  trap - EXIT
  exit 1
fi
if [ "${RESET:-}" = 1 ]; then
  echo "RESET=1: deleting $data"
  rm -rf "$data"
fi
mkdir -p "$data"
echo "starting $nodes imnode node(s); data and logs in $data"
if [ ! -e "$data/node-0/IMNODE_IDENTITY" ]; then
  # A new cluster: node 0 forms it, the others join node 0.
  start_node 0 --bootstrap
  wait_for 0 "addr file" test -s "$data/node-0.addr"
  for ((i = 1; i < nodes; i++)); do
    start_node "$i" --join "127.0.0.1:$(gossip 0)"
  done
else
  # The cluster exists: every node joins the others (each waits, not ready,
  # until one answers; none forms a cluster of its own).
  for ((i = 0; i < nodes; i++)); do
    if [ "$nodes" -gt 1 ]; then start_node "$i" --join "$(seeds "$i")"; else start_node "$i"; fi
  done
fi
for ((i = 0; i < nodes; i++)); do
  wait_for "$i" "/readyz" curl -fsS "http://127.0.0.1:$(admin "$i")/readyz"
  echo "imnode-$i ready: client 127.0.0.1:$(client "$i"), admin 127.0.0.1:$(admin "$i")"
done

rtm=""
admins=""
for ((i = 0; i < nodes; i++)); do
  rtm+="${rtm:+, }'ws://127.0.0.1:$(client "$i")'"
  admins+="    imnode-$i  http://127.0.0.1:$(admin "$i")/admin/v1/node   log: $data/node-$i.log"$'\n'
done

cat <<MSG

imcluster is running: $nodes node(s), data in $data. Connect with the LeanCloud JS SDK:

  const { Realtime, TextMessage } = require('leancloud-realtime');
  const realtime = new Realtime({
    appId: 'imcluster-dev',
    appKey: 'imcluster-dev-key',
    server: 'http://127.0.0.1:$(client 0)',
    RTMServers: [$rtm],  // any node; the SDK shuffles them
  });

  Server-side REST API master key: imcluster-dev-master (X-LC-Key: imcluster-dev-master,master)
  Admin API (no token in development; also /readyz, /metrics and /admin/v1/cluster on each):
$admins
Press Ctrl-C to stop all nodes.
MSG

# Stay up until Ctrl-C; report a node that exits (the others keep serving:
# kill one to watch the cluster carry on without it).
while :; do
  alive=0
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2>/dev/null; then
      alive=$((alive + 1))
    elif [ -z "${reported[$i]:-}" ]; then
      report "$i"
    fi
  done
  if [ "$alive" -eq 0 ]; then
    echo "all nodes exited" >&2
    exit 1
  fi
  sleep 1 &
  wait $! || true
done
