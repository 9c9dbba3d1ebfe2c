#!/bin/sh
# bench/run-group.sh - runs groupbench against a fresh parleyd, giving it
# the server's pid and data directory (bytes written and data.mdb growth
# per group message).
#
#   bench/run-group.sh BUILD_DIR SYNC MEMBERS MODE ARGS... [options]
#   e.g. bench/run-group.sh build batch 1024 paced 300
#        bench/run-group.sh build batch 1024 rate 20 10 --procs 2
#        bench/run-group.sh build batch 1024 max 10 --ack-every 1
# PERF=1 records the server with `perf record -g` into $PERF_OUT
# (default perf.data) from when every member is online to the end.
set -eu
build=$1 sync=$2
shift 2
. "$(dirname "$0")/parleyd-start.sh"
members=$1
shift
"$build/bench/groupbench" 127.0.0.1 "$port" "$members" "$@" \
  --server-pid $pid --data "$data" 2>"$data.err" &
gb=$!
if [ "${PERF:-}" = 1 ]; then
  # the server alone, from when every member is online
  until grep -q "members online" "$data.err" || ! kill -0 $gb 2>/dev/null; do
    sleep 0.2
  done
  perf record -g -o "${PERF_OUT:-perf.data}" -p $pid 2>/dev/null &
  perf_pid=$!
fi
status=0
wait $gb || status=$?
cat "$data.err" >&2
if [ -n "${perf_pid:-}" ]; then kill -INT $perf_pid; wait $perf_pid || true; fi
kill -TERM $pid
wait $pid || true
stats=$(sed -n 's/.*event=stats \(commits=[0-9]* writes=[0-9]*\).*/\1/p' "$log")
echo "sync=$sync $stats"
# a failed run shows what the server said about it
[ $status = 0 ] || grep -v " info " "$log" | tail -5 >&2
exit $status
