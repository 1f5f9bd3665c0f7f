#!/usr/bin/env bash
# Starts NODES imnode processes on 127.0.0.1 (fresh temp data dirs, every port
# chosen by the kernel), waits for /readyz on all of
# them, runs imbench against all their client URLs with the given arguments,
# prints each node's CPU time and resident memory, and stops the nodes.
# imbench gets every node's process id (--pid), so it reports the nodes' CPU
# per message for each step and, for --shape idle, their memory per socket.
# imnode-1 and later join imnode-0's gossip address (read from its addr file).
#
#   hack/bench-local.sh --clients 1000 --conns 1000 --rate 1 --duration 30s
#   NODES=3 REPLICATION=1/1 hack/bench-local.sh --clients 1000 --conns 1000
#
# Environment: NODES (1), SHARDS (256), REPLICATION (R/W, default 3/2; passed
# to every node as --replication-factor/--write-quorum when NODES > 1; a single
# node runs with the defaults, effectively R=1/W=1), LOG_LEVEL (info),
# PROFILE (--cluster-profile: lan, the production timings a deployment runs,
# by default; local for the short failure detection and 5 s anti-entropy rounds
# of tests and `make run`), READY_TIMEOUT (seconds, 120), STOP_TIMEOUT (seconds from SIGTERM to SIGQUIT,
# 60), BIN (directory with imnode and imbench, ./bin), KEEP=1 (keep the data
# dirs and logs; they are also kept when imbench fails or a node hangs),
# SECURE=1 (start the nodes with cluster credentials made by `imnode certs`:
# peer mTLS, gossip encryption, admin token, instead of --insecure; see
# docs/security.md).
set -euo pipefail
cd "$(dirname "$0")/.."

nodes=${NODES:-1}
shards=${SHARDS:-256}
replication=${REPLICATION:-3/2}
log_level=${LOG_LEVEL:-info}
ready_timeout=${READY_TIMEOUT:-120}
stop_timeout=${STOP_TIMEOUT:-60}
bin=${BIN:-bin}
profile=${PROFILE:-lan}

[[ $nodes =~ ^[1-9][0-9]*$ ]] || { echo "NODES must be a positive integer, got '$nodes'" >&2; exit 2; }
[[ $replication =~ ^([1-9][0-9]*)/([1-9][0-9]*)$ ]] ||
  { echo "REPLICATION must be R/W (e.g. 3/2 or 1/1), got '$replication'" >&2; exit 2; }
rf=${BASH_REMATCH[1]}
wq=${BASH_REMATCH[2]}
for b in imnode imbench; do
  [ -x "$bin/$b" ] || { echo "$bin/$b not found: run 'make build'" >&2; exit 1; }
done

# Many sockets (imbench --shape idle) need many descriptors, in the nodes and
# in imbench.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

dir=$(mktemp -d "${TMPDIR:-/tmp}/imbench.XXXXXX")
pids=()
keep=${KEEP:-}
secure=${SECURE:-}
auth=()
# The development app with its client rate limits off: a benchmark logs in
# and connects every client from 127.0.0.1 within seconds, which the
# per-address limits (docs/security.md) would refuse, and each client sends
# faster than the per-client limits (LeanCloud's 60 messages a minute) allow.
apps="$dir/apps.json"
printf '{"apps":[{"appId":"imcluster-dev","appKey":"imcluster-dev-key","masterKey":"imcluster-dev-master","limits":{"loginsPerSecond":-1,"loginsPerMinutePerIP":-1,"sendsPerMinutePerClient":-1,"historyQueriesPerMinutePerClient":-1,"opsPerMinutePerClient":-1}}]}\n' >"$apps"
if [ -n "$secure" ]; then
  certs="$dir/certs"
  "$bin/imnode" certs create-ca --certs-dir "$certs" >/dev/null
  head -c 32 /dev/urandom | base64 >"$certs/gossip.keyring"
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  printf '%s\n' "$token" >"$certs/admin.token"
  auth=(-H "Authorization: Bearer $token")
fi

# alive PID: the process exists and is not a zombie.
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ]
}

