"""Agents against the real controller and PostgreSQL, on libvirt's test driver.

Ten cloud-agent processes on test:///default (each a private simulated
host) join the agent gateway over mTLS. The tests check what a user relies
on: hosts register ready with capacity; a 200-replica service becomes
running across them; kill -s KILL / TERM reach the domain and come back as
exit codes; delete removes the instance once its agent confirms; an agent
killed with SIGKILL stops heartbeating and a restarted one gets a new
session; status reports from stale sessions or for foreign instances are
refused; the gateway refuses clients without a certificate of the cluster
CA and closes the connection on a bad frame.

Placement: services become instances and instances get hosts through the
reconciler (controller/reconcile_*.c). Where that has not happened within a
few seconds (the reconciler not built in), the test simulates it with SQL:
instances are inserted/placed (state 'scheduled', host_id set) and an event
is appended for each, as every writer must. It prints when it does so.
"""

import json
import signal
import struct
import time
import unittest

import agentlib
import harness
from harness import poll, request, unique_name

NAGENTS = 10
REPLICAS = 200
IMAGE = "hello:latest"
AGENTS = []


SERVICE = {}


def setUpModule():
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")
    # Hosts silent for 7 s go down (the reconciler's liveness check; the
    # least with fence_after 3 s, fence_after + 3 < down_after).
    st, _, body = request("PATCH", "/v1/cluster/settings",
                          {"down_after_seconds": 7, "fence_after_seconds": 3})
    assert st == 200, "cannot set down_after_seconds: %d %r" % (st, body)
    for i in range(NAGENTS):
        AGENTS.append(agentlib.Agent(c, "hv%02d" % i, labels={"zone": "z%d" % (i % 2)},
                                     cap_vcpus=64, cap_memory=65536).start())


def tearDownModule():
    for a in AGENTS:
        a.stop()
    harness.stop()


def sql(q):
    return harness.psql(q)


def host_ids():
    rows = sql("SELECT name, id FROM hosts ORDER BY name")
    return dict(line.split("|") for line in rows.splitlines() if line)


def wait_placed(where, count, timeout=30):
    """Waits until the reconciler has placed `count` instances matching
    `where`; fails the test otherwise (nothing places them for it)."""
    poll(lambda: int(sql("SELECT count(*) FROM instances WHERE host_id IS NOT NULL AND (%s)"
                         % where)) >= count, timeout, what="placement by the reconciler")


def run_instance(tc, name=None):
    body = {"image": IMAGE, "name": name or unique_name("run"),
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}}
    st, _, inst = request("POST", "/v1/instances", body)
    tc.assertEqual(st, 201, inst)
    wait_placed("id = '%s'" % inst["id"], 1)
    return inst


def get_instance(ref):
    st, _, body = request("GET", "/v1/instances/" + ref)
    return body if st == 200 else None


def wait_state(tc, ref, state, timeout=20, **fields):
    def ok():
        inst = get_instance(ref)
        if inst and inst["state"] == state and all(inst.get(k) == v for k, v in fields.items()):
            return inst
        return None
    return poll(ok, timeout, what="instance %s %s %r" % (ref, state, fields))


