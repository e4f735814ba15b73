#!/usr/bin/env bash
# Live config benchmark (issue 6; docs/benchmarks.md "Live config"): a
# throwaway PostgreSQL + cloud-controller (reconciler on) + cloud-agents on
# libvirt's test:///default driver, a service of 1 and one of INSTANCES
# instances, then config changes through the API one at a time:
#   PATCH -> line   the JSON line with the new value reaches the guest end
#                   of the channel (for many instances: reaches all of them)
#   PATCH -> ack    the API shows config_version >= that line's version
#                   (the guest end acks each line at once)
# The guest end is cloud-guestend (bench/guestend.c), driven by
# bench/config_bench.py: it listens on each channel socket the agent uses,
# as QEMU would, and answers as the sample guest does. Beside it, in the same run, etcd's put -> watch event latency
# (a throwaway etcd-server, data dir on /dev/shm) and the ratio.
# GUEST=qemu instead runs real sample guests (images/build-sample.sh) on
# qemu:///system under `flock /tmp/cloud-libvirt.lock` (default 4 instances
# for the many-instance run): the line time is then the guest's
# "CLOUD-CONFIG: ..." echo appearing in its console log.
# It prints figures; it never fails on time.
#
#   [GUEST=qemu] bash bench/config_bench.sh [build-dir] [changes] [instances] [rounds]
#   e.g. bash bench/config_bench.sh build-h6 1000 100 200
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
build=$(cd "$build" && pwd)
ctl=$build/controller/cloud-controller
agent=$build/agent/cloud-agent
guestend=$build/bench/cloud-guestend
for b in "$ctl" "$agent" "$guestend"; do
  [ -x "$b" ] || { echo "config_bench: $b missing (build first)"; exit 1; }
done
command -v etcd >/dev/null || { echo "config_bench: etcd missing (scripts/setup.sh: etcd-server); skipped"; exit 77; }

export CLOUD_CONTROLLER=$ctl CLOUD_AGENT=$agent CLOUD_GUESTEND=$guestend CHANGES=${2:-1000} ROUNDS=${4:-200}
export PYTHONDONTWRITEBYTECODE=1
[ -n "${3:-}" ] && export INSTANCES=$3
if [ "${GUEST:-test}" = qemu ]; then
  # Real sample guests on qemu:///system: libvirtd is shared with other
  # users of this machine (tests/e2e), hence the lock.
  exec flock /tmp/cloud-libvirt.lock python3 "$root/bench/config_bench.py"
fi
exec python3 "$root/bench/config_bench.py"
