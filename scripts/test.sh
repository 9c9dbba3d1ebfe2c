#!/usr/bin/env bash
# The whole test suite, as CI runs it, from a clean clone on Debian 12:
#
#   1. installs the Debian packages that are missing (scripts/install-deps.sh)
#   2. checks the C formatting against .clang-format
#   3. builds with warnings as errors and runs every test under ctest
#      (unit tests with cmocka, integration tests with a real parleyd and
#      Node's ws package)
#   4. builds again with AddressSanitizer + LeakSanitizer + UBSan and runs
#      every test again, parleyd included
#   5. builds again with ThreadSanitizer and runs the runtime's tests
#   6. runs each libFuzzer target for FUZZ_SECONDS (default 30)
#
# Build trees go under build-ci/. Each step says what it does; the script
# stops at the first failure with the step's name.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${PARLEY_CI_BUILD:-$root/build-ci}
jobs=$(nproc)
fuzz_secs=${FUZZ_SECONDS:-30}

step() { printf '\n==> %s\n' "$*"; }
trap 'echo "FAILED at step: ${current:-setup}" >&2' ERR

current="install dependencies"
step "$current"
bash scripts/install-deps.sh

current="format check"
step "$current"
bad=0
while IFS= read -r f; do
    if clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
        continue
    fi
    echo "not formatted: $f (run: clang-format -i $f)"
    bad=1
done < <(git ls-files '*.c' '*.h')
[ "$bad" -eq 0 ]

current="release build and all tests"
step "$current"
cmake -S . -B "$out/release" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DPARLEY_WERROR=ON >/dev/null
cmake --build "$out/release" -j"$jobs"
ctest --test-dir "$out/release" --output-on-failure -j"$jobs"

current="AddressSanitizer + LeakSanitizer build: every test"
step "$current"
cmake -S . -B "$out/asan" -DCMAKE_BUILD_TYPE=Debug -DPARLEY_WERROR=ON \
      -DPARLEY_SANITIZE=address >/dev/null
cmake --build "$out/asan" -j"$jobs"
# The integration tests run parleyd itself under ASan+LSan+UBSan: a memory
# error or a leak at exit fails them. A sanitized server is several times
# slower, so a test that misses a deadline gets one more try; a memory
# error fails both.
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    ctest --test-dir "$out/asan" --output-on-failure -j"$jobs" \
    --repeat until-pass:2

current="ThreadSanitizer build and runtime tests"
step "$current"
cmake -S . -B "$out/tsan" -DCMAKE_BUILD_TYPE=Debug -DPARLEY_WERROR=ON \
      -DPARLEY_SANITIZE=thread >/dev/null
cmake --build "$out/tsan" -j"$jobs"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
    ctest --test-dir "$out/tsan" --output-on-failure -j"$jobs" -L runtime

current="fuzzing, $fuzz_secs s per target"
step "$current"
FUZZ_BUILD_DIR="$out/fuzz" bash tests/fuzz.sh "$fuzz_secs"

step "all steps passed"
