"""Chaos: three controller replicas behind round-robin clients, one of them
restarted every 10 s (issue 14, chaos suite item 5; docs/ha.md).

Replicas r0 (the harness's controller; it never leads), r1 and r2 (both
candidates for the lease, 3 s): each serves the API and an agent gateway on
one PostgreSQL. One cloud-agent (libvirt test:///default) knows all three
gateways, r1 first. A service of two instances runs an uploaded image.

For 60 s, four clients send a mix round robin over the three replicas:
service creates (each with an Idempotency-Key), reads of the service and
of the instance list, console logs of a running instance (relayed when the
replica does not hold the agent), and the image's blob. Every 10 s r1 or
r2 (in turn) is stopped with SIGTERM and started again on the same ports;
the leader among them gives its lease up, the agent moves to another
replica when it is the one it was on.

What must hold:
- no status other than 2xx, except 503 from a replica in the window of its
  own restart, and for console logs while the agent reconnects after one;
  a refused or reset connection only to a replica being restarted;
- every create that got its 201 exists afterwards, through every replica;
- logs and blob reads worked through every replica;
- the service's instances are the same ones, running, never restarted;
- after the run, an image uploaded then runs: its blob is pulled by the
  agent through whichever replica holds it now.
"""

import hashlib
import http.client
import os
import threading
import time
import unittest
import uuid

import chaoslib  # noqa: F401 - puts tests/integration on the path
import agentlib
import harness
import logslib
from harness import poll, unique_name

RUN_S = float(os.environ.get("CHAOS_RUN_S", "60"))
RESTART_EVERY_S = 10.0
CLIENTS = 4
LEASE = "3"
OCTET = {"Content-Type": "application/octet-stream"}
# After a replica is ready again: how long its own 503s are still its
# restart's (the read cache may load after /readyz), and how long a console
# log read may find the agent between two replicas.
OWN_GRACE_S = 1.0
AGENT_GRACE_S = 5.0


def upload(data, port):
    st, _, body = harness.request("POST", "/v1/blobs/uploads", port=port)
    assert st == 202, (st, body)
    path = "/v1/blobs/uploads/%s" % body["id"]
    st, _, b = harness.request("PATCH", path, body=data, port=port,
                               headers=dict(OCTET, **{"Upload-Offset": "0"}))
    assert st == 202, (st, b)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    st, _, b = harness.request("PUT", "%s?digest=%s" % (path, digest), port=port)
    assert st == 201, (st, b)
    return digest


def make_image(digest, port):
    name = unique_name("ch").lower()
    st, _, img = harness.request("POST", "/v1/images", {
        "name": name, "tag": "v1", "kind": "kernel", "kernel": digest,
        "cmdline": "console=ttyS0"}, port=port)
    assert st == 201, (st, img)
    return "%s:v1" % name


