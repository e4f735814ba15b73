"""logs_relay_bench: what relaying console logs between controller replicas
through PostgreSQL costs (docs/decisions.md §30, docs/benchmarks.md).

Controller A holds the agent (test:///default), controller B has no
gateway, both on one PostgreSQL. One running instance. Measured, through A
(direct) and through B (relayed):
  1. a small log (4 KiB) read whole: the request's latency (the agent
     reads at once: this is the relay's ask, take, one row and its read);
  2. a follow's first byte (what is in the log already);
  3. a followed line: written to the console file, seen by a follow on A
     and a follow on B opened together. The agent polls a followed file
     every 250 ms (agent/conlog.c CONLOG_POLL_MS), which dominates both,
     and the two streams poll on their own timers, so end to end figures
     carry that phase. The relay's own hop is read from the controllers'
     debug logs (both run with -v; the log's clock has 1 ms steps): from
     A's "N bytes from the agent" to B's "row K ... to the client", per
     line;
  4. a 16 MiB tail: throughput.

  CLOUD_CONTROLLER=... CLOUD_AGENT=... python3 bench/logs_relay_bench.py [N]

N samples of each (default 100).
"""
import datetime
import http.client
import os
import re
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import agentlib  # noqa: E402
import harness  # noqa: E402
import logslib  # noqa: E402
from harness import poll, request  # noqa: E402


def get(port, path):
    """Seconds to the last byte of one GET, and the body."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Authorization": "Bearer " + harness.cluster().token})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, (resp.status, body)
    return time.perf_counter() - t0, body


def first_byte(port, path):
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Authorization": "Bearer " + harness.cluster().token})
    resp = conn.getresponse()
    assert resp.status == 200
    resp.read1(1)
    dt = time.perf_counter() - t0
    conn.close()
    return dt


def ms(xs):
    xs = sorted(xs)
    return "median %6.2f ms  p90 %6.2f ms  (n=%d)" % (
        1000 * statistics.median(xs), 1000 * xs[int(0.9 * (len(xs) - 1))], len(xs))


class Arrivals:
    """When each needle shows up on a follow."""

    def __init__(self, follow):
        self.f = follow
        self.seen = {}
        self.cv = threading.Condition()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        pos = 0
        while not self.f.ended.is_set():
            data = self.f.text()
            if len(data) > pos:
                now = time.perf_counter()
                for line in data[pos:].split(b"\n"):
                    if line.startswith(b"mark "):
                        with self.cv:
                            self.seen.setdefault(line, now)
                            self.cv.notify_all()
                pos = data.rfind(b"\n") + 1
            time.sleep(0.0002)

    def wait(self, needle, timeout=10):
        with self.cv:
            self.cv.wait_for(lambda: needle in self.seen, timeout)
            return self.seen[needle]


def log_times(path, pattern):
    """(relay id, ms since the epoch) of each debug line matching pattern."""
    out = []
    with open(path) as f:
        for line in f:
            if '"debug"' not in line:
                continue
            m = re.search(r'"time":"([^"]+)".*"msg":"relay (\d+): ' + pattern, line)
            if m:
                t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
                out.append((int(m.group(2)), t.timestamp()))
    return out


def relay_hops(a_log, b_log, n):
    """Seconds from A receiving each of the last n followed lines from the
    agent to B handing it to its client (one chunk, one row each)."""
    got = log_times(a_log, r"\d+ bytes from the agent\"")
    sent = log_times(b_log, r"row \d+ \(data, \d+ bytes\) to the client")
    rid = sent[-1][0]
    got = [t for r, t in got if r == rid][-n:]
    sent = [t for r, t in sent if r == rid][-n:]
    return [s_ - g for g, s_ in zip(got, sent)]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    c = harness.start(reconcile=True, controller_args=["-v"])
    c.add_image("hello", "latest")
    agent = agentlib.Agent(c, "lb1", cap_vcpus=8, cap_memory=8192).start()
    try:
        agentlib.wait_host_ready("lb1", what="agent")
        b = c.spawn_controller("b", ["-v"], reconcile=False)
        poll(lambda: c.psql("SELECT count(*) FROM agent_links") == "1", 10, what="link")
        st, _, inst = request("POST", "/v1/instances", {
            "image": "hello:latest", "name": "bench",
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        assert st == 201, inst
        poll(lambda: request("GET", "/v1/instances/bench")[2].get("state") == "running", 30,
             what="running")
        iid = inst["id"]
        logslib.write_console(agent, iid, os.urandom(3000).hex()[:4095].encode() + b"\n")
        path = "/v1/instances/%s/logs" % iid
        for name, port in (("direct (A)", c.http_port), ("relayed (B)", b.http_port)):
            get(port, path)
            print("4 KiB log, whole request   %-12s %s" % (name, ms([get(port, path)[0] for _ in range(n)])))
        for name, port in (("direct (A)", c.http_port), ("relayed (B)", b.http_port)):
            print("follow, first byte         %-12s %s" % (
                name, ms([first_byte(port, path + "?follow=true") for _ in range(n)])))
        fa = Arrivals(logslib.Follow(path + "?follow=true", port=c.http_port))
        fb = Arrivals(logslib.Follow(path + "?follow=true", port=b.http_port))
        la, lb, diff = [], [], []
        for i in range(n):
            needle = b"mark %d" % i
            t0 = time.perf_counter()
            logslib.write_console(agent, iid, needle + b"\n")
            ta, tb = fa.wait(needle), fb.wait(needle)
            la.append(ta - t0)
            lb.append(tb - t0)
            diff.append(tb - ta)
            time.sleep(0.013 * (i % 7))  # spread the writes over the poll phase
        print("followed line, write->seen %-12s %s" % ("direct (A)", ms(la)))
        print("followed line, write->seen %-12s %s" % ("relayed (B)", ms(lb)))
        fa.f.close()
        fb.f.close()
        hop = relay_hops(c.ctl_log, b.log, n)
        print("followed line, relay hop   A got it -> B sent it  %s" % ms(hop))
        logslib.write_console(agent, iid, os.urandom(16 << 20), mode="wb")
        q = path + "?tail_bytes=%d" % (16 << 20)
        for name, port in (("direct (A)", c.http_port), ("relayed (B)", b.http_port)):
            ts = []
            for _ in range(3):
                dt, body = get(port, q)
                assert len(body) == 16 << 20
                ts.append(dt)
            print("16 MiB tail                %-12s %.0f MiB/s (best of 3: %.2f s)" % (
                name, 16 / min(ts), min(ts)))
    finally:
        agent.stop()
        harness.stop()


if __name__ == "__main__":
    main()
