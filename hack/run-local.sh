#!/usr/bin/env bash
# Starts a local imcluster node on 127.0.0.1 with the built-in development app
# and prints the options to connect with. Ctrl-C stops it cleanly.
#
# Environment: IMCLUSTER_DATA (data directory, default ~/.cache/imcluster/run),
# CLIENT_PORT (default 8080), ADMIN_PORT (default 8081).
set -euo pipefail
cd "$(dirname "$0")/.."

data=${IMCLUSTER_DATA:-$HOME/.cache/imcluster/run}
client_port=${CLIENT_PORT:-8080}
admin_port=${ADMIN_PORT:-8081}
mkdir -p "$data/node-0"

bin/imnode --node-id imnode-0 --data-dir "$data/node-0" \
  --client-addr "127.0.0.1:$client_port" --admin-addr "127.0.0.1:$admin_port" \
  --dev-app --addr-file "$data/node-0.addr" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null; exit 0' INT TERM

for _ in $(seq 1 100); do
  [ -s "$data/node-0.addr" ] && break
  kill -0 $pid 2>/dev/null || { echo "imnode exited; see the log above" >&2; exit 1; }
  sleep 0.1
done

cat <<MSG

imcluster is running (data in $data). Connect with the LeanCloud JS SDK:

  const { Realtime, TextMessage } = require('leancloud-realtime');
  const realtime = new Realtime({
    appId: 'imcluster-dev',
    appKey: 'imcluster-dev-key',
    server: 'http://127.0.0.1:$client_port',
    RTMServers: ['ws://127.0.0.1:$client_port'],
  });

  Server-side REST API master key: imcluster-dev-master
  Admin API: http://127.0.0.1:$admin_port/admin/v1/node   Metrics: http://127.0.0.1:$admin_port/metrics

Press Ctrl-C to stop.
MSG
wait $pid
