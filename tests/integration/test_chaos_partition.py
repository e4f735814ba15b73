"""Chaos: a host cut off by a network partition (issue 14, test 4).

An agent runs in its own network namespace, reaching a controller replica
only through a veth pair (the replica's agent gateway listens on the
root end's address; the namespace's /etc/hosts names that address with
this machine's host name, which the gateway's certificate carries). A
second agent, in the root namespace, is the spare host. Two services run
one instance each on the namespaced host: one with partition_policy stop,
one with keep. fence_after is 3 s, down_after 9 s.

Then the root end of the veth is taken down: nothing passes either way.

- stop: the namespaced agent destroys its guest ("fenced") before the
  controller marks the host down, and so before the replacement is even
  created, let alone running: the agent log's fence time is earlier than
  the host.down event, and the replacement's first run begins after it.
- keep: its guest runs on through the partition (no fence, no exit in the
  agent log); a replacement runs on the spare meanwhile (keep trades
  at-most-once for availability). When the veth comes back, the agent
  registers again, the original is taken back (same id, same started_at)
  and the replacement is retired at once: the two run side by side only
  until the controller hears the host again.

Needs root (ip netns); fails, never skips, without it. The namespace, the
veth and /etc/netns/<ns> are removed even when the test fails.
"""

import os
import shutil
import socket
import time
import unittest

import agentlib
import harness
from netnslib import forget_host, ip, name_host
from harness import poll, request, unique_name

IMAGE = "hello:latest"
FENCE_AFTER, DOWN_AFTER = 3, 9
NS = "cfp%d" % (os.getpid() % 100000)
VROOT, VNS = "cfr%d" % (os.getpid() % 100000), "cfn%d" % (os.getpid() % 100000)
NET = "10.213.%d" % (os.getpid() % 250 + 1)
ROOT_IP, NS_IP = NET + ".1", NET + ".2"
HOSTNAME = socket.gethostname()
C = REPLICA = AGENT = SPARE = None



def net_up():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise harness.HarnessError("chaos_partition needs root and iproute2 (ip netns)")
    ip("netns", "add", NS)
    ip("link", "add", VROOT, "type", "veth", "peer", "name", VNS)
    ip("link", "set", VNS, "netns", NS)
    ip("addr", "add", ROOT_IP + "/30", "dev", VROOT)
    ip("link", "set", VROOT, "up")
    ip("-n", NS, "addr", "add", NS_IP + "/30", "dev", VNS)
    ip("-n", NS, "link", "set", VNS, "up")
    ip("-n", NS, "link", "set", "lo", "up")
    name_host(NS, ROOT_IP, HOSTNAME)


def net_down():
    if shutil.which("ip") is not None:
        ip("link", "del", VROOT, check=False)
        ip("netns", "del", NS, check=False)
    forget_host(NS)


def setUpModule():
    global C, REPLICA, AGENT, SPARE
    try:
        net_up()
        C = harness.start(reconcile=True)
        C.add_image("hello", "latest")
        st, _, body = request("PATCH", "/v1/cluster/settings",
                              {"fence_after_seconds": FENCE_AFTER,
                               "down_after_seconds": DOWN_AFTER})
        assert st == 200, body
        port = harness.free_port()
        REPLICA = C.spawn_controller("gw", agent_listen="%s:%d" % (ROOT_IP, port))
        AGENT = agentlib.Agent(C, "hvpart", labels={"role": "part"}, cap_vcpus=8,
                               cap_memory=8192, controllers=["%s:%d" % (HOSTNAME, port)],
                               wrap=["ip", "netns", "exec", NS]).start()
        SPARE = agentlib.Agent(C, "hvspare", labels={"role": "spare"}, cap_vcpus=8,
                               cap_memory=8192)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    try:
        for a in (AGENT, SPARE):
            if a:
                a.stop()
        harness.stop()
    finally:
        net_down()


def agent_log():
    """P's agent log as (epoch seconds, message)."""
    return AGENT.messages()


def events(where):
    """(epoch seconds, type, object_id, message) of events matching where."""
    rows = C.psql("SELECT extract(epoch FROM time), type, object_id, message FROM events "
                  "WHERE %s ORDER BY id" % where)
    return [(float(r[0]), r[1], r[2], r[3]) for r in
            (line.split("|", 3) for line in rows.splitlines() if line)]


def live(service):
    """Instances of service not being deleted: (id, name, state, host, started_at)."""
    st, _, body = request("GET", "/v1/instances?service=%s" % service)
    assert st == 200, body
    return [(i["id"], i["name"], i["state"], i["host"], i["started_at"])
            for i in body["items"] if i["desired_state"] != "deleted"]


