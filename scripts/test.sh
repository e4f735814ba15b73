#!/usr/bin/env bash
# The README's second command: installs what the project needs, builds with
# warnings as errors, runs the unit and integration tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, runs the libFuzzer targets
# (scripts/fuzz.sh, CLOUD_FUZZ_SECONDS each, default 60), then the whole suite (unit,
# integration, lint, packaging, e2e, benchmark smoke runs) in the normal build; gcc
# Release and clang Debug/Release are compiled as well. The
# output ends with ctest's summary line.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)

bash scripts/setup.sh || exit 1
bash scripts/checksrc.sh || exit 1

echo "== build: ASan+UBSan (build-asan/)"
cmake -S . -B build-asan -DCLOUD_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null &&
  cmake --build build-asan -j"$jobs" >build-asan.log 2>&1 || {
    tail -50 build-asan.log; echo "test.sh: the sanitizer build failed"; exit 1; }
echo "== build: release (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build build -j"$jobs" >build.log 2>&1 || {
    tail -50 build.log; echo "test.sh: the build failed"; exit 1; }

# The warnings that differ between compilers and optimisation levels (gcc's
# -O3 maybe-uninitialized and format-overflow, clang's -Wformat-nonliteral)
# are errors too: every other build type is compiled (not run) here.
for variant in "gcc Release" "clang Debug" "clang Release"; do
  set -- $variant
  dir=build-$1-$(echo "$2" | tr 'A-Z' 'a-z')
  echo "== build: $1 $2 ($dir/, compile only)"
  cmake -S . -B "$dir" -DCMAKE_C_COMPILER="$1" -DCMAKE_BUILD_TYPE="$2" >/dev/null &&
    cmake --build "$dir" -j"$jobs" >"$dir.log" 2>&1 || {
      tail -50 "$dir.log"; echo "test.sh: the $1 $2 build failed"; exit 1; }
done

echo "== tests under ASan+UBSan: unit and integration"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-asan -L 'unit|integration' --output-on-failure -j1
asan_rc=$?
unset ASAN_OPTIONS UBSAN_OPTIONS

echo "== fuzz: libFuzzer targets (scripts/fuzz.sh), ${CLOUD_FUZZ_SECONDS:-60}s each"
bash scripts/fuzz.sh "${CLOUD_FUZZ_SECONDS:-60}"
fuzz_rc=$?

echo "== all tests: release build"
ctest --test-dir build --output-on-failure -j1
rc=$?
if [ "$asan_rc" -ne 0 ]; then
  echo "(the ASan+UBSan run above failed)"
  rc=$asan_rc
fi
if [ "$fuzz_rc" -ne 0 ]; then
  echo "(the fuzz run above failed)"
  [ "$rc" -ne 0 ] || rc=$fuzz_rc
fi
exit $rc
