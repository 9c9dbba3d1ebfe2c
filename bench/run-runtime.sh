#!/usr/bin/env bash
# run-runtime.sh [RUNS] - Parley's runtime against the BEAM, same machine,
# same run.
#
# Builds bench/rtbench (Release) and bench/erlang/rtbench.beam, runs every
# workload RUNS times (default 5) on both, one fresh process per run, the
# runs of the two implementations interleaved so that a noisy minute hurts
# both alike. Prints a table of medians and one JSON line per workload on
# stdout; progress goes to stderr. Raw results are kept under
# bench/results/<date>/ (not committed).
#
# Environment: BUILD_DIR (default <repo>/build-bench), WORKLOADS (a
# space-separated subset), RUN_TIMEOUT (seconds per run, default 900).
# If rtbench cannot be built (the runtime is not there yet), the BEAM side
# still runs and the Parley column stays empty.
set -euo pipefail

RUNS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
WORKLOADS=${WORKLOADS:-spawn ping-pong ring fan-out skynet supervisor}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$STAMP
RAW=$OUT/raw.jsonl
ERL_DIR=$BUILD_DIR/bench-erl

log() { printf '%s\n' "$*" >&2; }

case $RUNS in
'' | *[!0-9]* | 0) log "usage: $0 [RUNS]  (RUNS a positive integer)"; exit 2 ;;
esac
for tool in cmake erl erlc jq timeout; do
    command -v "$tool" >/dev/null || { log "missing: $tool"; exit 2; }
done
mkdir -p "$OUT" "$ERL_DIR"
: >"$RAW"

# ---- build ---------------------------------------------------------------

have_parley=1
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' \
    "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
if [ "$build_type" != Release ]; then
    log "configuring $BUILD_DIR (Release)"
    cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release \
        >"$OUT/cmake.log" 2>&1 || have_parley=0
fi
if [ $have_parley = 1 ]; then
    log "building rtbench"
    cmake --build "$BUILD_DIR" -j2 --target rtbench >>"$OUT/cmake.log" 2>&1 ||
        have_parley=0
fi
RTBENCH=$BUILD_DIR/bench/rtbench
if [ $have_parley = 0 ] || [ ! -x "$RTBENCH" ]; then
    have_parley=0
    log "WARNING: rtbench did not build (see $OUT/cmake.log);" \
        "running the BEAM side only"
fi
erlc -o "$ERL_DIR" "$ROOT/bench/erlang/rtbench.erl"

# ---- the machine ---------------------------------------------------------

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
cores=$(nproc)
mem_kb=$(sed -n 's/^MemTotal:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/meminfo)
kernel=$(uname -sr)
otp=$(erl -noshell -eval \
    'io:format("~s ~s",[erlang:system_info(otp_release),
                        erlang:system_info(version)]), halt().')
date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)
machine=$(jq -cn --arg cpu "$cpu" --argjson cores "$cores" \
    --argjson mem_kb "$mem_kb" --arg kernel "$kernel" --arg otp "$otp" \
    --arg date "$date_utc" --argjson runs "$RUNS" \
    '{machine: {cpu: $cpu, cores: $cores, mem_kb: $mem_kb,
      kernel: $kernel, otp_erts: $otp, date: $date, runs: $runs}}')
printf '%s\n' "$machine" >"$OUT/machine.json"

# ---- runs ----------------------------------------------------------------

# Runs one workload once; appends its JSON line to RAW, or a failure line.
run_one() {
    local impl=$1 workload=$2 line rc=0
    local err=$OUT/$impl-$workload.stderr
    if [ "$impl" = parley ]; then
        line=$(timeout -k 10 "$RUN_TIMEOUT" "$RTBENCH" "$workload" \
            2>>"$err") || rc=$?
    else
        line=$(timeout -k 10 "$RUN_TIMEOUT" erl -noshell +P 2000000 \
            -pa "$ERL_DIR" -s rtbench main "$workload" 2>>"$err") || rc=$?
    fi
    line=$(printf '%s\n' "$line" | grep '^{' | tail -n 1 || true)
    if [ -n "$line" ] && [ $rc = 0 ]; then
        printf '%s\n' "$line" >>"$RAW"
        log "$(jq -r '"  \(.impl) \(.name): \(.seconds * 1000 | round / 1000)"
            + " s, rate \(.rate | round), peak \(.peak_rss_kb) kB"' \
            <<<"$line")"
    else
        log "  $impl $workload: FAILED (exit $rc; see $err)"
        jq -cn --arg n "$workload" --arg i "$impl" --argjson rc "$rc" \
            '{name: $n, impl: $i, failed: true, exit: $rc}' >>"$RAW"
    fi
}

