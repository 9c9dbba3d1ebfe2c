# bench/parleyd-start.sh - sourced by the benchmark scripts: starts a fresh
# parleyd tuned for measuring (cheap password hashing, no request rate
# limit) and sets pid, port, data (its data directory) and log (its
# stderr). Expects build and sync to be set; removes everything at exit.
data=$(mktemp -d /tmp/parley-bench-XXXXXX)
log=$data.log
: >"$data.out"
"$build/actors/parleyd" --listen 127.0.0.1:0 --data "$data" --sync "$sync" \
  --pwhash-ops min --pwhash-mem min --request-rate 1000000 \
  --request-burst 1000000 --push-window 5000 --log-level info \
  --map-size 8589934592 >"$data.out" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$data" "$data.out" "$data.err" "$log"' EXIT
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^listening [^ ]*:\([0-9]*\)$/\1/p' "$data.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "parleyd did not start" >&2; cat "$log" >&2; exit 1; }
