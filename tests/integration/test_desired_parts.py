"""A host's desired set in parts (agent.proto DesiredState.part/parts,
docs/agent.md "Desired set in parts").

One cloud-agent on libvirt's test driver with guest channels
(CLOUD_AGENT_TEST_CHANNELS=1, guestpeer.py as every guest end) holds 300
one-off instances, each with its own env at the 16 KiB cap: the host's set
is about 5 MB, over the 4 MiB frame, so the controller sends it in parts of
at most 1 MiB and the agent assembles them. Every instance runs and its
guest reads its own env in the boot line; a later change (instances
killed) is a new set in parts that the agent applies whole (a part applied
as the whole set would remove the instances of the other parts). Before
sets in parts the set was not sent at all (logged) and no instance ran.
"""

import concurrent.futures
import re
import unittest

import agentlib
import guestpeer
import harness
from harness import poll, request, unique_name

IMAGE = "hello:latest"
N = 300
AGENT = PEER = None


def setUpModule():
    global AGENT, PEER
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")
    AGENT = agentlib.Agent(c, "dp1", cap_vcpus=N + 10, cap_memory=64 * (N + 10),
                           env={"CLOUD_AGENT_TEST_CHANNELS": "1"}).start()
    PEER = guestpeer.GuestPeer().watch(AGENT)
    poll(lambda: c.psql("SELECT state FROM hosts WHERE name = 'dp1'") == "ready", 30,
         what="host dp1 ready (agent log:\n%s)" % AGENT.log_tail())


def tearDownModule():
    if AGENT:
        AGENT.stop()
    if PEER:
        PEER.stop()
    harness.stop()


def big_env(i):
    """An env at the cap (16,384 bytes of keys plus values), its own per
    instance: four 2-byte keys and values of 4,094 bytes."""
    return {"K%d" % k: ("%05d-%d-" % (i, k)).ljust(4094, "abcdefghij"[k])
            for k in range(4)}


class DesiredPartsTest(harness.TestCase):

    def test_300_instances_with_16k_env_on_one_host(self):
        envs, ids = {}, []

        def create(i):
            st, _, inst = request("POST", "/v1/instances", {
                "image": IMAGE, "name": unique_name("dp%d-" % i), "env": big_env(i),
                "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
            self.assertEqual(st, 201, inst)
            return i, inst["id"]
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            for i, iid in ex.map(create, range(N)):
                envs[iid] = big_env(i)
                ids.append(iid)
        self.assertEqual(sum(len(k) + len(v) for k, v in envs[ids[0]].items()), 16384)

        def running():
            st, _, body = request("GET", "/v1/instances?limit=1000")
            got = {i["id"]: i["state"] for i in body["items"] if i["id"] in envs}
            n = sum(1 for s in got.values() if s == "running")
            return n if n == N else None
        poll(running, 120, interval=0.5,
             what="%d running instances (agent log:\n%s\ncontroller log:\n%s)"
             % (N, AGENT.log_tail(10), harness.cluster().controller_log_tail(10)))
        # Every guest reads its own env, whole, first on its channel.
        PEER.wait(lambda: all(PEER.boots.get(iid) for iid in ids), 60,
                  "a boot line from every instance")
        for iid in ids:
            self.assertEqual([b for _, b in PEER.boots_of(iid)],
                             [{"env": envs[iid], "args": []}], iid)
        # The set went in parts: the agent says so; nothing was refused.
        with open(AGENT.log, encoding="utf-8", errors="replace") as f:
            log = f.read()
        parts = [int(m) for m in re.findall(r"%d instances in (\d+) parts" % N, log)]
        self.assertTrue(parts and min(parts) >= 5, parts)
        self.assertNotIn("refused", log)
        # A change is a new set in parts, applied whole: the killed exit,
        # the other 290 keep running.
        killed = ids[::30]
        for iid in killed:
            st, _, body = request("POST", "/v1/instances/%s/kill" % iid, {"signal": "KILL"})
            self.assertIn(st, (200, 202), body)
        for iid in killed:
            agentlib.wait_instance(iid, lambda i: i["state"] == "exited", "exited", 60)
        st, _, body = request("GET", "/v1/instances?limit=1000")
        still = [i["id"] for i in body["items"]
                 if i["id"] in envs and i["id"] not in killed and i["state"] == "running"]
        self.assertEqual(len(still), N - len(killed))


if __name__ == "__main__":
    unittest.main()
