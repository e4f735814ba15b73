"""Live config latency (issue 6), driven by bench/config_bench.sh.

A throwaway PostgreSQL and the real cloud-controller (with the reconciler)
from tests/integration/harness.py, real cloud-agent processes on libvirt's
test:///default driver (tests/integration/agentlib.py), a service `web`,
then config changes through the API (PATCH and PUT of
/v1/services/web/config in turn, a new value of one key each time, one
change at a time) and two times per change,
both from just before the PATCH request is written:

  line  the guest end of the channel reads the JSON line carrying the new
        value (`{"version":N,"config":{...}}`)
  ack   the API shows the instance's config_version >= N (the guest end
        answered {"ack":N} at once)

The guest end: the test driver runs no guest and QEMU is not there to bind
the channel socket, so cloud-guestend (bench/guestend.c, a child of this
process) plays QEMU + guest: it listens on each instance's channel socket
(the path the agent put in the domain XML, <source mode='bind' path=...>),
accepts the agent's connection, records the arrival time of every line
and answers {"ack":N} (and {"ready":true} once), as
tests/integration/guestpeer.py does for the tests, in C: the simulated
guests share this machine's cores with what is measured.
That is the guest half of the protocol; the agent, the controller and
PostgreSQL are the real ones.

Ack time: the agent reports the ack in its InstanceStatus, the controller
stores it (group commit) with an `instance.guest` event "... config
version N acknowledged", which its read cache applies and GET
/v1/events?watch=true streams; this bench follows that stream (type
filter) and takes the arrival of the event, so nothing polls. ACK=poll
polls the API instead (GET /v1/instances/{id} every POLL_MS on one
keep-alive connection, or the service's instance list for many
instances; it adds up to POLL_MS and, for the list, load of its own).

Then the same for etcd: put -> watch event (bench/config_etcd.py).
It prints figures; it never fails on time.

Environment: CLOUD_CONTROLLER, CLOUD_AGENT, CLOUD_GUESTEND (binaries); CHANGES (default
1000), INSTANCES (default 100), ROUNDS (changes for the many-instance
run, default 200), AGENTS (hosts for it, default 4), ACK (events|poll),
POLL_MS (default 2), GUEST (test|qemu; qemu: real sample guests, see
config_bench.sh).
"""

import http.client
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import agentlib  # noqa: E402
import config_etcd  # noqa: E402
import guestpeer  # noqa: E402
import harness  # noqa: E402
from config_etcd import percentile  # noqa: E402

KEY = "BENCH_SEQ"


channel_path = guestpeer.channel_path


def wait_value(end, insts, val, timeout=30):
    """{inst: (time, version)} once every inst has read the line with val.
    The guest end counts the instances that read each value and wakes this
    thread only when the count is complete: waking it on every line (and
    checking 100 instances each time) cost the guest end's thread the GIL
    and delayed its reads of the next lines."""
    with end.cond:
        end.count_for = (val, len(insts))
        ok = end.cond.wait_for(lambda: all((i, val) in end.seen for i in insts), timeout)
        if not ok:
            missing = [i for i in insts if (i, val) not in end.seen]
            raise RuntimeError("no line with %s=%s within %d s on %d of %d channels "
                               "(%r...); errors %r" % (KEY, val, timeout, len(missing),
                                                      len(insts), missing[:3], end.errors[:3]))
        return {i: end.seen[(i, val)] for i in insts}


class GuestEnd(threading.Thread):
    """Plays QEMU + the sample guest on many channel sockets at once through
    cloud-guestend (bench/guestend.c: {"ready":true} on connect, an ack per
    line, in one epoll loop in C; a Python guest end took more CPU per line
    than the agent writing it, on the cores the measured system shares),
    noting when each instance first read each value of KEY."""

    def __init__(self, binary):
        super().__init__(daemon=True)
        self.proc = subprocess.Popen([binary, KEY], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0)
        self.cond = threading.Condition()
        self.seen = {}          # (inst, value of KEY) -> (monotonic time, version)
        self.count = {}         # value of KEY -> instances that read it
        self.count_for = None   # (value, instances) wait_value waits for
        self.connects = {}
        self.errors = []
        self.stopping = False

    def listen(self, inst, path):
        self.proc.stdin.write(("listen %s %s\n" % (inst, path)).encode())

    def run(self):
        for raw in self.proc.stdout:
            f = raw.decode().split()
            with self.cond:
                if f[0] == "L" and len(f) == 5:
                    inst, ver, t, val = f[1], int(f[2]), int(f[3]) / 1e9, f[4]
                    if val == "-" or (inst, val) in self.seen:
                        continue
                    self.seen[(inst, val)] = (t, ver)
                    self.count[val] = self.count.get(val, 0) + 1
                    if self.count_for == (val, self.count[val]):
                        self.cond.notify_all()
                elif f[0] == "C" and len(f) == 2:
                    self.connects[f[1]] = self.connects.get(f[1], 0) + 1
                else:
                    self.errors.append(raw.decode().strip())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)

    wait_value = wait_value


