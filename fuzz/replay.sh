#!/bin/sh
# replay.sh FUZZER DIR: runs every input under DIR (the seeds and
# regressions/) once through the libFuzzer binary FUZZER. Given files rather
# than directories, libFuzzer executes each one and stops at the first crash.
set -eu
bin=$1
dir=$2
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=$(find "$dir" -type f | wc -l)
if [ "$n" -eq 0 ]; then
    echo "replay.sh: no inputs under $dir" >&2
    exit 1
fi
if find "$dir" -type f -print0 | sort -z | xargs -0 "$bin" >"$log" 2>&1; then
    echo "replay.sh: $n inputs under $dir ran clean through $(basename "$bin")"
    exit 0
fi
cat "$log"
echo "replay.sh: an input under $dir fails $(basename "$bin") (see above)" >&2
exit 1
