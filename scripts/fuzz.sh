#!/usr/bin/env bash
# scripts/fuzz.sh [seconds]: builds the libFuzzer targets of fuzz/ with clang
# (ASan+UBSan+libFuzzer) in build-fuzz/, replays every committed seed and
# regression input (tests/fuzz/<target>/), then fuzzes each target for
# [seconds] (default 60) over a scratch corpus in build-fuzz/corpus/<target>
# seeded from tests/fuzz/, so the repository is never written to.
#
# Fails if any input crashes, leaks, times out or runs out of memory. A
# crashing input is kept as build-fuzz/crashes/<target>/crash-*: fix the
# bug, then commit the input under tests/fuzz/<target>/regressions/.
set -uo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc 2>/dev/null || echo 2)
bdir=build-fuzz
targets="fuzz_request_json fuzz_frame fuzz_domxml"

case "$secs" in
'' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds]" >&2; exit 2 ;;
esac
if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is not installed (scripts/setup.sh installs it)" >&2
    exit 1
fi

echo "== build: libFuzzer targets with clang (ASan+UBSan) ($bdir/)"
cmake -S . -B "$bdir" -DCLOUD_FUZZ=ON -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
    # shellcheck disable=SC2086 # targets is a word list
    cmake --build "$bdir" -j"$jobs" --target $targets >"$bdir/build.log" 2>&1 || {
    tail -50 "$bdir/build.log"; echo "fuzz.sh: the fuzz build failed"; exit 1; }

# The sanitizers abort at the first report; libFuzzer reports leaks itself.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

rc=0
summary=""
for t in $targets; do
    bin=$bdir/fuzz/$t
    seeds=tests/fuzz/$t
    corpus=$bdir/corpus/$t
    crashes=$bdir/crashes/$t
    log=$bdir/fuzz-$t.log

    echo "== $t: replay $seeds"
    if ! fuzz/replay.sh "$bin" "$seeds"; then
        rc=1
        summary="$summary\n  $t: a seed or regression input fails"
        continue
    fi

    echo "== $t: fuzz for ${secs}s"
    mkdir -p "$corpus" "$crashes"
    # Flattened: regressions join the corpus as ordinary inputs.
    find "$seeds" -type f -exec cp -f {} "$corpus"/ \;
    dict=()
    [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
    "$bin" "${dict[@]}" -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1
    frc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    if [ "$frc" -ne 0 ]; then
        grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5
        tail -40 "$log"
        echo "fuzz.sh: $t failed (exit $frc); inputs in $crashes/" >&2
        summary="$summary\n  $t: FAILED (exit $frc), see $log and $crashes/"
        rc=1
    else
        summary="$summary\n  $t: ${runs:-?} runs, ${eps:-?} exec/s, ${cov:-cov: ?}, corpus $(find "$corpus" -type f | wc -l) inputs"
    fi
done

printf "== fuzz summary (%ss per target):%b\n" "$secs" "$summary"
exit $rc