class ConsoleEnd(threading.Thread):
    """The real sample guest's end: tails each instance's console log (the
    agent's <state>/run/<id>/console.log, written by QEMU) every millisecond
    and records when "CLOUD-CONFIG: <line>" with a new value appears."""

    def __init__(self):
        super().__init__(daemon=True)
        self.cond = threading.Condition()
        self.files = {}         # inst -> [path, offset, partial line]
        self.seen = {}
        self.errors = []
        self.connects = {}
        self.stopping = False

    def listen(self, inst, path):
        with self.cond:
            self.files[inst] = [path, 0, b""]

    def run(self):
        while not self.stopping:
            with self.cond:
                files = list(self.files.items())
            for inst, st in files:
                try:
                    with open(st[0], "rb") as f:
                        f.seek(st[1])
                        chunk = f.read()
                except OSError:
                    continue
                if not chunk:
                    continue
                now = time.monotonic()
                st[1] += len(chunk)
                st[2] += chunk
                *lines, st[2] = st[2].split(b"\n")
                for raw in lines:
                    line = raw.decode("utf-8", "replace").strip()
                    if "CLOUD-CHANNEL: /" in line:
                        self.connects[inst] = 1
                    if not line.startswith("CLOUD-CONFIG: "):
                        continue
                    try:
                        msg = json.loads(line[len("CLOUD-CONFIG: "):])
                        ver, val = int(msg["version"]), msg.get("config", {}).get(KEY)
                    except (ValueError, KeyError, TypeError, AttributeError):
                        continue
                    with self.cond:
                        if val is not None and (inst, val) not in self.seen:
                            self.seen[(inst, val)] = (now, ver)
                        self.cond.notify_all()
            time.sleep(0.001)

    wait_value = wait_value


class AckWatch(threading.Thread):
    """Follows GET /v1/events?watch=true&type=instance.guest (SSE) and
    records when the API reports "config version N acknowledged" for an
    instance: the same event the controller's read cache applies."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", cluster.http_port, timeout=30)
        self.conn.request("GET", "/v1/events?watch=true&type=instance.guest",
                          headers={"Authorization": "Bearer " + cluster.token})
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            raise RuntimeError("events watch: HTTP %d" % self.resp.status)
        self.conn.sock.settimeout(None)
        self.cond = threading.Condition()
        self.acks = {}          # inst -> [(time, version)] in arrival order
        self.want = None        # inst -> version wait() waits for
        self.missing = 0        # instances of want not acked yet

    def run(self):
        import re
        # A regular expression on the raw line, not json.loads: 100 events a
        # change, on the cores the measured system shares.
        pat = re.compile(rb'"object_id" ?: ?"([0-9a-f]+)".*config version (\d+) acknowledged')
        while True:
            line = self.resp.readline()
            if not line:
                return
            if not line.startswith(b"data:"):
                continue
            now = time.monotonic()
            m = pat.search(line)
            if m:
                inst, ver = m.group(1).decode(), int(m.group(2))
                with self.cond:
                    had = self.acks.setdefault(inst, [])
                    # Wake the waiter only for the last missing ack. An
                    # instance's acked versions only grow: the newest is
                    # the highest (no scan: lists grow with every change).
                    if (self.want is not None and inst in self.want and
                            ver >= self.want[inst] and
                            (not had or had[-1][1] < self.want[inst])):
                        self.missing -= 1
                        if self.missing == 0:
                            self.cond.notify_all()
                    had.append((now, ver))

    def wait(self, want, timeout=30):
        """The time by which every inst in want had acked at least want[inst]."""
        def first(i):
            # The earliest of the newest run of acks >= want[i].
            t = None
            for tt, v in reversed(self.acks.get(i, ())):
                if v < want[i]:
                    break
                t = tt
            return t
        with self.cond:
            self.want = want
            self.missing = sum(1 for i in want if first(i) is None)
            if not self.cond.wait_for(lambda: all(first(i) is not None for i in want), timeout):
                raise RuntimeError("no ack event within %d s for %r" % (
                    timeout, [i for i in want if first(i) is None][:3]))
            return max(first(i) for i in want)


class Api:
    """Keep-alive HTTP client for the controller."""

    def __init__(self, cluster):
        self.c = cluster
        self.conn = None

    def req(self, method, path, body=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.c.http_port, timeout=30)
            hdrs = {"Authorization": "Bearer " + self.c.token}
            data = None
            if body is not None:
                data = json.dumps(body)
                hdrs["Content-Type"] = "application/json"
            try:
                self.conn.request(method, path, data, hdrs)
                r = self.conn.getresponse()
                raw = r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
                continue
            if r.getheader("Connection", "").lower() == "close":
                self.conn.close()
                self.conn = None
            return r.status, (json.loads(raw) if raw.strip() else None)


def stats(xs):
    return "p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms" % (percentile(xs, 50), percentile(xs, 99),
                                                        max(xs))


def sample_image(c):
    """Starts libvirtd if needed and registers the sample image
    (images/build-sample.sh) as hello:latest with tests/e2e/e2elib.py;
    returns the agent's --images directory and e2elib (virsh, STARTED)."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
    import e2elib
    e2elib.ensure_libvirtd()
    return e2elib.add_sample_image(c, "hello:latest"), e2elib


