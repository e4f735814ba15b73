#!/usr/bin/env bash
# The README's first command: installs what the project needs, builds, and
# runs the all-in-one dev cluster (cloud-controller --dev) in the foreground.
# Extra arguments go to cloud-controller. Ctrl-C stops everything it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" >build.log 2>&1 || {
  tail -50 build.log; echo "dev.sh: the build failed"; exit 1; }
exec ./build/controller/cloud-controller --dev "$@"