class PartitionTest(harness.TestCase):
    def run(self, result=None):
        n = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > n:
            for what, tail in (("namespaced agent", AGENT.log_tail(60)),
                               ("replica gw", REPLICA.log_tail(40))):
                print("\n--- %s log (tail) ---\n%s\n---" % (what, tail))
        return out

    def test_partition_stop_fenced_before_replacement_keep_readopted(self):
        poll(lambda: any(m.startswith("registered with %s:" % HOSTNAME) for _, m in agent_log()),
             30, what="the namespaced agent registered over the veth")
        stop_svc, keep_svc = unique_name("pstop"), unique_name("pkeep")
        for name, policy in ((stop_svc, "stop"), (keep_svc, "keep")):
            st, _, body = request("POST", "/v1/services", {
                "name": name, "image": IMAGE, "replicas": 1, "partition_policy": policy,
                "resources": {"vcpus": 1, "memory_mib": 64}})
            self.assertEqual(st, 201, body)
        for name in (stop_svc, keep_svc):
            poll(lambda: [i for i in live(name) if i[2] == "running" and i[3] == "hvpart"], 30,
                 what="%s running on the namespaced host" % name)
        stop0, keep0 = live(stop_svc)[0], live(keep_svc)[0]
        SPARE.start()
        poll(lambda: C.psql("SELECT state FROM hosts WHERE name = 'hvspare'") == "ready", 20,
             what="the spare host ready")
        hid = C.psql("SELECT id FROM hosts WHERE name = 'hvpart'")

        cut = time.time()
        ip("link", "set", VROOT, "down")
        try:
            # stop: fenced by the agent alone
            poll(lambda: [t for t, m in agent_log() if m.startswith("instance %s: fenced" % stop0[0])],
                 FENCE_AFTER + 5, what="the stop instance fenced")
            down = poll(lambda: events("type = 'host.down' AND object_id = '%s'" % hid),
                        DOWN_AFTER + 10, what="the host marked down")
            t_down = down[0][0]
            rep_stop = poll(lambda: [i for i in live(stop_svc) if i[0] != stop0[0] and
                                     i[2] == "running" and i[3] == "hvspare"], 30,
                            what="the stop service's replacement running on the spare")[0]
            rep_keep = poll(lambda: [i for i in live(keep_svc) if i[0] != keep0[0] and
                                     i[2] == "running" and i[3] == "hvspare"], 30,
                            what="the keep service's replacement running on the spare")[0]
            log = agent_log()
        finally:
            ip("link", "set", VROOT, "up")
        healed = time.time()

        t_fence = [t for t, m in log if m.startswith("instance %s: fenced" % stop0[0])][0]
        created = events("type = 'instance.created' AND object_id = '%s'" % rep_stop[0])
        running = events("type = 'instance.state' AND object_id = '%s' AND message LIKE "
                         "'%% running on %%'" % rep_stop[0])
        print("\ntimeline from the cut (s): fenced %.2f, host down %.2f, replacement "
              "created %.2f, replacement running %.2f"
              % (t_fence - cut, t_down - cut, created[0][0] - cut, running[0][0] - cut))
        # fence_after counts from the last flush stored, up to one 2 s flush
        # interval (and its latency) before the cut.
        self.assertGreater(t_fence - cut, 0.3, "fenced before fence_after could pass")
        self.assertLess(t_fence, t_down, "the host went down before its agent fenced")
        self.assertLess(t_fence, created[0][0])
        self.assertLess(t_fence, running[0][0], "the replacement ran while the original ran")
        self.assertEqual(rep_stop[1], stop0[1], "stop: the replacement takes the lost one's name")
        # keep: no fence, no exit on the namespaced host during the partition
        self.assertFalse([m for _, m in log if keep0[0] in m and
                          ("fenced" in m or "exited" in m or "removing" in m)], log[-20:])

        # The veth is back: the host registers again, keep's original is
        # taken back, its replacement retired.
        back = poll(lambda: events("type = 'host.registered' AND object_id = '%s' "
                                   "AND message LIKE '%%was down%%'" % hid), 60,
                    what="the namespaced host registered again")[0][0]
        poll(lambda: [i for i in live(keep_svc)] == [(keep0[0], keep0[1], "running", "hvpart",
                                                     keep0[4])], 30,
             what="keep: only the original, running on its host with its start time")
        gone = poll(lambda: events("type IN ('instance.deleted', 'instance.state') AND "
                                   "object_id = '%s' AND (type = 'instance.deleted' OR "
                                   "message LIKE '%% exited %%')" % rep_keep[0]), 30,
                    what="keep's replacement stopped")[0][0]
        readopt = events("type = 'instance.state' AND object_id = '%s' AND message LIKE "
                         "'%%re-adopted%%'" % keep0[0])
        self.assertTrue(readopt, "no re-adoption event for the keep original")
        print("heal: registered %.2f s after the veth came up; keep's replacement "
              "stopped %.2f s after that" % (back - healed, gone - back))
        self.assertLess(gone - back, 10.0, "two copies of keep ran on after the host returned")
        # stop: the fenced original reported, then removed; the replacement stays
        poll(lambda: C.psql("SELECT count(*) FROM instances WHERE id = '%s'" % stop0[0]) == "0",
             30, what="the fenced stop original removed")
        self.assertEqual([i[0] for i in live(stop_svc)], [rep_stop[0]])
        self.assertTrue(events("object_id = '%s' AND message LIKE '%%fenced%%'" % stop0[0]) or
                        any("fenced" in m for _, m in agent_log()),
                        "the fence was not reported")


if __name__ == "__main__":
    unittest.main()
