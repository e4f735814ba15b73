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

  python3 bench/run_to_running_test.py BUILD_DIR [N]
"""

import datetime
import http.client
import json
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def parse_ts(s):
    s = s.strip().replace(" ", "T", 1)
    s = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", s)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    return datetime.datetime.fromisoformat(s).timestamp()


class Api:
    def __init__(self, port, token):
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def req(self, method, path, body=None):
        hdr = {"Authorization": "Bearer " + self.token}
        data = None
        if body is not None:
            data = json.dumps(body)
            hdr["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=hdr)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt:
                    raise
        return None, None


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


def main():
    if len(sys.argv) < 2:
        print("usage: run_to_running_test.py BUILD_DIR [N]", file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    os.environ.setdefault("CLOUD_CONTROLLER", os.path.join(build, "controller", "cloud-controller"))
    os.environ.setdefault("CLOUD_AGENT", os.path.join(build, "agent", "cloud-agent"))
    import agentlib
    import harness

    c = harness.start(reconcile=True)
    agent = None
    try:
        c.add_image("hello", "latest")
        agent = agentlib.Agent(c, "r2r0", cap_vcpus=64, cap_memory=65536).start()
        api = Api(c.http_port, c.token)
        harness.poll(lambda: any(h.get("state") == "ready"
                                 for h in (api.req("GET", "/v1/hosts")[1] or {}).get("items", [])),
                     30, what="the agent to be ready")
        cursor = [0]

        def events_since():
            items = []
            while True:
                st, body = api.req("GET", "/v1/events?since=%d&limit=1000" % cursor[0])
                if st != 200:
                    raise RuntimeError("GET /v1/events: %s %s" % (st, body))
                items += body.get("items", [])
                if not body.get("next") or body["next"] == cursor[0]:
                    return items
                cursor[0] = body["next"]
                if len(body.get("items", [])) < 1000:
                    return items

        def run(i):
            events_since()
            t0 = time.time()
            st, inst = api.req("POST", "/v1/instances", {
                "image": "hello:latest", "name": "r2r-%d-%d" % (os.getpid(), i),
                "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}})
            t_post = time.time()
            if st != 201:
                raise RuntimeError("POST /v1/instances: %s %s" % (st, inst))
            path = "/v1/instances/" + inst["id"]
            while True:
                st, cur = api.req("GET", path)
                if st == 200 and cur["state"] == "running":
                    t_api = time.time()
                    break
                if st == 200 and cur["state"] in ("exited", "failed", "lost"):
                    raise RuntimeError("instance %s: %s" % (inst["id"], cur))
                if time.time() - t0 > 60:
                    raise RuntimeError("instance %s never ran" % inst["id"])
                time.sleep(0.001)
            marks = {}
            for e in events_since():
                if e.get("object_id") != inst["id"]:
                    continue
                key = e["type"]
                if key == "instance.state":
                    m = re.search(r"\b(starting|running)\b", e["message"])
                    key = "state " + (m.group(1) if m else e["message"])
                marks.setdefault(key, parse_ts(e["time"]))
            sched = marks.get("instance.scheduled")
            t_set = t_rep = None
            for t, msg in agent_log(agent.log):
                if t_set is None and sched is not None and "desired set revision" in msg \
                        and t >= sched - 0.001:
                    t_set = t
                if t_rep is None and ("instance %s: running" % inst["id"]) in msg:
                    t_rep = t
            st, _ = api.req("DELETE", path)
            harness.poll(lambda: api.req("GET", path)[0] == 404, 30, 0.01, "delete")
            return {"t0": t0, "post": t_post, "api": t_api, "set": t_set, "rep": t_rep,
                    "marks": marks}

        for i in range(3):
            run(-1 - i)  # warm-up: prepared statements, connections
        runs = []
        for i in range(n):
            runs.append(run(i))
            time.sleep(0.2)
    finally:
        if agent is not None:
            agent.stop()
        harness.stop()

    def row(label, xs):
        xs = [1000.0 * x for x in xs if x is not None]
        print("%-60s p50 %7.1f ms   p99 %7.1f ms  (%d)" % (label, pct(xs, 50), pct(xs, 99),
                                                          len(xs)))

    def d(a, b):
        return lambda r: (r[b] - r[a]) if r.get(a) is not None and r.get(b) is not None else None

    def m(name):
        return lambda r: r["marks"].get(name)

    for r in runs:
        r["created"] = m("instance.created")(r)
        r["scheduled"] = m("instance.scheduled")(r)
        r["running"] = m("state running")(r)
    try:
        load = open("/proc/loadavg").read().split()[:3]
    except OSError:
        load = ["?"]
    print("run to running on test:///default, %d runs, load average %s" % (n, " ".join(load)))
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
