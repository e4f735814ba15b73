#!/usr/bin/env python3
"""Run-to-running benchmark (issue 4): the control plane's overhead over raw
libvirt for starting the sample image on qemu:///system (QEMU/TCG).

Starts a dev cluster (cloud-controller --dev: private PostgreSQL, the
reconciler, a local cloud-agent on qemu:///system, the sample image
hello:latest), then N times, interleaved:

  (a) raw: `virsh create` of the exact domain XML the agent produced for
      the sample image (dumped once with `virsh dumpxml --inactive` from an
      agent-made domain; only name, uuid and console path changed), timed
      from the command until libvirt reports the domain Started (lifecycle
      event from `virsh event --loop --timestamp`); also until virsh returns;
  (b) cloud: POST /v1/instances, timed from the request until the instance
      is `running` in the API (the cache-backed GET polled every 1 ms on a
      kept-alive connection), and until libvirt reports its domain Started.

Each run's instance or domain is destroyed before the next. Prints p50/p99
of each, the overhead (b - a) and ratio, and where (b)'s time goes, from
the instance's event times (PostgreSQL commit clock) and the libvirt event:
  API -> created (commit) -> scheduled (reconciler placement committed)
  -> libvirt Started (desired-state push, agent, worker, define + create)
  -> state running (agent status, gateway, commit) -> visible in the API.

Benchmarks print figures and never fail on time. Needs root, libvirtd,
QEMU; run it under `flock /tmp/cloud-libvirt.lock` (it starts guests, and
libvirtd if it is not running). Exit 77 when it cannot run here.

  flock /tmp/cloud-libvirt.lock python3 bench/run_to_running.py BUILD_DIR [N]
"""

import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

URI = "qemu:///system"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def parse_ts(s):
    """ISO time with offset (the API's, or virsh's '2026-01-01 10:00:00.123+0000')."""
    s = s.strip().replace(" ", "T", 1)
    s = re.sub(r"([+-]\d\d)(\d\d)$", r"\1:\2", s)
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    return datetime.datetime.fromisoformat(s).timestamp()


class Events:
    """`virsh event --loop --timestamp`: wall time of each domain's Started."""

    LINE = re.compile(r"^(\S+ \S+): event 'lifecycle' for domain '?([^':]+)'?: (\w+)")

    def __init__(self):
        self.started = {}
        self.defined = {}
        self.cv = threading.Condition()
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "virsh", "-c", URI, "event", "--all", "--loop", "--timestamp"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            m = self.LINE.match(line)
            if m and m.group(3) in ("Started", "Defined"):
                with self.cv:
                    seen = self.started if m.group(3) == "Started" else self.defined
                    seen.setdefault(m.group(2), parse_ts(m.group(1)))
                    self.cv.notify_all()

    def wait_started(self, dom, timeout=60):
        end = time.time() + timeout
        with self.cv:
            while dom not in self.started:
                left = end - time.time()
                if left <= 0:
                    raise RuntimeError("no Started event for %s" % dom)
                self.cv.wait(left)
            return self.started[dom]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


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


