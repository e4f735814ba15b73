#!/usr/bin/env python3
"""Run-to-running on libvirt's test driver (issue 4): the control plane's own
time, without QEMU.

Starts PostgreSQL, cloud-controller (with the reconciler) and one cloud-agent
on test:///default through the integration harness (tests/integration), then
N times, one at a time: POST /v1/instances (1 vCPU, 256 MiB), polls the
cache-backed GET /v1/instances/{id} every 1 ms on a kept-alive connection
until it says `running`, and deletes the instance. On the test driver
libvirt's define + start take about 1 ms, so the total is almost all control
plane. Where it goes comes from the instance's event times (PostgreSQL
now(), the start of each committing transaction) and the agent's JSON log
(milliseconds: receipt of each desired set, the status report), all on the
same host clock.

Benchmarks print figures and never fail on time. Needs PostgreSQL (as the
integration tests do) and a build.

  python3 bench/run_to_running_test.py BUILD_DIR [N] [--compare OTHER_BUILD_DIR]

With --compare, a second cluster runs OTHER_BUILD_DIR's controller (same
agent binary) and the runs alternate between the two, one at a time, so a
before/after comparison sees the same machine load.
"""

import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("CLOUD_CONTROLLER", "")  # harness reads it at import

# The percentile, the API's time stamps, the API client and the POST ->
# running loop of the QEMU run.
from run_to_running import Api, parse_ts, pct, post_until_running  # noqa: E402


def agent_log(path):
    """(time, message) of each JSON line of the agent's log."""
    out = []
    with open(path, "rb") as f:
        for line in f.read().decode("utf-8", "replace").splitlines():
            try:
                j = json.loads(line)
                out.append((parse_ts(j["time"]), j.get("msg") or j.get("message") or line))
            except (ValueError, KeyError, TypeError):
                continue
    return out


class Rig:
    """PostgreSQL, one controller of `build` (with the reconciler) and one
    agent on test:///default."""

    def __init__(self, build, agent_bin):
        import agentlib
        import harness
        self.harness = harness
        self.c = harness.Cluster(controller=os.path.join(build, "controller", "cloud-controller"),
                                 reconcile=True).start()
        self.agent = None
        self.c.add_image("hello", "latest")
        agentlib.AGENT_BIN = agent_bin
        self.agent = agentlib.Agent(self.c, "r2r0", cap_vcpus=64, cap_memory=65536).start()
        self.api = Api(self.c.http_port, self.c.token)
        harness.poll(lambda: any(h.get("state") == "ready"
                                 for h in (self.api.req("GET", "/v1/hosts")[1] or {}).get("items", [])),
                     30, what="the agent to be ready")
        self.cursor = 0

    def stop(self):
        if self.agent is not None:
            self.agent.stop()
        self.c.stop()

    def events_since(self):
        items = []
        while True:
            st, body = self.api.req("GET", "/v1/events?since=%d&limit=1000" % self.cursor)
            if st != 200:
                raise RuntimeError("GET /v1/events: %s %s" % (st, body))
            items += body.get("items", [])
            if not body.get("next") or body["next"] == self.cursor:
                return items
            self.cursor = body["next"]
            if len(body.get("items", [])) < 1000:
                return items

    def run(self, i):
        api = self.api
        self.events_since()
        t0 = time.time()
        inst, t_post, t_api = post_until_running(api, "r2r-%d-%d" % (os.getpid(), i), t0, 60)
        marks = {}
        for e in self.events_since():
            if e.get("object_id") != inst["id"]:
                continue
            key = e["type"]
            if key == "instance.state":
                m = re.search(r"\b(starting|running)\b", e["message"])
                key = "state " + (m.group(1) if m else e["message"])
            marks.setdefault(key, parse_ts(e["time"]))
        sched = marks.get("instance.scheduled")
        t_set = t_rep = None
        for t, msg in agent_log(self.agent.log):
            if t_set is None and sched is not None and "desired set revision" in msg \
                    and t >= sched - 0.001:
                t_set = t
            if t_rep is None and ("instance %s: running" % inst["id"]) in msg:
                t_rep = t
        path = "/v1/instances/" + inst["id"]
        api.req("DELETE", path)
        self.harness.poll(lambda: api.req("GET", path)[0] == 404, 30, 0.01, "delete")
        return {"t0": t0, "post": t_post, "api": t_api, "set": t_set, "rep": t_rep,
                "marks": marks}


def report(title, runs):
    def row(label, xs):
        xs = [1000.0 * x for x in xs if x is not None]
        print("%-60s p50 %7.1f ms   p99 %7.1f ms  (%d)" % (label, pct(xs, 50), pct(xs, 99),
                                                          len(xs)))

    def d(a, b):
        return lambda r: (r[b] - r[a]) if r.get(a) is not None and r.get(b) is not None else None

    for r in runs:
        r["created"] = r["marks"].get("instance.created")
        r["scheduled"] = r["marks"].get("instance.scheduled")
        r["running"] = r["marks"].get("state running")
    print(title)
    row("POST /v1/instances -> running in the API", [d("t0", "api")(r) for r in runs])
    row("  POST -> 201 returned", [d("t0", "post")(r) for r in runs])
    row("  POST -> instance.created committed", [d("t0", "created")(r) for r in runs])
    row("  created -> instance.scheduled committed (reconciler)",
        [d("created", "scheduled")(r) for r in runs])
    row("  scheduled -> desired set at the agent (gateway push)",
        [d("scheduled", "set")(r) for r in runs])
    row("  desired set -> agent reports running (define + start)",
        [d("set", "rep")(r) for r in runs])
    row("  agent reports running -> state running committed",
        [d("rep", "running")(r) for r in runs])
    row("  running committed -> running in the API (cache)",
        [d("running", "api")(r) for r in runs])


def main():
    args = sys.argv[1:]
    other = None
    if "--compare" in args:
        k = args.index("--compare")
        if k + 1 >= len(args):
            print("run_to_running_test.py: --compare needs a build dir", file=sys.stderr)
            return 2
        other = os.path.abspath(args[k + 1])
        del args[k:k + 2]
    if not args:
        print("usage: run_to_running_test.py BUILD_DIR [N] [--compare OTHER_BUILD_DIR]",
              file=sys.stderr)
        return 2
    build = os.path.abspath(args[0])
    n = int(args[1]) if len(args) > 1 else 50
    agent_bin = os.environ.get("CLOUD_AGENT") or os.path.join(build, "agent", "cloud-agent")
    os.environ["CLOUD_AGENT"] = agent_bin
    builds = [build] + ([other] if other else [])
    for b in builds:
        if not os.access(os.path.join(b, "controller", "cloud-controller"), os.X_OK):
            print("run_to_running_test.py: no controller in %s" % b, file=sys.stderr)
            return 1
    rigs = []
    runs = [[] for _ in builds]
    try:
        for b in builds:
            rigs.append(Rig(b, agent_bin))
        for rig in rigs:
            for i in range(3):
                rig.run(-1 - i)  # warm-up: prepared statements, connections
        # With two builds, runs alternate between them (one at a time), so
        # both see the same load.
        for i in range(n):
            for k, rig in enumerate(rigs):
                runs[k].append(rig.run(i))
                time.sleep(0.2)
    finally:
        for rig in rigs:
            rig.stop()
    try:
        load = " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        load = "?"
    for k, b in enumerate(builds):
        report("run to running on test:///default, %s, %d runs, load average %s at the end"
               % (b, n, load), runs[k])
    return 0


if __name__ == "__main__":
    sys.exit(main())
