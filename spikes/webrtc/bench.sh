#!/usr/bin/env bash
# Run one measurement against a fresh server; logs go to results/.
#   [SERVER_ARGS="--udp-buf 0"] ./bench.sh str0m|webrtc bulk|load RUN_NO [extra loadgen args...]
# Needs a release build in $CARGO_TARGET_DIR (default /tmp/target-spike).
set -euo pipefail
lib=$1; kind=$2; run=$3; shift 3
B=${CARGO_TARGET_DIR:-/tmp/target-spike}/release
mkdir -p results
case $lib in
  str0m)  port=8001; "$B/str0m_server" --http 127.0.0.1:$port --udp 127.0.0.1:5000 ${SERVER_ARGS:-} > "results/$lib-$kind-$run.server.log" 2>&1 & ;;
  webrtc) port=8002; "$B/webrtc_server" --http 127.0.0.1:$port ${SERVER_ARGS:-} > "results/$lib-$kind-$run.server.log" 2>&1 & ;;
  *) echo "lib: str0m|webrtc"; exit 2 ;;
esac
spid=$!
trap 'kill $spid 2>/dev/null || true' EXIT
sleep 0.5
case $kind in
  bulk) args=(--peers 1 --chunks 300 --chunk-size 150000 --interval-ms 0) ;;
  load) args=(--peers 200 --duration-s 60 --interval-ms 2000 --chunk-size 150000) ;;
  *) echo "kind: bulk|load"; exit 2 ;;
esac
"$B/loadgen" --server 127.0.0.1:$port "${args[@]}" "$@" 2>&1 | tee "results/$lib-$kind-$run.log"
# Server-side view of its sockets (the /stats line already has the counts).
ss -uanp 2>/dev/null | grep -c "pid=$spid," | sed 's/^/ss udp sockets of server: /' | tee -a "results/$lib-$kind-$run.log" || true