def post_until_running(api, name, t0, limit, made=None):
    """POST /v1/instances (the sample image, 1 vCPU, 256 MiB) and poll it
    every millisecond until the API shows it running: (instance, time the
    201 came, time running showed). Its id goes into made first, if given."""
    st, inst = api.req("POST", "/v1/instances", {
        "image": "hello:latest", "name": name,
        "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}})
    t_post = time.time()
    if st != 201:
        raise RuntimeError("POST /v1/instances: %s %s" % (st, inst))
    if made is not None:
        made.append(inst["id"])
    path = "/v1/instances/" + inst["id"]
    while True:
        st, cur = api.req("GET", path)
        if st == 200 and cur["state"] == "running":
            return inst, t_post, time.time()
        if st == 200 and cur["state"] in ("exited", "failed", "lost"):
            raise RuntimeError("instance %s: %s" % (inst["id"], cur))
        if time.time() - t0 > limit:
            raise RuntimeError("instance %s never ran" % inst["id"])
        time.sleep(0.001)


def virsh(*args, check=False):
    r = subprocess.run(["virsh", "-c", URI] + list(args), capture_output=True, text=True,
                       timeout=120)
    if check and r.returncode != 0:
        raise RuntimeError("virsh %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def wait_until(fn, timeout, what, interval=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out waiting for " + what)


def main():
    if len(sys.argv) < 2:
        print("usage: run_to_running.py BUILD_DIR [N]", file=sys.stderr)
        return 2
    build = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    ctl = os.path.join(build, "controller", "cloud-controller")
    agent = os.path.join(build, "agent", "cloud-agent")
    for tool in ("virsh", "libvirtd", "qemu-system-x86_64", "stdbuf"):
        if shutil.which(tool) is None:
            print("run_to_running: %s missing; skipped" % tool)
            return 77
    if os.geteuid() != 0:
        print("run_to_running: needs root (libvirtd, qemu:///system); skipped")
        return 77
    for b in (ctl, agent):
        if not os.access(b, os.X_OK):
            print("run_to_running: build first (%s missing)" % b, file=sys.stderr)
            return 1

    tmp = tempfile.mkdtemp(prefix="cloud-r2r.")
    os.chmod(tmp, 0o755)
    api_port, gw_port = free_port(), free_port()
    out = open(os.path.join(tmp, "controller.out"), "wb")
    err = open(os.path.join(tmp, "controller.err"), "wb")
    proc = subprocess.Popen(
        [ctl, "--dev", "--data-dir", os.path.join(tmp, "dev"),
         "--listen", "127.0.0.1:%d" % api_port, "--agent-listen", "127.0.0.1:%d" % gw_port,
         "--agent-bin", agent, "--sample-script", os.path.join(ROOT, "images", "build-sample.sh")],
        stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    events = None
    made = []
    try:
        def up():
            if proc.poll() is not None:
                raise RuntimeError("the dev cluster died; see %s" % err.name)
            with open(out.name, "rb") as f:
                return b"cloud dev cluster is up" in f.read()
        wait_until(up, 180, "the dev cluster", 0.2)
        with open(out.name, "rb") as f:
            if b"real QEMU guests" not in f.read():
                print("run_to_running: the local agent is not on qemu:///system; skipped")
                return 77
        with open(os.path.join(tmp, "dev", "admin-token")) as f:
            api = Api(api_port, f.read().strip())

        def host_ready():
            st, body = api.req("GET", "/v1/hosts")
            items = body.get("items", body) if isinstance(body, dict) else body
            return st == 200 and any(h.get("state") == "ready" for h in items or [])
        wait_until(host_ready, 60, "the local agent", 0.2)
        events = Events()
        time.sleep(0.5)  # virsh event is connected

        cursor = [0]  # the last event id seen

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

        def cloud_run(i):
            events_since()
            t0 = time.time()
            inst, t_post, t_api = post_until_running(api, "r2r-%d-%d" % (os.getpid(), i),
                                                     t0, 120, made)
            t_lv = events.wait_started("cloud-" + inst["id"])
            t_def = events.defined.get("cloud-" + inst["id"])
            # The instance's events, by commit time.
            marks = {}
            for e in events_since():
                if e.get("object_id") != inst["id"]:
                    continue
                key = e["type"]
                if key == "instance.state":
                    key = "state " + (re.search(r"\b(starting|running)\b", e["message"]) or
                                      re.search(r"(\w+)$", e["message"])).group(1)
                marks.setdefault(key, parse_ts(e["time"]))
            # When the agent got the desired set naming it (its JSON log
            # has milliseconds): the first set received after the placement.
            sched = marks.get("instance.scheduled")
            t_push = None
            if sched is not None:
                with open(os.path.join(tmp, "dev", "agent.log"), "rb") as f:
                    for line in f.read().decode("utf-8", "replace").splitlines():
                        if '"desired set revision' not in line:
                            continue
                        try:
                            t = parse_ts(json.loads(line)["time"])
                        except (ValueError, KeyError):
                            continue
                        if t >= sched - 0.001:
                            t_push = t
                            break
            return {"id": inst["id"], "t0": t0, "post": t_post, "api": t_api, "lv": t_lv,
                    "def": t_def, "push": t_push, "marks": marks}

        def cloud_remove(inst_id):
            api.req("POST", "/v1/instances/%s/kill" % inst_id, {"signal": "KILL"})
            api.req("DELETE", "/v1/instances/" + inst_id)
            wait_until(lambda: api.req("GET", "/v1/instances/" + inst_id)[0] == 404, 60,
                       "instance %s to go" % inst_id)
            wait_until(lambda: virsh("domstate", "cloud-" + inst_id).returncode != 0, 60,
                       "domain cloud-%s to go" % inst_id)

        # Warm-up, and the agent's domain XML for the raw runs.
        w = cloud_run(-1)
        xml = virsh("dumpxml", "--inactive", "cloud-" + w["id"], check=True).stdout
        cloud_remove(w["id"])
        xml = re.sub(r"\s*<uuid>[^<]*</uuid>", "", xml)
        xml = re.sub(r"<source path='[^']*console.log'",
                     "<source path='%s/raw-console.log'" % tmp, xml)

        def raw_run(i):
            name = "r2r-raw-%d-%d" % (os.getpid(), i)
            path = os.path.join(tmp, "raw.xml")
            with open(path, "w") as f:
                f.write(re.sub(r"<name>[^<]*</name>", "<name>%s</name>" % name, xml, count=1))
            t0 = time.time()
            virsh("create", path, check=True)
            t_ret = time.time()
            t_lv = events.wait_started(name)
            virsh("destroy", name)
            return {"t0": t0, "ret": t_ret, "lv": t_lv}

        raw_run(-1)
        time.sleep(0.5)
        # What (a) pays for virsh itself: process start and connection.
        noop = []
        for _ in range(n):
            t0 = time.time()
            virsh("uri", check=True)
            noop.append(time.time() - t0)
        raws, clouds = [], []
        for i in range(n):
            raws.append(raw_run(i))
            time.sleep(0.5)
            c = cloud_run(i)
            clouds.append(c)
            cloud_remove(c["id"])
            made.remove(c["id"])
            time.sleep(0.5)
    finally:
        if events is not None:
            events.stop()
        for inst_id in made:
            virsh("destroy", "cloud-" + inst_id)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
        if os.environ.get("KEEP"):
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    ms = lambda xs: [1000.0 * x for x in xs]  # noqa: E731
    a_lv = ms([r["lv"] - r["t0"] for r in raws])
    a_ret = ms([r["ret"] - r["t0"] for r in raws])
    b_api = ms([c["api"] - c["t0"] for c in clouds])
    b_lv = ms([c["lv"] - c["t0"] for c in clouds])

    def row(label, xs):
        print("%-52s p50 %8.1f ms   p99 %8.1f ms" % (label, pct(xs, 50), pct(xs, 99)))

    print("run to running, sample image on %s, %d runs each (interleaved)" % (URI, n))
    row("(a) virsh create -> libvirt Started", a_lv)
    row("(a) virsh create -> virsh returns", a_ret)
    row("(a0) of which virsh itself (virsh uri: start, connect)", ms(noop))
    row("(b) POST /v1/instances -> libvirt Started", b_lv)
    row("(b) POST /v1/instances -> running in the API", b_api)
    p50a, p50b = pct(a_lv, 50), pct(b_api, 50)
    print("overhead (b running in API - a Started), p50: %.1f ms; ratio b/a %.2f"
          % (p50b - p50a, p50b / p50a if p50a else float("nan")))
    print("overhead (b Started - a Started), p50: %.1f ms" % (pct(b_lv, 50) - p50a))
    # Per run, without QEMU's start-up (which varies by 100s of ms): the time
    # before the agent defines the domain plus the time after it started.
    if all(c["def"] for c in clouds):
        row("(b) control plane alone: POST -> Defined + Started -> API",
            ms([(c["def"] - c["t0"]) + (c["api"] - c["lv"]) for c in clouds]))
        row("(b) libvirt alone: Defined -> Started (define + create)",
            ms([c["lv"] - c["def"] for c in clouds]))
    # Where (b)'s time goes.
    steps = [
        ("POST -> 201 returned", lambda c: c["post"] - c["t0"]),
        ("POST -> instance.created committed", lambda c: c["marks"].get("instance.created", 0) - c["t0"]),
        ("created -> instance.scheduled committed",
         lambda c: c["marks"].get("instance.scheduled", 0) - c["marks"].get("instance.created", 0)),
        ("scheduled -> desired set at the agent (gateway push)",
         lambda c: (c["push"] or 0) - c["marks"].get("instance.scheduled", 0)),
        ("desired set at the agent -> libvirt Defined (agent)",
         lambda c: (c["def"] or 0) - (c["push"] or 0)),
        ("libvirt Defined -> Started (QEMU start)", lambda c: c["lv"] - (c["def"] or 0)),
        ("libvirt Started -> state running committed",
         lambda c: c["marks"].get("state running", 0) - c["lv"]),
        ("running committed -> running in the API",
         lambda c: c["api"] - c["marks"].get("state running", 0)),
    ]
    have = all("instance.created" in c["marks"] and "instance.scheduled" in c["marks"] and
               "state running" in c["marks"] for c in clouds)
    if have:
        print("where (b) goes (event commit times, same host clock):")
        for label, fn in steps:
            row("  " + label, ms([fn(c) for c in clouds]))
    else:
        print("(no per-step breakdown: events missing; marks seen: %s)"
              % sorted(set(k for c in clouds for k in c["marks"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
