"""blobfetch_bench: how fast a large blob is uploaded and crosses the agent
link, and what it costs the controller. One controller + one agent on
test:///default with --cache-dir (so it fetches), a random blob of --mib
MiB uploaded through the API in 1 MiB PATCHes, one instance of it; reports
the upload (the PATCHes, then the finishing PUT, which since §29 commits
the chunks to PostgreSQL), the agent's fetch time (its log line), the
controller's peak RSS (VmHWM) before and after, and the largest gap
between two heartbeats the gateway recorded meanwhile (hosts.last_seen
polled every 100 ms).

--replica: the agent is connected to a second controller replica (its own
data directory) that never saw the upload, so the pull includes that
replica filling its cache from PostgreSQL (docs/decisions.md §29); a GET
of the blob through it is timed after the pull (from its cache). On code
before §29 the pull fails there: the blob is not in that replica.

  CLOUD_CONTROLLER=... CLOUD_AGENT=... python3 bench/blobfetch_bench.py --mib 256 [--replica]
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import agentlib  # noqa: E402
import harness  # noqa: E402
from harness import poll, request  # noqa: E402


def hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) // 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--replica", action="store_true")
    a = ap.parse_args()
    c = harness.start(reconcile=True)
    cache = os.path.join(c.tmp, "bench-cache")
    serving = c
    port = None
    if a.replica:
        serving = c.spawn_controller("r2", reconcile=False, agent_listen=True)
        port = serving.agent_port
    agent = agentlib.Agent(c, "bb1", cap_vcpus=8, cap_memory=8192, controllers=["127.0.0.1:%d" % port] if port else None,
                           extra=["--cache-dir", cache, "--cache-max-mib", str(a.mib * 4)]).start()
    agentlib.wait_host_ready("bb1", what="agent")
    st, _, body = request("POST", "/v1/blobs/uploads")
    path = "/v1/blobs/uploads/%s" % body["id"]
    h = hashlib.sha256()
    piece = os.urandom(1 << 20)
    t0 = time.monotonic()
    for i in range(a.mib):
        p = piece[:-8] + i.to_bytes(8, "big")
        h.update(p)
        st, _, b = request("PATCH", path, body=p, headers={
            "Content-Type": "application/octet-stream", "Upload-Offset": str(i << 20)})
        assert st == 202, b
    digest = "sha256:" + h.hexdigest()
    t1 = time.monotonic()
    st, _, b = request("PUT", "%s?digest=%s" % (path, digest), timeout=600)
    assert st == 201, b
    t2 = time.monotonic()
    print("blob %d MiB: upload %.2f s (%.0f MiB/s): PATCHes %.2f s, finishing PUT %.2f s"
          % (a.mib, t2 - t0, a.mib / (t2 - t0), t1 - t0, t2 - t1))
    st, _, img = request("POST", "/v1/images", {"name": "big", "tag": "v1", "kind": "kernel",
                                                 "kernel": digest})
    assert st == 201, img
    before = hwm(serving.proc.pid)
    gaps, stop = [], threading.Event()

    def watch():
        last, prev = None, time.monotonic()
        while not stop.is_set():
            v = c.psql("SELECT last_seen FROM hosts WHERE name = 'bb1'")
            now = time.monotonic()
            if v != last:
                if last is not None:
                    gaps.append(now - prev)
                last, prev = v, now
            time.sleep(0.1)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    st, _, inst = request("POST", "/v1/instances", {"image": "big:v1", "name": "big-1",
                          "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
    assert st == 201, inst
    poll(lambda: request("GET", "/v1/instances/" + inst["id"])[2]["state"] == "running", 600,
         interval=0.2, what="instance running")
    stop.set()
    t.join()
    log = open(agent.log).read()
    m = re.search(r"fetched %s into the cache \((\d+) bytes in (\d+) ms\)" % digest, log)
    ms = int(m.group(2))
    print("blob %d MiB: fetched%s in %d ms (%.0f MiB/s); controller VmHWM %d -> %d MiB; "
          "longest heartbeat gap seen %.2f s (interval 2 s)"
          % (a.mib, " through a replica that fills its cache from PostgreSQL" if a.replica else "",
             ms, a.mib * 1000.0 / max(ms, 1), before, hwm(serving.proc.pid), max(gaps or [0])))
    if a.replica:
        # The fill alone, from the replica's own log lines (their times).
        marks = {}
        for line in open(serving.log, encoding="utf-8", errors="replace"):
            if digest in line and ("filling it from PostgreSQL" in line
                                   or "cached from PostgreSQL" in line):
                key = "start" if "filling" in line else "end"
                marks.setdefault(key, json.loads(line)["time"])
        if len(marks) == 2:
            ts = {k: datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
                  for k, v in marks.items()}
            fill = (ts["end"] - ts["start"]).total_seconds()
            print("blob %d MiB: of which the replica's cache fill from PostgreSQL %.2f s "
                  "(%.0f MiB/s)" % (a.mib, fill, a.mib / max(fill, 0.001)))
        t0 = time.monotonic()
        st, _, body = request("GET", "/v1/blobs/" + digest, port=serving.http_port, timeout=600,
                              binary=True)
        dt = time.monotonic() - t0
        assert st == 200 and hashlib.sha256(body).hexdigest() == digest[7:], st
        print("blob %d MiB: GET through the replica (its cache) %.2f s (%.0f MiB/s)"
              % (a.mib, dt, a.mib / dt))
    agent.stop()
    harness.stop()


if __name__ == "__main__":
    main()
