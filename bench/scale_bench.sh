#!/usr/bin/env bash
# Scale benchmark (issue 13; docs/benchmarks.md "Scale (issue 13)"): a
# throwaway PostgreSQL with fsync on (tests/integration/harness.py), one
# cloud-controller with the reconciler (default lease), HOSTS simulated hosts
# in one cloud-hollow process (bench/hollow.h: each its own certificate,
# mutual-TLS session, heartbeats and status reports through the real
# protocol). Once every host is ready it creates one service of INSTANCES
# replicas (or --services S services sharing them) through the REST API and
# times until every instance is `running` in PostgreSQL, then scales back
# to 0 and times until every instance is gone. Prints one line
#   scale: N instances on H hosts: all running in S s (P placements/s end to end), leader step-downs K
# and where the time went, from the events table (instance.created,
# instance.scheduled, instance.state "running", instance.deleting,
# instance.deleted) and the hosts (cloud-hollow --arrivals: when each
# instance first reached its host in a desired set): p50/p99 per step; when
# the API (the service list's "running") showed them all; the largest
# heartbeat age sampled
# (hosts.last_seen; heartbeats are every 2 s, so what is above that waited
# on the database), host.down events (must be 0), GET one p99 while it
# ran, controller RSS at the end. It prints figures; it fails only when the
# run does not converge (within SCALE_TIMEOUT seconds, default N/10 and
# at least 120) or the setup breaks.
#
#   bash bench/scale_bench.sh BUILD INSTANCES HOSTS [--services S]
#   e.g. bash bench/scale_bench.sh build 10000 500
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 3 ] || { echo "usage: scale_bench.sh BUILD INSTANCES HOSTS [--services S]" >&2; exit 2; }
build=$(cd "$1" && pwd)
ctl=$build/controller/cloud-controller
hollow=$build/bench/cloud-hollow
for b in "$ctl" "$hollow"; do
  [ -x "$b" ] || { echo "scale_bench: $b missing (build first)"; exit 1; }
