"""etcd put -> watch-event latency, the reference for bench/config_bench.sh.

Starts a throwaway single-member etcd (Debian etcd-server, v3 API) on free
loopback ports with its data directory in DIR, opens one streaming watch
(POST /v3/watch on the JSON gRPC gateway, keys and values base64) and times
N puts (POST /v3/kv/put on one keep-alive connection), each from just
before its request is written to the arrival of its watch event, one put
at a time. Used as a module by config_bench.py, or alone:

  python3 bench/config_etcd.py [N] [DIR]
"""

import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from harness import free_port, terminate  # noqa: E402


def b64(s):
    return base64.b64encode(s.encode()).decode()


def percentile(xs, p):
    """Nearest-rank percentile of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class Etcd:
    def __init__(self, data_parent):
        self.dir = tempfile.mkdtemp(prefix="cloud-etcd-", dir=data_parent)
        self.port = free_port()
        self.peer = free_port()
        self.proc = None

    def start(self):
        url = "http://127.0.0.1:%d" % self.port
        purl = "http://127.0.0.1:%d" % self.peer
        self.log = open(os.path.join(self.dir, "etcd.log"), "wb")
        self.proc = subprocess.Popen(
            ["etcd", "--name", "bench", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
             "--initial-cluster", "bench=" + purl, "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("etcd exited with %d: see %s" % (self.proc.returncode,
                                                                    self.log.name))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/health")
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200 and b'"true"' in body:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd not healthy within 30 s")

    def version(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        c.request("GET", "/version")
        v = json.loads(c.getresponse().read())
        c.close()
        return v.get("etcdserver", "?")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc)
        if self.proc is not None:
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Watch(threading.Thread):
    """One /v3/watch stream; records the arrival time of each value."""

    def __init__(self, port, key):
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"create_request": {"key": b64(key)}})
        self.conn.request("POST", "/v3/watch", body, {"Content-Type": "application/json"})
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise RuntimeError("etcd watch: HTTP %d" % self.resp.status)
        self.arrived = {}
        self.cond = threading.Condition()
        self.created = threading.Event()

    def run(self):
        dec = json.JSONDecoder()
        buf = ""
        while True:
            chunk = self.resp.read1(65536)
            if not chunk:
                return
            now = time.monotonic()
            buf += chunk.decode()
            while True:
                buf = buf.lstrip()
                if not buf:
                    break
                try:
                    obj, end = dec.raw_decode(buf)
                except ValueError:
                    break
                buf = buf[end:]
                res = obj.get("result", {})
                if res.get("created"):
                    self.created.set()
                for ev in res.get("events", []):
                    val = base64.b64decode(ev["kv"].get("value", "")).decode()
                    with self.cond:
                        self.arrived[val] = now
                        self.cond.notify_all()

    def wait(self, val, timeout=10):
        with self.cond:
            if not self.cond.wait_for(lambda: val in self.arrived, timeout):
                raise RuntimeError("etcd watch: no event for %r in %d s" % (val, timeout))
            return self.arrived[val]


def measure(n, data_parent=None):
    """(latencies in ms, etcd version, data dir parent) over n puts."""
    if data_parent is None:
        data_parent = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    e = Etcd(data_parent).start()
    try:
        key = "/cloud/bench/web/config"
        w = Watch(e.port, key)
        w.start()
        if not w.created.wait(10):
            raise RuntimeError("etcd watch: not created")
        c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=10)
        lat = []
        for i in range(n + 20):            # the first 20 warm up
            val = "v%d" % i
            body = json.dumps({"key": b64(key), "value": b64(val)})
            t0 = time.monotonic()
            c.request("POST", "/v3/kv/put", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError("etcd put: HTTP %d" % r.status)
            t1 = w.wait(val)
            if i >= 20:
                lat.append((t1 - t0) * 1000.0)
        c.close()
        return lat, e.version(), data_parent
    finally:
        e.stop()


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    lat, ver, where = measure(n, sys.argv[2] if len(sys.argv) > 2 else None)
    print("etcd %s (data dir under %s): put -> watch event over %d puts: "
          "p50 %.2f ms, p99 %.2f ms, max %.2f ms"
          % (ver, where, n, percentile(lat, 50), percentile(lat, 99), max(lat)))