class AgentsTest(harness.TestCase):

    def test_01_hosts_register_ready_with_capacity(self):
        def all_ready():
            st, _, body = request("GET", "/v1/hosts?limit=100")
            hosts = [h for h in body["items"] if h["name"].startswith("hv")]
            return hosts if len(hosts) == NAGENTS and all(h["state"] == "ready" for h in hosts) else None
        hosts = poll(all_ready, 30, what="%d hosts ready" % NAGENTS)
        for h in hosts:
            self.assertEqual(h["hypervisor"], "test", h)
            self.assertEqual(h["capacity"]["vcpus"], 64, h)
            self.assertEqual(h["capacity"]["memory_mib"], 65536, h)
            self.assertGreater(h["capacity"]["disk_gib"], 0, h)
            self.assertGreaterEqual(h["session_epoch"], 1, h)
            self.assertEqual(h["address"], "127.0.0.1", h)
            self.assertIn(h["labels"].get("zone"), ("z0", "z1"), h)
        # Heartbeats move last_seen in batches.
        first = {h["name"]: h["last_seen"] for h in hosts}
        poll(lambda: all(r["last_seen"] > first[r["name"]] for r in all_ready()), 10,
             what="last_seen to advance for every host")
        # Registration appended events.
        st, _, ev = request("GET", "/v1/events?object=host&type=host.registered&limit=100")
        self.assertGreaterEqual(len(ev["items"]), NAGENTS, ev)

    def test_02_service_of_200_becomes_running(self):
        name = unique_name("web")
        st, _, svc = request("POST", "/v1/services", {
            "name": name, "image": IMAGE, "replicas": REPLICAS,
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        self.assertEqual(st, 201, svc)
        SERVICE.update(svc)
        where = "service_id = '%s'" % svc["id"]
        poll(lambda: int(sql("SELECT count(*) FROM instances WHERE " + where)) >= REPLICAS,
             30, what="instances created by the reconciler")
        wait_placed(where, REPLICAS)
        poll(lambda: int(sql("SELECT count(*) FROM instances WHERE state = 'running' AND "
                             + where)) >= REPLICAS, 90,
             what="%d instances running" % REPLICAS)
        per_host = sql("SELECT count(DISTINCT host_id) FROM instances WHERE " + where)
        self.assertEqual(int(per_host), NAGENTS)
        # The API shows them running, with a host and a start time.
        st, _, page = request("GET", "/v1/instances?service=%s&state=running&limit=1000" % name)
        self.assertEqual(st, 200, page)
        self.assertEqual(len(page["items"]), REPLICAS)
        for inst in page["items"][:5]:
            self.assertTrue(inst["host"].startswith("hv"), inst)
            self.assertIsNotNone(inst["started_at"], inst)
        st, _, ev = request("GET", "/v1/events?type=instance.state&limit=1000")
        self.assertTrue(any(" running on hv" in e["message"] for e in ev["items"]), ev["items"][:3])
        # The service shows what runs: running next to replicas.
        poll(lambda: request("GET", "/v1/services/" + name)[2].get("running") == REPLICAS, 10,
             what="the service to show %d running" % REPLICAS)

    def test_02b_service_shows_running_of_desired(self):
        # A killed instance of a restart=never service stays exited: the
        # service shows 1 of 2, in GET, in the list and in a write's reply.
        name = unique_name("few")
        st, _, svc = request("POST", "/v1/services", {
            "name": name, "image": IMAGE, "replicas": 2, "restart": "never",
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        self.assertEqual(st, 201, svc)
        self.assertEqual(svc["running"], 0)
        poll(lambda: request("GET", "/v1/services/" + name)[2]["running"] == 2, 30,
             what="2 running")
        st, _, page = request("GET", "/v1/instances?service=%s" % name)
        victim = page["items"][0]
        st, _, body = request("POST", "/v1/instances/%s/kill" % victim["id"], {"signal": "KILL"})
        self.assertEqual(st, 202, body)
        wait_state(self, victim["id"], "exited", exit_code=137)
        poll(lambda: request("GET", "/v1/services/" + name)[2]["running"] == 1, 10,
             what="1 running")
        st, _, lst = request("GET", "/v1/services?limit=1000")
        self.assertEqual([s["running"] for s in lst["items"] if s["name"] == name], [1])
        st, _, patched = request("PATCH", "/v1/services/" + name, {"labels": {"t": "x"}})
        self.assertEqual(st, 200, patched)
        self.assertEqual((patched["running"], patched["replicas"]), (1, 2), patched)
        # The database's answer (the read path before the cache is loaded)
        # says the same.
        self.assertEqual(sql("SELECT count(*) FROM instances i JOIN services s ON "
                             "s.id = i.service_id WHERE s.name = '%s' AND i.state = 'running'"
                             % name), "1")

    def test_03_kill_KILL_exits_137(self):
        inst = run_instance(self)
        wait_state(self, inst["id"], "running")
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "KILL"})
        self.assertEqual(st, 202, body)
        done = wait_state(self, inst["id"], "exited", exit_code=137)
        self.assertIsNotNone(done["finished_at"], done)
        st, _, ev = request("GET", "/v1/events?object=instance&type=instance.state&limit=1000")
        msgs = [e["message"] for e in ev["items"] if e["object_id"] == inst["id"]]
        self.assertTrue(any("exited (137)" in m for m in msgs), msgs)

    def test_04_kill_TERM_powers_off_cleanly(self):
        # The test driver powers off at once on an ACPI shutdown: code 0.
        inst = run_instance(self)
        wait_state(self, inst["id"], "running")
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "TERM"})
        self.assertEqual(st, 202, body)
        wait_state(self, inst["id"], "exited", exit_code=0)

    def test_05_delete_removes_after_the_agent_confirms(self):
        inst = run_instance(self)
        wait_state(self, inst["id"], "running")
        st, _, body = request("DELETE", "/v1/instances/" + inst["id"])
        self.assertEqual(st, 202, body)
        poll(lambda: request("GET", "/v1/instances/" + inst["id"])[0] == 404, 20,
             what="instance %s gone" % inst["id"])
        st, _, ev = request("GET", "/v1/events?object=instance&type=instance.deleted&limit=1000")
        # Deleted by the gateway when the agent reports it removed, or by
        # the reconciler as soon as it has exited: either way one event.
        self.assertTrue(any(e["object_id"] == inst["id"] for e in ev["items"]),
                        ev["items"][-3:])

    def test_06_status_refused_for_stale_session_or_foreign_instance(self):
        inst = run_instance(self)
        wait_state(self, inst["id"], "running")
        row = sql("SELECT h.id, h.session_epoch FROM instances i JOIN hosts h ON h.id = i.host_id "
                  "WHERE i.id = '%s'" % inst["id"])
        host, epoch = row.split("|")
        other = sql("SELECT id FROM hosts WHERE id <> '%s' AND name LIKE 'hv%%' LIMIT 1" % host)
        items = [
            {"host": host, "epoch": int(epoch) - 1, "id": inst["id"], "state": "exited",
             "exit_code": 9},
            {"host": other, "epoch": int(sql("SELECT session_epoch FROM hosts WHERE id = '%s'"
                                             % other)),
             "id": inst["id"], "state": "exited", "exit_code": 9},
        ]
        out = sql("SELECT idx, refused FROM cloud_agent_status('%s'::jsonb, false) ORDER BY idx"
                  % json.dumps(items))
        lines = out.splitlines()
        self.assertEqual(len(lines), 2, out)
        self.assertIn("stale", lines[0])
        self.assertIn("not assigned", lines[1])
        self.assertEqual(get_instance(inst["id"])["state"], "running")

    def test_07_gateway_refuses_without_a_client_certificate(self):
        # Without a client certificate only a JoinRequest is accepted: a
        # Hello gets an UNAUTHENTICATED Error frame and the connection is
        # closed, and no host is registered.
        c = harness.cluster()
        hosts_before = sql("SELECT count(*) FROM hosts")
        s = agentlib.tls_client(c, cert_dir=None)
        try:
            s.sendall(b"\x00\x00\x00\x02\x0a\x00")  # an Envelope holding an empty Hello
            data = agentlib.read_until_closed(s)
        finally:
            s.close()
        self.assertIn(b"only a JoinRequest is accepted", data)
        poll(lambda: "no client certificate and the first message was hello"
             in c.controller_log_tail(200), 5, what="the gateway to log the refusal")
        self.assertEqual(sql("SELECT count(*) FROM hosts"), hosts_before)

    def test_08_bad_frame_closes_with_a_reason(self):
        c = harness.cluster()
        cert = agentlib.issue_cert(c, "badframe")
        s = agentlib.tls_client(c, cert_dir=cert)
        s.sendall(struct.pack(">I", 0x7fffffff) + b"xx")
        data = agentlib.read_until_closed(s)
        s.close()
        # An Error frame (BAD_FRAME) precedes the close.
        self.assertGreater(len(data), 4, data)
        poll(lambda: "bad frame" in c.controller_log_tail(200), 5,
             what="'bad frame' in the controller log")

    def test_09_sigkilled_agent_goes_down_is_replaced_and_rejoins(self):
        a = AGENTS[-1]
        hid = host_ids()[a.name]
        epoch0 = int(sql("SELECT session_epoch FROM hosts WHERE id = '%s'" % hid))
        a.kill(signal.SIGKILL)
        time.sleep(1)
        seen = sql("SELECT last_seen FROM hosts WHERE id = '%s'" % hid)
        time.sleep(4)  # two heartbeat intervals
        self.assertEqual(sql("SELECT last_seen FROM hosts WHERE id = '%s'" % hid), seen,
                         "last_seen moved although the agent is dead")
        svc = SERVICE.get("id")
        # The reconciler marks the host down after down_after (7 s) and
        # replaces its service instances on the other hosts.
        self.assertEqual(sql("SELECT count(*) FROM leader_lease WHERE holder IS NOT NULL"), "1",
                         "no controller leads")
        poll(lambda: sql("SELECT state FROM hosts WHERE id = '%s'" % hid) == "down", 30,
             what=a.name + " down")
        self.assertTrue(svc, "test_02 made no service to replace")
        poll(lambda: int(sql("SELECT count(*) FROM instances WHERE service_id = '%s' "
                             "AND state = 'running' AND host_id <> '%s'" % (svc, hid)))
             >= REPLICAS, 60, what="%d instances running on the other hosts" % REPLICAS)
        # A restarted agent registers a new session and is ready again.
        a.start()
        poll(lambda: int(sql("SELECT session_epoch FROM hosts WHERE id = '%s'" % hid)) > epoch0,
             20, what="a new session for " + a.name)
        poll(lambda: sql("SELECT state FROM hosts WHERE id = '%s'" % hid) == "ready", 20,
             what=a.name + " ready")
        # Whatever is still placed there and wanted runs again (the test
        # driver lost its domains with the process).
        poll(lambda: int(sql("SELECT count(*) FROM instances WHERE host_id = '%s' AND "
                             "desired_state = 'running' AND state NOT IN "
                             "('running', 'exited', 'failed', 'lost')" % hid)) == 0,
             30, what="instances on %s running again" % a.name)

if __name__ == "__main__":
    unittest.main()