for run in $(seq 1 "$RUNS"); do
    for workload in $WORKLOADS; do
        log "[run $run/$RUNS] $workload"
        [ $have_parley = 1 ] && run_one parley "$workload"
        run_one beam "$workload"
    done
done

# ---- medians, table, JSON ------------------------------------------------

# Each row: workload, metric, unit, goal kind, goal value. An "x" goal is
# a ratio parley/beam to reach; "max" and "min" bound the Parley figure.
read -r -d '' SUMMARY <<'JQ' || true
def median: map(select(. != null)) | sort |
    if length == 0 then null
    elif length % 2 == 1 then .[length / 2 | floor]
    else (.[length / 2 - 1] + .[length / 2]) / 2 end;
def spec: {
    "spawn": [["rate", "spawns/s", "x", 10],
              ["bytes_per_actor", "B/actor", "max", 256],
              ["reply_rate", "replies/s", null, null]],
    "ping-pong": [["rate", "round trips/s", "x", 3]],
    "ring": [["rate", "hops/s", "x", 3]],
    "fan-out": [["rate", "deliveries/s", "x", 3]],
    "skynet": [["rate", "actors/s", "x", 10]],
    "supervisor": [["rate", "restarts/s", "min", 100000]]
  };
def rows: $workloads[] as $w
  | (spec[$w] + [["peak_rss_kb", "kB", null, null]])[] | [$w] + .;
def goal_text($k; $v): if $k == "x" then ">=\($v)x BEAM"
    elif $k == "max" then "<=\($v)" elif $k == "min" then ">=\($v)"
    else "-" end;
def goal_met($k; $v; $p; $r): if $k == null or $p == null then null
    elif $k == "x" then (if $r == null then null else $r >= $v end)
    elif $k == "max" then $p <= $v else $p >= $v end;
. as $all
| [rows | . as [$w, $m, $u, $k, $v]
   | ($all | map(select(.name == $w and .impl == "parley"
                        and (.failed | not)) | .[$m]) | median) as $p
   | ($all | map(select(.name == $w and .impl == "beam"
                        and (.failed | not)) | .[$m]) | median) as $b
   | {workload: $w, metric: $m, unit: $u, parley: $p, beam: $b,
      ratio: (if $p != null and $b != null and $b != 0
              then $p / $b else null end),
      goal: goal_text($k; $v), goal_met: goal_met($k; $v; $p;
        (if $p != null and $b != null and $b != 0 then $p / $b
         else null end)),
      failures: ($all | map(select(.name == $w and .failed)) | length)}]
JQ

workloads_json=$(jq -cn --arg w "$WORKLOADS" \
    '$w | split(" ") | map(select(. != ""))')
jq -s --argjson workloads "$workloads_json" "$SUMMARY" "$RAW" \
    >"$OUT/summary.json"

fmt='%-11s %-16s %-14s %13s %13s %7s %-11s %s\n'
printf "$fmt" workload metric unit parley beam ratio goal met
jq -r '.[] | [.workload, .metric, .unit,
    (if .parley == null then "-" elif .parley >= 100
     then (.parley | round | tostring) else (.parley * 1000 | round / 1000
     | tostring) end),
    (if .beam == null then "-" elif .beam >= 100
     then (.beam | round | tostring) else (.beam * 1000 | round / 1000
     | tostring) end),
    (if .ratio == null then "-" else (.ratio * 100 | round / 100
     | tostring) end),
    .goal,
    (if .goal_met == null then (if .goal == "-" then "" else "n/a" end)
     elif .goal_met then "yes" else "NO" end)] | @tsv' \
    "$OUT/summary.json" |
    while IFS=$'\t' read -r w m u p b r goal met; do
        printf "$fmt" "$w" "$m" "$u" "$p" "$b" "$r" "$goal" "$met"
    done
echo
jq -c --argjson workloads "$workloads_json" '$workloads[] as $w
    | map(select(.workload == $w)) | {workload: $w,
    parley: (map({(.metric): .parley}) | add),
    beam: (map({(.metric): .beam}) | add),
    ratio: (map({(.metric): .ratio}) | add),
    goal: (map(select(.goal != "-")) | map({(.metric): .goal}) | add),
    goal_met: (map(select(.goal != "-")) | map({(.metric): .goal_met})
               | add),
    failures: .[0].failures}' "$OUT/summary.json"
printf '%s\n' "$machine"
log "raw results: $OUT"