class ReplicaChaos(unittest.TestCase):
    def setUp(self):
        c = harness.start(reconcile=False)
        self.addCleanup(harness.stop)
        c.psql("UPDATE cluster_settings SET down_after_seconds = 30")
        # A fast run creates more than the default 10,000 services.
        st, _, body = harness.request("PATCH", "/v1/cluster/settings",
                                      {"quotas": {"services": 1000000}})
        self.assertEqual(st, 200, body)
        self.r1 = c.spawn_controller("r1", ["--lease-seconds", LEASE], agent_listen=True)
        self.r2 = c.spawn_controller("r2", ["--lease-seconds", LEASE], agent_listen=True)
        self.ports = {"r0": c.http_port, "r1": self.r1.http_port, "r2": self.r2.http_port}
        gws = ["127.0.0.1:%d" % p for p in (self.r1.agent_port, self.r2.agent_port, c.agent_port)]
        self.cache = os.path.join(c.tmp, "agents", "ch1", "cache")
        self.agent = agentlib.Agent(c, "ch1", cap_vcpus=16, cap_memory=16384, controllers=gws,
                                    extra=["--cache-dir", self.cache]).start()
        self.addCleanup(self.agent.stop)
        agentlib.wait_host_ready("ch1")
        self.blob = os.urandom(300 * 1024)
        self.digest = upload(self.blob, self.ports["r1"])
        image = make_image(self.digest, self.ports["r2"])
        st, _, body = harness.request("POST", "/v1/services", {
            "name": "web", "image": image, "replicas": 2,
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        self.assertEqual(st, 201, body)
        self.image = image

        def running():
            st, _, b = harness.request("GET", "/v1/instances?service=web")
            items = b.get("items", []) if st == 200 else []
            ok = len(items) == 2 and all(i["state"] == "running" for i in items)
            return items if ok else None
        self.web = {i["id"]: i for i in poll(running, 60, what="web running")}
        for iid in self.web:
            logslib.write_console(self.agent, iid, b"chaos-marker %s\n" % iid.encode())

    # -- the load ------------------------------------------------------------
    def client(self, k, stop, log, acked):
        names = sorted(self.ports)
        ids = sorted(self.web)
        i = k
        while not stop.is_set():
            rep = names[i % len(names)]
            port = self.ports[rep]
            op = ("create", "service", "list", "logs", "blob")[(i // len(names)) % 5]
            i += 1
            t0 = time.monotonic()
            status, err, ok = None, None, False
            try:
                if op == "create":
                    name = unique_name("c")
                    st, _, b = harness.request(
                        "POST", "/v1/services",
                        {"name": name, "image": self.image, "replicas": 0},
                        headers={"Idempotency-Key": str(uuid.uuid4())}, port=port, timeout=10)
                    status, ok = st, st == 201
                    if ok:
                        acked.append((name, b["id"]))
                elif op == "service":
                    st, _, b = harness.request("GET", "/v1/services/web", port=port, timeout=10)
                    status, ok = st, st == 200 and b.get("name") == "web"
                elif op == "list":
                    st, _, b = harness.request("GET", "/v1/instances?service=web", port=port,
                                               timeout=10)
                    status = st
                    ok = st == 200 and {x["id"] for x in b.get("items", [])} == set(self.web)
                elif op == "logs":
                    iid = ids[i % len(ids)]
                    st, _, b = harness.request("GET", "/v1/instances/%s/logs" % iid,
                                               port=port, timeout=10, binary=True)
                    status = st
                    ok = st == 200 and (b"chaos-marker %s" % iid.encode()) in b
                else:
                    st, _, b = harness.request("GET", "/v1/blobs/" + self.digest, port=port,
                                               timeout=20, binary=True)
                    status = st
                    ok = st == 200 and b == self.blob
            except (OSError, http.client.HTTPException) as e:
                err = repr(e)
            log.append((t0, time.monotonic(), rep, op, status, err, ok))

    def test_rolling_restarts_under_load(self):
        stop = threading.Event()
        log, acked, windows = [], [], {"r1": [], "r2": []}
        threads = [threading.Thread(target=self.client, args=(k, stop, log, acked), daemon=True)
                   for k in range(CLIENTS)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        turn = 0
        try:
            while time.monotonic() - t_start < RUN_S - RESTART_EVERY_S / 2:
                time.sleep(max(0.0, t_start + (turn + 1) * RESTART_EVERY_S - time.monotonic()))
                name = ("r1", "r2")[turn % 2]
                turn += 1
                t0 = time.monotonic()
                getattr(self, name).restart()
                windows[name].append((t0, time.monotonic()))
            time.sleep(max(0.0, t_start + RUN_S - time.monotonic()))
        finally:
            stop.set()
            for t in threads:
                t.join(30)

        def in_window(rep, t0, t1, grace):
            return any(t0 <= b + grace and t1 >= a for a, b in windows.get(rep, []))

        bad = []
        for (t0, t1, rep, op, status, err, ok) in log:
            if ok:
                continue
            if err is not None:
                if not in_window(rep, t0, t1, 0.5):
                    bad.append((round(t0 - t_start, 2), rep, op, err))
                continue
            if status == 503 and in_window(rep, t0, t1, OWN_GRACE_S):
                continue
            if status == 503 and op == "logs" and any(
                    in_window(r, t0, t1, AGENT_GRACE_S) for r in windows):
                continue
            bad.append((round(t0 - t_start, 2), rep, op, status))
        counts = {}
        for (_, _, rep, op, status, err, ok) in log:
            key = (rep, op)
            counts.setdefault(key, [0, 0])
            counts[key][0 if ok else 1] += 1
        print("\nchaos: %d requests in %.0f s, %d restarts, %d creates acknowledged; "
              "not 2xx: %d (allowed: %d)"
              % (len(log), RUN_S, sum(len(w) for w in windows.values()), len(acked),
                 sum(1 for x in log if not x[6]), sum(1 for x in log if not x[6]) - len(bad)))
        self.assertEqual(bad, [], "answers outside a restart's window")
        self.assertGreaterEqual(sum(len(w) for w in windows.values()), int(RUN_S // RESTART_EVERY_S) - 1)
        for rep in self.ports:
            for op in ("logs", "blob", "create", "service", "list"):
                self.assertGreater(counts.get((rep, op), [0])[0], 0,
                                   "no %s worked through %s" % (op, rep))
        # every acknowledged create exists, seen through every replica
        for rep, port in self.ports.items():
            have, after = {}, None
            while True:
                st, _, b = harness.request("GET", "/v1/services?limit=1000" +
                                           ("&after=" + after if after else ""), port=port)
                self.assertEqual(st, 200, b)
                have.update({s["name"]: s["id"] for s in b["items"]})
                after = b.get("next")
                if not after:
                    break
            lost = [(n, i) for n, i in acked if have.get(n) != i]
            for n, i in lost[:3]:
                print("lost through %s: %s %s: row %r, events %r, restarts %r" % (
                    rep, n, i, harness.psql("SELECT id, created_at FROM services WHERE name = '%s'" % n),
                    harness.psql("SELECT id, time, actor FROM events WHERE object_id = '%s'" % i),
                    [(a - t_start, b - t_start) for a, b in windows.get(rep, [])]))
            self.assertEqual(lost, [], "acknowledged creates missing through %s" % rep)
        # the service's instances: the same ones, running, not restarted
        st, _, b = harness.request("GET", "/v1/instances?service=web")
        now = {i["id"]: i for i in b["items"]}
        self.assertEqual(set(now), set(self.web))
        for iid, i in now.items():
            self.assertEqual(i["state"], "running", i)
            self.assertEqual(i["restart_count"], self.web[iid]["restart_count"], i)
        # an image uploaded now runs: the agent pulls its blob through the
        # replica that holds it after all the moves
        digest = upload(os.urandom(200 * 1024), self.ports["r2"])
        image = make_image(digest, self.ports["r0"])
        st, _, inst = harness.request("POST", "/v1/instances", {
            "image": image, "name": unique_name("pull"), "restart": "never",
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}}, port=self.ports["r1"])
        self.assertEqual(st, 201, inst)
        poll(lambda: harness.request("GET", "/v1/instances/" + inst["id"])[2].get("state")
             == "running", 30, what="the new image's instance running")
        self.assertTrue(os.path.exists(os.path.join(self.cache, digest)),
                        "the agent's cache has the new blob")


if __name__ == "__main__":
    unittest.main()
