#!/usr/bin/env bash
# Reconciler benchmark (docs/reconciler.md, "Scale"): for each N, a
# throwaway PostgreSQL (tests/integration/harness.py) is seeded behind the
# controller's back with H registered hosts and N pending one-off instances
# (1 vCPU, 64 MiB; plus N/100 that fit nowhere, 1 TiB), then cloud-controller
# starts as the leader, loads them and places them. Prints:
#   place   time from controller start to all N scheduled
#   idle    controller CPU per second with nothing happening (the 1 s tick)
#   creates controller CPU per API create, K one-offs created one by one
#   passes  the per-pass figures of the debug log (new builds only):
#           incremental and full decisions, their mean and max time
# It prints figures; it never fails on time.
#
#   bash bench/reconcile_bench.sh [build-dir-or-controller] [N ...]
#   e.g. bash bench/reconcile_bench.sh build 10000 100000
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arg=${1:-$root/build}
shift || true
[ $# -gt 0 ] || set -- 10000
if [ -d "$arg" ]; then ctl=$arg/controller/cloud-controller; else ctl=$arg; fi
[ -x "$ctl" ] || { echo "reconcile_bench: $ctl missing (build first)"; exit 1; }
ctl=$(cd "$(dirname "$ctl")" && pwd)/$(basename "$ctl")

for n in "$@"; do
  CLOUD_CONTROLLER=$ctl N=$n PYTHONPATH=$root/tests/integration python3 - <<'PY'
import os, re, time
import harness

n = int(os.environ["N"])
hosts = max(10, n // 100)          # 100 instances per host fit with room
big = max(1, n // 100)             # these fit nowhere: the waiting set
k = 200                            # API creates for the steady-state figure

c = harness.Cluster(reconcile=True, controller_args=["-v", "--lease-seconds", "4"])
c.start()
c.add_image("hello")
c.stop_controller()
c.psql("""
UPDATE cluster_settings SET down_after_seconds = 3600;
INSERT INTO hosts (id, name, address, labels, cap_vcpus, cap_memory_mib, cap_disk_gib,
                   hypervisor, arch, last_seen, session_epoch)
  SELECT 'h' || g, 'bench-hv' || g, '127.0.0.1', '{"zone":"a"}', 128, 262144, 1000,
         'qemu', 'x86_64', now(), 1 FROM generate_series(1, %d) g;
INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib)
  SELECT substr(md5(g::text), 1, 16), 'seed-' || g, 'hello', 1, 64, 0
    FROM generate_series(1, %d) g;
INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib)
  SELECT substr(md5('big' || g), 1, 16), 'big-' || g, 'hello', 1, 1048576, 0
    FROM generate_series(1, %d) g;
ANALYZE;
""" % (hosts, n, big))

def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def count(sql):
    return int(c.psql(sql).strip())

t0 = time.monotonic()
c.start_controller()
pid = c.proc.pid
while count("SELECT count(*) FROM instances WHERE state = 'scheduled'") < n:
    if time.monotonic() - t0 > 900:
        raise SystemExit("reconcile_bench: not all placed within 900 s")
    time.sleep(0.2)
t_place = time.monotonic() - t0
cpu_place = cpu(pid)
# the reasons of the ones that fit nowhere are written too
while count("SELECT count(*) FROM instances WHERE pending_reason IS NULL "
            "AND state = 'pending'") > 0:
    time.sleep(0.2)
t_reason = time.monotonic() - t0
time.sleep(2)

c0, w0 = cpu(pid), time.monotonic()
time.sleep(10)
idle = (cpu(pid) - c0) / (time.monotonic() - w0)

c0, w0 = cpu(pid), time.monotonic()
for j in range(k):
    st, _, _ = c.request("POST", "/v1/instances", {
        "image": "hello:latest", "name": "run-%d" % j, "restart": "never",
        "resources": {"vcpus": 1, "memory_mib": 64}})
    assert st == 201, st
while count("SELECT count(*) FROM instances WHERE name LIKE 'run-%%' "
            "AND state = 'scheduled'") < k:
    time.sleep(0.1)
wall = time.monotonic() - w0
per_create = (cpu(pid) - c0) / k

print("reconcile_bench: N=%d pending (+%d that fit nowhere), %d hosts, %s"
      % (n, big, hosts, os.path.basename(os.path.dirname(os.path.dirname(c.controller_bin)))
         or c.controller_bin))
print("  place    all %d scheduled %.1f s after start (controller CPU %.1f s); "
      "reasons of the %d written at %.1f s" % (n, t_place, cpu_place, big, t_reason))
print("  idle     controller CPU %.1f ms per second" % (idle * 1000))
print("  creates  %d one by one in %.1f s: controller CPU %.2f ms per create"
      % (k, wall, per_create * 1000))
passes = {}
for line in open(c.ctl_log, errors="replace"):
    m = re.search(r"reconcile pass \d+: (\w+) decision over (\d+) instances.*?"
                  r"(\d+) to place.*?(\d+) ops, (\d+) us", line)
    if m:
        passes.setdefault(m.group(1), []).append((int(m.group(5)), int(m.group(2)),
                                                  int(m.group(3)), int(m.group(4))))
for kind, v in sorted(passes.items()):
    us = [x[0] for x in v]
    print("  passes   %-11s %5d: mean %.2f ms, max %.1f ms, mean %.0f instances, "
          "%.0f to place, %.0f ops" % (kind, len(v), sum(us) / len(us) / 1000.0,
                                         max(us) / 1000.0, sum(x[1] for x in v) / len(v),
                                         sum(x[2] for x in v) / len(v),
                                         sum(x[3] for x in v) / len(v)))
if not passes:
    print("  passes   (no per-pass log lines: a build before the incremental reconciler)")
c.stop()
PY
done