def main():
    qemu = os.environ.get("GUEST", "test") == "qemu"
    changes = int(os.environ.get("CHANGES", "1000"))
    ninst = int(os.environ.get("INSTANCES", "4" if qemu else "100"))
    rounds = int(os.environ.get("ROUNDS", "200"))
    nagents = 1 if qemu else int(os.environ.get("AGENTS", "4"))
    poll_s = float(os.environ.get("POLL_MS", "2")) / 1000.0
    ack_mode = os.environ.get("ACK", "events")
    if ack_mode not in ("events", "poll"):
        raise SystemExit("config_bench: ACK must be events or poll")
    ack_how = ("the instance.guest event (\"config version N acknowledged\") arriving on "
               "GET /v1/events?watch=true" if ack_mode == "events" else
               "polling the API every %.0f ms" % (poll_s * 1000))

    c = harness.Cluster(reconcile=True)
    c.start()
    agents = {}
    guest = ConsoleEnd() if qemu else GuestEnd(os.environ["CLOUD_GUESTEND"])
    guest.start()
    e2e = None
    try:
        if qemu:
            images, e2e = sample_image(c)
            agents["cb0"] = agentlib.Agent(c, "cb0", uri="qemu:///system", hypervisor=None,
                                           images=images, cap_vcpus=4 * (ninst + 1)).start()
        else:
            c.add_image("hello")
            # The agent's hook for a guest end on the test driver (agent/worker.c).
            os.environ["CLOUD_AGENT_TEST_CHANNELS"] = "1"
            for k in range(nagents):
                name = "cb%d" % k
                agents[name] = agentlib.Agent(c, name, cap_vcpus=4 * ninst,
                                              cap_memory=128 * ninst).start()
        harness.poll(lambda: c.psql("SELECT count(*) FROM hosts WHERE state = 'ready'")
                     == str(nagents), 60, what="%d agents ready" % nagents)
        api = Api(c)
        acks = AckWatch(c) if ack_mode == "events" else None
        if acks is not None:
            acks.start()

        def setup(svc, replicas):
            st, body = api.req("POST", "/v1/services", {
                "name": svc, "image": "hello:latest", "replicas": replicas,
                "resources": {"vcpus": 1, "memory_mib": 256 if qemu else 64, "disk_gib": 0}})
            assert st == 201, (st, body)

            def running():
                st, body = api.req("GET", "/v1/instances?service=%s&limit=1000" % svc)
                items = [i for i in body["items"] if i["state"] == "running"]
                return items if st == 200 and len(items) == replicas else None
            items = harness.poll(running, 300, interval=0.2,
                                 what="%d instances of %s running" % (replicas, svc))
            ids = []
            for inst in items:
                a = agents[inst["host"]]
                if qemu:
                    path = os.path.join(a.dir, "state", "run", inst["id"], "console.log")
                else:
                    path = channel_path(a, inst["id"])
                    harness.poll(lambda p=path: os.path.isdir(os.path.dirname(p)), 30,
                                 what="the run dir of %s" % inst["id"])
                guest.listen(inst["id"], path)
                ids.append(inst["id"])
            harness.poll(lambda: all(guest.connects.get(i) for i in ids), 300,
                         what="every guest channel connected")
            return ids

        def run(svc, ids, n, warm):
            line_ms, ack_ms = [], []
            parts = {"answer": [], "first": []}
            for k in range(warm + n):
                val = "%s-%d" % (svc, k)
                t0 = time.monotonic()
                # PATCH (merge) and PUT (replace) in turn: one key either way.
                method = "PATCH" if k % 2 == 0 else "PUT"
                st, body = api.req(method, "/v1/services/%s/config" % svc,
                                   {"config": {KEY: val}})
                if st != 200:
                    raise RuntimeError("%s config: %d %r" % (method, st, body))
                t_answer = time.monotonic()
                got = guest.wait_value(ids, val)
                t_line = max(t for t, _ in got.values())
                if k >= warm:
                    parts["answer"].append((t_answer - t0) * 1000.0)
                    parts["first"].append((min(t for t, _ in got.values()) - t0) * 1000.0)
                want = {i: v for i, (_, v) in got.items()}
                if acks is not None:
                    t_ack = acks.wait(want)
                    if k >= warm:
                        line_ms.append((t_line - t0) * 1000.0)
                        ack_ms.append((t_ack - t0) * 1000.0)
                    continue
                deadline = time.monotonic() + 30
                while True:
                    if len(ids) == 1:
                        st, inst = api.req("GET", "/v1/instances/" + ids[0])
                        done = st == 200 and inst.get("config_version", 0) >= want[ids[0]]
                    else:
                        st, body = api.req("GET", "/v1/instances?service=%s&limit=1000" % svc)
                        acked = {i["id"] for i in body.get("items", [])
                                 if i["id"] in want and i.get("config_version", 0) >= want[i["id"]]}
                        done = st == 200 and len(acked) == len(ids)
                    if done:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError("config_version %r not shown within 30 s" % want)
                    time.sleep(poll_s)
                t_ack = time.monotonic()
                if k >= warm:
                    line_ms.append((t_line - t0) * 1000.0)
                    ack_ms.append((t_ack - t0) * 1000.0)
            return line_ms, ack_ms, parts

        one = setup("web", 1)
        l1, a1, p1 = run("web", one, changes, 20)
        lm = am = None
        if ninst > 0 and rounds > 0:
            many = setup("fleet", ninst)
            lm, am, pm = run("fleet", many, rounds, 5)
        if guest.errors:
            print("config_bench: guest end errors: %r" % guest.errors[:5])
        et, ever, edir = config_etcd.measure(changes)

        if qemu:
            print("config_bench: %d cores; controller + PostgreSQL (fsync off) + 1 cloud-agent "
                  "on qemu:///system (TCG); guest end = the sample guest (images/build-sample.sh), "
                  "line time = its CLOUD-CONFIG echo appearing in the console log (read every "
                  "1 ms); ack time = %s" % (os.cpu_count(), ack_how))
        else:
            print("config_bench: %d cores; controller + PostgreSQL (fsync off) + %d cloud-agent(s) "
                  "on test:///default; guest end = cloud-guestend (bench/guestend.c) on the channel sockets "
                  "(acks at once); ack time = %s" % (os.cpu_count(), nagents, ack_how))
        print("  1 instance, %d changes (PATCH and PUT in turn, one key):" % changes)
        print("    answered (200)           %s" % stats(p1["answer"]))
        print("    change -> line at guest  %s" % stats(l1))
        print("    change -> ack in the API %s" % stats(a1))
        if lm:
            print("  %d instances of one service on %d host(s), %d changes (time until all %d):"
                  % (ninst, nagents, rounds, ninst))
            print("    answered (200)           %s" % stats(pm["answer"]))
            print("    change -> first line     %s" % stats(pm["first"]))
            print("    change -> all lines      %s" % stats(lm))
            print("    change -> all acks       %s" % stats(am))
        print("  etcd %s (data dir in %s), %d puts, one watcher:" % (ever, edir, changes))
        print("    put -> watch event       %s" % stats(et))
        print("  ratio ours/etcd at p50 / p99: line %.1fx / %.1fx, ack %.1fx / %.1fx"
              % (percentile(l1, 50) / percentile(et, 50), percentile(l1, 99) / percentile(et, 99),
                 percentile(a1, 50) / percentile(et, 50), percentile(a1, 99) / percentile(et, 99)))
    finally:
        guest.stopping = True
        if not qemu:
            guest.close()
        # The agents first: a running agent reports a guest destroyed here
        # as exited and the reconciler starts it again (left behind).
        for a in agents.values():
            a.stop()
        if e2e is not None:
            for line in c.psql("SELECT id FROM instances").splitlines():
                e2e.virsh("destroy", "cloud-" + line)
                e2e.virsh("undefine", "cloud-" + line)
        c.stop()
        if e2e is not None:
            for pid in e2e.STARTED:     # the libvirtd/virtlogd this run started
                try:
                    os.kill(pid, 15)
                except OSError:
                    pass


if __name__ == "__main__":
    main()
