"""An agent given several controller replicas fails over when its replica dies.

Two controllers on one PostgreSQL, each with an agent gateway: the main
one (harness) and a replica started with the same cluster CA (its data
directory gets the main one's ca.pem and ca.key before its first start,
as docs/agent.md "Several controllers" tells operators). One cloud-agent
on libvirt's test driver is given both addresses, the replica's first, so
it registers there. A service runs three instances on it. Then the replica
it is connected to is killed with SIGKILL. What a user relies on:

- the agent registers with the other replica within a few seconds (not
  after the 30 s of its longest back-off);
- no instance is restarted or redefined: same instances, same started_at,
  restart_count unchanged, no new start in the agent's log;
- the desired set the agent gets from the other replica is the same (same
  instance ids, and the agent does not stop or start anything on it).

`cloud-agent join` takes the same list: with a first address that answers
nothing, the replica enrols the host (its CA is the cluster's).
"""

import os
import subprocess
import time
import unittest

import agentlib
import harness
from harness import poll, request, unique_name

IMAGE = "hello:latest"
C = None
REPLICA = None
AGENT = None


def setUpModule():
    global C, REPLICA, AGENT
    C = harness.start(reconcile=True)
    C.add_image("hello", "latest")
    REPLICA = C.spawn_controller("b", agent_listen=True)
    AGENT = agentlib.Agent(C, "hvfail", cap_vcpus=16, cap_memory=16384,
                           controllers=["127.0.0.1:%d" % REPLICA.agent_port,
                                        "127.0.0.1:%d" % C.agent_port]).start()


def tearDownModule():
    if AGENT:
        AGENT.stop()
    harness.stop()


def agent_log():
    return AGENT.messages()


def registered_with():
    regs = [m for _, m in agent_log() if m.startswith("registered with ")]
    return regs[-1].split()[2] if regs else None


class FailoverTest(harness.TestCase):
    def test_a_join_takes_a_list_and_any_replica_enrols(self):
        # The first address answers nothing; the replica (same CA, so the
        # pin of the main controller's CA holds) enrols the host.
        st, _, tok = request("POST", "/v1/join-tokens", {"ttl_seconds": 120})
        self.assertEqual(st, 201, tok)
        state = os.path.join(C.tmp, "joined", "hvlist")
        dead = "127.0.0.1:%d" % harness.free_port()
        r = subprocess.run([agentlib.AGENT_BIN, "--name", "hvlist", "--state-dir", state,
                            "join", "--controller", "%s,127.0.0.1:%d" % (dead, REPLICA.agent_port),
                            "--token", tok["token"], "--ca-pin", tok["ca_pin"]],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cannot connect to %s" % dead, r.stderr)
        for f in ("cert.pem", "key.pem", "ca.pem"):
            self.assertTrue(os.path.exists(os.path.join(state, "pki", f)), f)
        st, _, lst = request("GET", "/v1/join-tokens")
        self.assertEqual([(t["state"], t["used_by"]) for t in lst["items"] if t["id"] == tok["id"]],
                         [("used", "hvlist")])
        r = subprocess.run([agentlib.AGENT_BIN, "join", "--controller", "a:1,,b:2",
                            "--token", tok["token"], "--ca-pin", tok["ca_pin"]],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--controller must be HOST:PORT[,HOST:PORT...]", r.stderr)

    def test_kill_connected_replica_agent_fails_over_without_restarts(self):
        rep = "127.0.0.1:%d" % REPLICA.agent_port
        main = "127.0.0.1:%d" % C.agent_port
        poll(lambda: registered_with() == rep, 20,
             what="the agent registered with the replica it was given first")
        name = unique_name("fo")
        st, _, svc = request("POST", "/v1/services",
                             {"name": name, "image": IMAGE, "replicas": 3,
                              "resources": {"vcpus": 1, "memory_mib": 64}})
        self.assertEqual(st, 201, svc)

        def running():
            st, _, body = request("GET", "/v1/instances?service=%s" % name)
            items = body.get("items", []) if st == 200 else []
            ok = len(items) == 3 and all(i["state"] == "running" for i in items)
            return items if ok else None
        before = {i["id"]: i for i in poll(running, 30, what="3 instances running")}
        starts_before = [m for _, m in agent_log() if ": running" in m]
        sets = [m for _, m in agent_log() if m.startswith("desired set revision")]
        self.assertTrue(sets and sets[-1].endswith(": 3 instances"), sets)

        killed = time.time()
        REPLICA.kill()
        poll(lambda: registered_with() == main, 15,
             what="the agent registered with the other replica")
        at = [t for t, m in agent_log() if m.startswith("registered with " + main)][-1]
        print("failover: registered with the other replica %.2f s after the kill" % (at - killed))
        self.assertLess(at - killed, 5.0, "failover took %.2f s" % (at - killed))
        # The set from the other replica: the same three instances.
        poll(lambda: [m for t, m in agent_log() if t >= at and
                      m.startswith("desired set revision")], 10,
             what="a desired set from the other replica")
        after_sets = [m for t, m in agent_log() if t >= at and
                      m.startswith("desired set revision")]
        self.assertTrue(after_sets[-1].endswith(": 3 instances"), after_sets)
        time.sleep(3)  # room for a restart or a stop, were there one
        st, _, body = request("GET", "/v1/instances?service=%s" % name)
        after = {i["id"]: i for i in body["items"]}
        self.assertEqual(set(after), set(before))
        for iid, i in after.items():
            self.assertEqual(i["state"], "running", i)
            self.assertEqual(i["restart_count"], before[iid]["restart_count"], i)
            self.assertEqual(i["started_at"], before[iid]["started_at"], i)
            self.assertEqual(i["host"], before[iid]["host"], i)
        self.assertEqual([m for _, m in agent_log() if ": running" in m], starts_before,
                         "the agent started or re-reported an instance after the failover")
        for _, m in agent_log():
            self.assertNotIn("not in the desired set", m)
            self.assertNotIn("ACPI shutdown", m)


if __name__ == "__main__":
    unittest.main()