# stop sends SIGTERM to every node and waits for them; a node still running
# STOP_TIMEOUT seconds later gets SIGQUIT (the Go runtime writes every
# goroutine's stack to its log and exits). It removes the temp dir unless
# KEEP=1 or something failed.
stop() {
  local status=$?
  trap - INT TERM EXIT
  local i
  if [ -n "${bench_pid:-}" ]; then
    # imbench, and the time(1) wrapper around it when there is one.
    kill -TERM $(pgrep -P "$bench_pid") "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  for i in "${!pids[@]}"; do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
  done
  local start=$SECONDS
  local deadline=$((SECONDS + stop_timeout))
  for i in "${!pids[@]}"; do
    while alive "${pids[$i]}" && [ $SECONDS -lt $deadline ]; do
      sleep 0.2
    done
    if alive "${pids[$i]}"; then
      echo "imnode-$i still running ${stop_timeout}s after SIGTERM: SIGQUIT, goroutine dump in $dir/node-$i.log" >&2
      kill -QUIT "${pids[$i]}" 2>/dev/null || true
      keep=1
    fi
    wait "${pids[$i]}" 2>/dev/null || true
  done
  [ "${#pids[@]}" -eq 0 ] || echo "nodes stopped $((SECONDS - start))s after SIGTERM" >&2
  if [ "$status" -ne 0 ] || [ -n "$keep" ]; then
    echo "node data and logs kept in $dir" >&2
  else
    rm -rf "$dir"
  fi
  exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM

# field FILE NAME prints the string NAME of the flat JSON object in FILE.
field() { sed -E 's/.*"'"$2"'":"([^"]*)".*/\1/' "$1"; }

# fail_node I WHAT reports that node I is gone or stuck, with its log tail.
fail_node() {
  echo "imnode-$1: $2; last lines of $dir/node-$1.log:" >&2
  tail -n 40 "$dir/node-$1.log" | sed 's/^/  | /' >&2
  exit 1
}

# wait_for I WHAT CMD... polls CMD until it succeeds, failing if node I exits.
wait_for() {
  local i=$1 what=$2
  shift 2
  local deadline=$((SECONDS + ready_timeout))
  until "$@" >/dev/null 2>&1; do
    alive "${pids[$i]}" || fail_node "$i" "exited while waiting for $what"
    [ $SECONDS -lt $deadline ] || fail_node "$i" "no $what after ${ready_timeout}s"
    sleep 0.1
  done
}

start_node() {
  local i=$1
  shift
  local args=(--node-id "imnode-$i" --data-dir "$dir/node-$i" --addr-file "$dir/node-$i.addr"
    --client-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --peer-addr 127.0.0.1:0 --advertise-host 127.0.0.1
    --cluster-profile "$profile" --shards "$shards" --log-level "$log_level"
    --apps-file "$apps" --conn-rate-per-ip -1 --max-conns-per-ip -1)
  if [ -n "$secure" ]; then
    "$bin/imnode" certs create-node --certs-dir "$certs" --node-id "imnode-$i" --hosts 127.0.0.1 >/dev/null
    args+=(--peer-ca-file "$certs/ca.crt" --peer-cert-file "$certs/imnode-$i.crt" --peer-key-file "$certs/imnode-$i.key"
      --gossip-keyring-file "$certs/gossip.keyring" --admin-token-file "$certs/admin.token"
      --allowed-hosts 127.0.0.1,localhost)
  else
    args+=(--insecure)
  fi
  if [ "$nodes" -gt 1 ]; then
    args+=(--replication-factor "$rf" --write-quorum "$wq")
  fi
  args+=("$@")
  echo "imnode ${args[*]}" >&2
  echo "=== $(date -u +%FT%TZ) imnode ${args[*]}" >"$dir/node-$i.log"
  "$bin/imnode" "${args[@]}" >>"$dir/node-$i.log" 2>&1 &
  pids[i]=$!
}

# cpu_ticks PID prints the process's user+system CPU time in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# machine_ticks prints the busy and total CPU ticks of the machine (all cores).
machine_ticks() { awk '$1 == "cpu" {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }
# status_kb PID FIELD prints a /proc/PID/status field (VmRSS, VmHWM) in KiB.
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

start_node 0 --bootstrap
wait_for 0 "addr file" test -s "$dir/node-0.addr"
gossip0=$(field "$dir/node-0.addr" gossip)
for ((i = 1; i < nodes; i++)); do
  start_node "$i" --join "$gossip0"
done
urls=()
for ((i = 0; i < nodes; i++)); do
  wait_for "$i" "addr file" test -s "$dir/node-$i.addr"
  admin=$(field "$dir/node-$i.addr" admin)
  wait_for "$i" "/readyz" curl -fsS "http://$admin/readyz"
  urls+=("ws://$(field "$dir/node-$i.addr" client)/")
done
# Every node must see all of them alive and active before the load starts.
sees_all() {
  [ "$(curl -fsS "${auth[@]}" "http://$1/admin/v1/cluster" | grep -o '"state":"active","alive":true' | wc -l)" -eq "$nodes" ]
}
for ((i = 0; i < nodes; i++)); do
  wait_for "$i" "all $nodes members active" sees_all "$(field "$dir/node-$i.addr" admin)"
done
echo "$nodes node(s) ready (shards $shards$([ "$nodes" -gt 1 ] && echo ", R=$rf W=$wq")$([ -n "$secure" ] && echo ", with credentials (peer mTLS, gossip encryption, admin token)" || echo ", --insecure")); logs in $dir" >&2

ticks=$(getconf CLK_TCK)
cpu0=()
for i in "${!pids[@]}"; do
  cpu0[i]=$(cpu_ticks "${pids[$i]}")
done
url_args=()
for u in "${urls[@]}"; do
  url_args+=(--url "$u")
done
for p in "${pids[@]}"; do
  url_args+=(--pid "$p")
done
echo "imbench ${url_args[*]} $*" >&2
timer=()
[ -x /usr/bin/time ] && timer=(/usr/bin/time -f "imbench: cpu %Us user %Ss system, max RSS %M KiB")
bench_status=0
read -r busy0 total0 < <(machine_ticks)
start=$(date +%s.%N)
# imbench runs in the background so that a signal reaches the traps at once
# (bash runs a trap only after the foreground command ends); stop ends it.
"${timer[@]}" "$bin/imbench" "${url_args[@]}" "$@" &
bench_pid=$!
wait "$bench_pid" || bench_status=$?
bench_pid=
read -r busy1 total1 < <(machine_ticks)
wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {print e - s}')
nodes_cpu=0

for i in "${!pids[@]}"; do
  if ! alive "${pids[$i]}"; then
    fail_node "$i" "exited during the benchmark"
  fi
  cpu=$(($(cpu_ticks "${pids[$i]}") - cpu0[i]))
  nodes_cpu=$((nodes_cpu + cpu))
  printf 'imnode-%d: cpu %.1fs during imbench, RSS %d MiB now, peak %d MiB; log: %d warnings, %d errors\n' \
    "$i" "$(awk -v c="$cpu" -v t="$ticks" 'BEGIN {print c / t}')" \
    $(($(status_kb "${pids[$i]}" VmRSS) / 1024)) $(($(status_kb "${pids[$i]}" VmHWM) / 1024)) \
    "$(grep -c 'level=WARN' "$dir/node-$i.log" || true)" "$(grep -c 'level=ERROR' "$dir/node-$i.log" || true)"
  grep -E 'level=(WARN|ERROR)' "$dir/node-$i.log" | head -n 5 | cut -c1-400 | sed "s/^/  imnode-$i | /" || true
done
# Everything else on the machine shares the same cores: report how busy it was.
awk -v b=$((busy1 - busy0)) -v t=$((total1 - total0)) -v n="$nodes_cpu" -v k="$ticks" -v w="$wall" -v c="$(nproc)" \
  'BEGIN {printf "machine: %d cores %.0f%% busy over %.1fs of imbench (setup included); nodes used %.1f cpu-s, everything else (imbench too) %.1f cpu-s\n", c, 100 * b / t, w, n / k, (b - n) / k}'
[ "$bench_status" -eq 0 ] || keep=1
exit "$bench_status"