done
services=1
if [ $# -ge 5 ] && [ "$4" = --services ]; then services=$5; fi

# Every transition persisted for real: fsync on (the harness turns it off).
export CLOUD_ITEST_PG_CONF="fsync = on;synchronous_commit = on;full_page_writes = on;max_connections = 200"
export CLOUD_CONTROLLER=$ctl HOLLOW=$hollow N=$2 H=$3 S=$services
export PYTHONPATH=$root/tests/integration PYTHONDONTWRITEBYTECODE=1
exec python3 - <<'PY'
import os, resource, subprocess, sys, threading, time
import agentlib, harness

n, nhosts, nsvc = int(os.environ["N"]), int(os.environ["H"]), int(os.environ["S"])
nsvc = max(nsvc, (n + 9999) // 10000)      # replicas are at most 10,000
# Per host; instances take 1 vCPU and 64 MiB. Room for twice the even
# share, at least 64 vCPUs (100,000 on 1,000 hosts: 200 each).
VCPUS, MEM = max(64, -(-2 * n // nhosts)), 262144
if n > nhosts * VCPUS:
    sys.exit("scale_bench: %d instances do not fit on %d hosts of %d vCPUs" % (n, nhosts, VCPUS))
HB_S = 2.0                                  # the gateway's heartbeat interval
# How often the run is polled: each poll counts the instances in PostgreSQL
# (68 ms at 100,000), so past 20,000 once a second, not to load what it
# measures.
POLL_S = 0.2 if n <= 20000 else 1.0
timeout = float(os.environ.get("SCALE_TIMEOUT") or max(120.0, n / 10.0))

c = harness.Cluster(reconcile=True)
c.start()
c.add_image("hello")
ctl_pid = c.proc.pid

def q(sql):
    return c.psql(sql)

def count(sql):
    return int(q(sql) or 0)

def rss_mib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0

# Certificates, two at a time (the machine has 2 cores).
certs = os.path.join(c.tmp, "certs")
names = ["hollow%d" % i for i in range(nhosts)]
t = time.monotonic()
agentlib.issue_certs(c, names, certs)
t_certs = time.monotonic() - t

def hollow_setup():
    """In the child: a descriptor per host, and dying with us."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = nhosts + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    harness._die_with_parent()

hollow_log = os.path.join(c.tmp, "hollow.log")
arrivals = os.path.join(c.tmp, "arrivals")    # cloud-hollow --arrivals
hfh = open(hollow_log, "ab")
hp = subprocess.Popen([os.environ["HOLLOW"], "--controller", "127.0.0.1:%d" % c.agent_port,
                       "--ca", os.path.join(certs, names[0], "ca.pem"), "--certs-dir", certs,
                       "--hosts", str(nhosts), "--prefix", "hollow",
                       "--vcpus", str(VCPUS), "--memory-mib", str(MEM),
                       "--arrivals", arrivals],
                      stdin=subprocess.DEVNULL, stdout=hfh, stderr=subprocess.STDOUT,
                      preexec_fn=hollow_setup)

def stop_all():
    if hp.poll() is None:
        harness.terminate(hp, "cloud-hollow")
    c.stop()

def fail(what):
    print("scale_bench: %s" % what)
    print("--- controller log tail:\n" + c.controller_log_tail(30))
    try:
        print("--- hollow log tail:\n" + "".join(open(hollow_log, errors="replace").readlines()[-20:]))
    except OSError:
        pass
    stop_all()
    sys.exit(1)

t = time.monotonic()
while count("SELECT count(*) FROM hosts WHERE name LIKE 'hollow%' AND state = 'ready' "
            "AND session_epoch > 0") < nhosts:
    if hp.poll() is not None:
        fail("cloud-hollow exited with %d" % hp.returncode)
    if time.monotonic() - t > max(60.0, nhosts / 10.0):
        fail("not all %d hosts ready" % nhosts)
    time.sleep(0.2)
t_hosts = time.monotonic() - t
hosts_down0 = count("SELECT count(*) FROM events WHERE type = 'host.down'")

class Getter(threading.Thread):
    """GET one service over and over while the run goes: the API's latency."""
    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.lat, self.halt = path, [], threading.Event()
    def run(self):
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                st, _, _ = c.request("GET", self.path)
                if st == 200:
                    self.lat.append(time.monotonic() - t0)
            except OSError:
                pass
            time.sleep(0.01)

def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, int(p / 100.0 * len(v)))]

def steps(since, pairs):
    """p50/p99 in ms of (from event, to event) per instance, from events
    after the database time `since`."""
    out = []
    for label, a, b in pairs:
        r = q("""
WITH a AS (SELECT object_id, min(time) t FROM events WHERE time >= '%s' AND %s GROUP BY 1),
     b AS (SELECT object_id, min(time) t FROM events WHERE time >= '%s' AND %s GROUP BY 1)
SELECT count(*), round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM b.t - a.t))),
       round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM b.t - a.t)))
  FROM a JOIN b USING (object_id)""" % (since, a, since, b)).split("|")
        out.append("%s p50 %s ms, p99 %s ms (%s)" % (label, r[1] or "-", r[2] or "-", r[0]))
    return out

def event_times(since, cond):
    """{instance id: epoch seconds of its first event matching cond}."""
    out = {}
    for row in q("SELECT object_id, extract(epoch FROM min(time)) FROM events "
                 "WHERE time >= '%s' AND %s GROUP BY 1" % (since, cond)).splitlines():
        oid, t = row.split("|")
        out[oid] = float(t)
    return out

def agent_steps(since, before, after, kind, labels):
    """p50/p99 of the event `before` -> the instance's arrival at its host
    (cloud-hollow --arrivals: R first wanted running, D first wanted gone),
    and of that arrival -> the event `after`."""
    arr = {}
    with open(arrivals) as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[2] == kind:
                arr.setdefault(p[0], int(p[1]) / 1000.0)
    a, b = event_times(since, before), event_times(since, after)
    out = []
    for label, d in ((labels[0], [arr[i] - t for i, t in a.items() if i in arr]),
                     (labels[1], [t - arr[i] for i, t in b.items() if i in arr])):
        out.append("%s p50 %.0f ms, p99 %.0f ms (%d)"
                   % (label, pct(d, 50) * 1000, pct(d, 99) * 1000, len(d)))
    return out

def api_running():
    """Running instances of the benchmark's services as the API shows them
    (the service list's "running", from the controller's read cache)."""
    st, _, body = c.request("GET", "/v1/services?limit=1000", timeout=30)
    if st != 200:
        return -1
    return sum(s.get("running", 0) for s in body["items"] if s["name"].startswith("scale"))

def leader_stepdowns():
    elected = count("SELECT count(*) FROM events WHERE type = 'controller.elected'")
    lost = sum(1 for l in open(c.ctl_log, errors="replace") if "no longer the leader" in l)
    return max(elected - 1, lost)

UP_STEPS = [
    ("  created -> scheduled", "type = 'instance.created'", "type = 'instance.scheduled'"),
    ("  scheduled -> running", "type = 'instance.scheduled'",
     "type = 'instance.state' AND message LIKE '% running on %'"),
    ("  created -> running  ", "type = 'instance.created'",
     "type = 'instance.state' AND message LIKE '% running on %'")]
DOWN_STEPS = [
    ("  deleting -> exited  ", "type = 'instance.deleting'",
     "type = 'instance.state' AND message LIKE '% exited %'"),
    ("  deleting -> deleted ", "type = 'instance.deleting'", "type = 'instance.deleted'")]

def wait(what, sql, target, getter, since, pairs, api=None):
    """Polls until sql counts target (and, with api, until api() does too);
    returns (seconds, largest heartbeat age, seconds until api() did). On
    timeout says how far it got and where the time went, and fails."""
    t0, hb_age, t_db, t_api = time.monotonic(), 0.0, None, None
    while True:
        got = count(sql)
        age = float(q("SELECT coalesce(extract(epoch FROM max(now() - last_seen)), 0) "
                      "FROM hosts WHERE name LIKE 'hollow%'"))
        hb_age = max(hb_age, age)
        if got == target and t_db is None:
            t_db = time.monotonic() - t0
        if api is not None and t_api is None and api() == target:
            t_api = time.monotonic() - t0
        if t_db is not None and (api is None or t_api is not None):
            return t_db, hb_age, t_api
        if time.monotonic() - t0 > timeout:
            getter.halt.set()
            print("scale: %d instances on %d hosts: %s %d (want %d) after %.0f s, "
                  "leader step-downs %d"
                  % (n, nhosts, what, got, target, timeout, leader_stepdowns()))
            for line in steps(since, pairs):
                print(line)
            print("  heartbeats  largest last_seen age %.1f s" % hb_age)
            fail("%s %d (want %d) after %.0f s" % (what, got, target, timeout))
        time.sleep(POLL_S)

svc_names = ["scale%d" % i for i in range(nsvc)]
per = [n // nsvc + (1 if i < n % nsvc else 0) for i in range(nsvc)]
since = q("SELECT clock_timestamp()")
getter = Getter("/v1/services/" + svc_names[0])
getter.start()
t0 = time.monotonic()
for name, k in zip(svc_names, per):
    st, _, body = c.request("POST", "/v1/services", {
        "name": name, "image": "hello:latest", "replicas": k,
        "resources": {"vcpus": 1, "memory_mib": 64}}, timeout=60)
    if st != 201:
        fail("POST /v1/services %s: %s %s" % (name, st, body))
t0_wait = time.monotonic()
mine = "service_id IN (SELECT id FROM services WHERE name LIKE 'scale%')"
t_db, hb_up, t_api = wait("running", "SELECT count(*) FROM instances WHERE state = 'running' AND "
                          + mine, n, getter, since, UP_STEPS, api=api_running)
secs = t_db + (t0_wait - t0)  # the POSTs included
getter.halt.set()
getter.join()
lat_up = getter.lat
down_up = count("SELECT count(*) FROM events WHERE type = 'host.down'") - hosts_down0
k_up = leader_stepdowns()
print("scale: %d instances on %d hosts: all running in %.1f s (%.0f placements/s end to end), "
      "leader step-downs %d" % (n, nhosts, secs, n / secs, k_up))
print("  setup    %d certificates in %.1f s, %d hosts ready in %.1f s, %d service(s)"
      % (nhosts, t_certs, nhosts, t_hosts, nsvc))
svc_t = "time >= '%s'" % since
for line in steps(since, UP_STEPS):
    print(line)
for line in agent_steps(since, "type = 'instance.scheduled'",
                        "type = 'instance.state' AND message LIKE '% running on %'", "R",
                        ("  scheduled -> at the agent", "  at the agent -> running")):
    print(line)
print("  visible in the API: all %d running %.1f s after the POSTs (PostgreSQL: %.1f s)"
      % (n, t_api, t_db))
# The service's creation to its instances' (other object ids): when the
# reconciler created, placed and saw running the first and the last one.
r = q("""
WITH s AS (SELECT min(time) t FROM events WHERE %s AND type = 'service.created'),
     e AS (SELECT type, min(time) t0, max(time) t1 FROM events WHERE %s AND
             (type IN ('instance.created', 'instance.scheduled') OR
              (type = 'instance.state' AND message LIKE '%% running on %%')) GROUP BY 1)
SELECT string_agg(format('%%s %%s-%%s s',
                         CASE e.type WHEN 'instance.state' THEN 'running'
                                     ELSE substr(e.type, 10) END,
                         round(extract(epoch FROM e.t0 - s.t)::numeric, 1),
                         round(extract(epoch FROM e.t1 - s.t)::numeric, 1)), ', ' ORDER BY e.t0)
  FROM e, s""" % (svc_t, svc_t))
print("  after the service's creation, first-last: %s" % (r or "-"))
print("  heartbeats  largest last_seen age %.1f s (interval %.0f s: up to %.1f s waited)"
      % (hb_up, HB_S, max(0.0, hb_up - HB_S)))
print("  hosts down  %d" % down_up)
print("  API      GET one p50 %.1f ms, p99 %.1f ms (%d requests during the run)"
      % (pct(lat_up, 50) * 1000, pct(lat_up, 99) * 1000, len(lat_up)))
print("  memory   controller RSS %.0f MiB, cloud-hollow RSS %.0f MiB"
      % (rss_mib(ctl_pid), rss_mib(hp.pid)))

# Back to 0.
since = q("SELECT clock_timestamp()")
getter = Getter("/v1/services/" + svc_names[0])
getter.start()
t0 = time.monotonic()
for name in svc_names:
    st, _, body = c.request("PATCH", "/v1/services/" + name, {"replicas": 0}, timeout=60)
    if st != 200:
        fail("PATCH /v1/services/%s: %s %s" % (name, st, body))
_, hb_down, _ = wait("instances left", "SELECT count(*) FROM instances WHERE " + mine, 0, getter, since,
                  DOWN_STEPS)
secs = time.monotonic() - t0
getter.halt.set()
getter.join()
down_all = count("SELECT count(*) FROM events WHERE type = 'host.down'") - hosts_down0
print("scale down: %d instances on %d hosts: all gone in %.1f s (%.0f removals/s end to end), "
      "leader step-downs %d" % (n, nhosts, secs, n / secs, leader_stepdowns() - k_up))
for line in steps(since, DOWN_STEPS):
    print(line)
for line in agent_steps(since, "type = 'instance.deleting'", "type = 'instance.deleted'", "D",
                        ("  deleting -> at the agent", "  at the agent -> deleted")):
    print(line)
print("  heartbeats  largest last_seen age %.1f s; hosts down %d"
      % (hb_down, down_all - down_up))
print("  API      GET one p50 %.1f ms, p99 %.1f ms (%d requests during the run)"
      % (pct(getter.lat, 50) * 1000, pct(getter.lat, 99) * 1000, len(getter.lat)))
print("  memory   controller RSS %.0f MiB, cloud-hollow RSS %.0f MiB"
      % (rss_mib(ctl_pid), rss_mib(hp.pid)))
stop_all()
if down_all != 0:
    print("scale_bench: %d hosts were marked down" % down_all)
PY
