#!/usr/bin/env python3
"""Desired-set delivery benchmark (docs/benchmarks.md "Desired sets"): how
long a one-off instance takes from POST to `running` on a host whose
desired set is small (the common case), and how long a host's set of
instances at the 16 KiB env cap (sent in parts, agent.proto
DesiredState.part/parts) takes until every instance runs.

A throwaway PostgreSQL and cloud-controller with the reconciler
(tests/integration/harness.py), one cloud-agent on libvirt's
test:///default driver. Then:

  small  N one-off instances one at a time, each timed from just before its
         POST until GET /v1/instances/{id} (polled every 2 ms on one
         keep-alive connection) says running; the host's set grows from 1
         to N instances (a few hundred bytes each), one frame each time.
  big    BIG instances with 16 KiB of env each, created 8 at a time, timed
         from the first POST until every one is running (the set ends at
         about 16.6 KB per instance: 300 are ~5 MB, in parts of <= 1 MiB;
         a build before parts never sends it, so this run is skipped with
         BIG=0 for such a build).

It prints figures; it never fails on time.

  python3 bench/desired_bench.py BUILD_DIR [N] [BIG]
"""

import concurrent.futures
import http.client
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import agentlib  # noqa: E402
import harness  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    build = os.path.abspath(sys.argv[1])
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    big = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    os.environ["CLOUD_CONTROLLER"] = os.path.join(build, "controller", "cloud-controller")
    agentlib.AGENT_BIN = os.path.join(build, "agent", "cloud-agent")
    c = harness.Cluster(reconcile=True)
    c.start()
    agent = None
    try:
        c.add_image("hello")
        agent = agentlib.Agent(c, "db0", cap_vcpus=n + big + 10,
                               cap_memory=64 * (n + big + 10)).start()
        harness.poll(lambda: c.psql("SELECT state FROM hosts WHERE name = 'db0'") == "ready",
                     60, what="agent ready")
        conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=30)
        hdr = {"Authorization": "Bearer " + c.token, "Content-Type": "application/json"}

        def req(method, path, body=None):
            conn.request(method, path, json.dumps(body) if body is not None else None, hdr)
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"null")

        times = []
        for i in range(n):
            t0 = time.monotonic()
            st, inst = req("POST", "/v1/instances", {
                "image": "hello:latest", "name": "s%d" % i,
                "env": {"I": str(i)},
                "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
            assert st == 201, inst
            while True:
                st, got = req("GET", "/v1/instances/" + inst["id"])
                if got.get("state") == "running":
                    break
                time.sleep(0.002)
            times.append((time.monotonic() - t0) * 1000.0)
        print("desired_bench: %s, 1 cloud-agent on test:///default" % build)
        print("  small sets: %d one-offs one at a time, POST -> running:" % n)
        print("    p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms" %
              (pct(times, 50), pct(times, 99), max(times)))
        if big:
            def create(i):
                env = {"K%d" % k: ("%05d" % i).ljust(4094, "x") for k in range(4)}
                st, _, inst = c.request("POST", "/v1/instances", {
                    "image": "hello:latest", "name": "b%d" % i, "env": env,
                    "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
                assert st == 201, inst
                return inst["id"]
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(8) as ex:
                ids = set(ex.map(create, range(big)))
            t1 = time.monotonic()

            def all_running():
                st, body = req("GET", "/v1/instances?limit=1000")
                return sum(1 for i in body["items"]
                           if i["id"] in ids and i["state"] == "running") == big
            harness.poll(all_running, 300, interval=0.05, what="%d running" % big)
            t2 = time.monotonic()
            print("  big set: %d one-offs with 16 KiB env each: created in %.2f s, "
                  "all running %.2f s after the first POST" % (big, t1 - t0, t2 - t0))
    finally:
        if agent:
            agent.stop()
        c.stop()


if __name__ == "__main__":
    main()
