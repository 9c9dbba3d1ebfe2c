#!/bin/sh
# bench/run-chat.sh - runs chatbench against a fresh parleyd and prints its
# result line with the store's commits (one fsync each in sync=batch) and
# the CPU seconds the server used while chatbench ran (accounts included).
#
#   bench/run-chat.sh BUILD_DIR SYNC MODE ARGS...
#   e.g. bench/run-chat.sh build batch throughput 8 10
#        bench/run-chat.sh build nosync rate 8 10 50000
#        bench/run-chat.sh build batch catchup 100000
set -eu
build=$1 sync=$2
shift 2
. "$(dirname "$0")/parleyd-start.sh"
# server CPU (user + system, in clock ticks) across the client's run
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks)
result=$("$build/bench/chatbench" 127.0.0.1 "$port" "$@")
t1=$(ticks)
cpu=$(awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "%.2f", t / hz }')
kill -TERM $pid
wait $pid || true
stats=$(sed -n 's/.*event=stats \(commits=[0-9]* writes=[0-9]*\).*/\1/p' "$log")
echo "sync=$sync $result $stats server_cpu_s=$cpu"
