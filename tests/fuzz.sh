#!/usr/bin/env bash
# Build the libFuzzer targets of proto/ with clang and run each one for a
# bounded time.
#
#   tests/fuzz.sh [SECONDS]     (default 30 per target)
#
# Environment: FUZZ_BUILD_DIR (default build-fuzz under the repository),
# PARLEY_FUZZ_SRC (the CMake source directory, default the repository).
# Exits non-zero if a build fails or a target finds a crash, leak or
# timeout; the reproducer is left in $FUZZ_BUILD_DIR/artifacts.
set -euo pipefail

secs=${1:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
src=${PARLEY_FUZZ_SRC:-$root}
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
targets="codec http ws"

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPARLEY_FUZZ=ON >/dev/null
for t in $targets; do
    cmake --build "$build" -j2 --target "fuzz_$t" >/dev/null
done

mkdir -p "$build/artifacts"
status=0
for t in $targets; do
    bin=$(find "$build" -type f -name "fuzz_$t" -perm -u+x | head -n1)
    corpus="$build/corpus/$t"
    mkdir -p "$corpus"
    echo "fuzz_$t: ${secs}s"
    if ! "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
            -max_len=16384 -print_final_stats=0 \
            -artifact_prefix="$build/artifacts/$t-" \
            "$corpus" "$root/proto/fuzz/seeds/$t" \
            >"$build/fuzz_$t.log" 2>&1; then
        echo "fuzz_$t: FAILED (see $build/fuzz_$t.log)"
        tail -n 40 "$build/fuzz_$t.log"
        status=1
    else
        grep -E '^#[0-9]+.*DONE' "$build/fuzz_$t.log" | tail -n1 || true
    fi
done
exit $status
