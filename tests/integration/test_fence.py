"""Self-fencing: fence_after, its validation, and what an agent does alone.

The cluster setting fence_after_seconds (docs/api.md "Cluster settings")
must stay 3 s below down_after_seconds; agents learn it in Welcome and in
every HeartbeatAck. An agent that has heard from no controller for
fence_after destroys the instances of partition_policy "stop" services,
records it in its state directory, and reports them exited ("fenced") when
a controller hears it again; "keep" instances run on.

The controller is cut off here with SIGSTOP (its TCP connections stay
open, it just answers nothing, as behind a partition that drops packets):
the agent must notice from the missing acknowledgements, not from a
closed socket. The agent is also killed and restarted while alone, to
check the record survives it. tests/chaos/chaos_partition.py does the same
with a real network partition and replacements on another host.
"""

import json
import os
import signal
import time
import unittest

import agentlib
import harness
from harness import poll, request, unique_name

IMAGE = "hello:latest"
C = None
AGENT = None


def setUpModule():
    global C, AGENT
    C = harness.start(reconcile=True)
    C.add_image("hello", "latest")
    AGENT = agentlib.Agent(C, "hvfence", cap_vcpus=16, cap_memory=16384).start()


def tearDownModule():
    if C is not None and C.proc is not None:
        C.proc.send_signal(signal.SIGCONT)
    if AGENT:
        AGENT.stop()
    harness.stop()


def settings(patch=None):
    st, _, body = request("PATCH" if patch is not None else "GET", "/v1/cluster/settings",
                          patch)
    return st, body


def agent_msgs():
    return [m for _, m in AGENT.messages()]


def read_json(path):
    with open(path) as f:
        return json.load(f)


def items(service):
    st, _, body = request("GET", "/v1/instances?service=%s" % service)
    return body.get("items", []) if st == 200 else []


def service(name, policy, replicas):
    st, _, svc = request("POST", "/v1/services",
                         {"name": name, "image": IMAGE, "replicas": replicas,
                          "restart": "never", "partition_policy": policy,
                          "resources": {"vcpus": 1, "memory_mib": 64}})
    assert st == 201, svc
    return svc


class FenceTest(harness.TestCase):
    def test_1_settings_validate_fence_before_down(self):
        st, s = settings()
        self.assertEqual(st, 200, s)
        self.assertEqual((s["fence_after_seconds"], s["down_after_seconds"]), (20, 30), s)
        # fence_after + 3 must stay below down_after, whichever moves
        for patch in ({"fence_after_seconds": 27}, {"down_after_seconds": 23},
                      {"fence_after_seconds": 10, "down_after_seconds": 13}):
            with self.subTest(patch=patch):
                err = self.assertError(request("PATCH", "/v1/cluster/settings", patch),
                                       422, "invalid")
                self.assertIn("fence_after_seconds", err["message"])
                self.assertIn("down_after_seconds", err["message"])
        for bad in (2, 3601, "5", 3.5, None):
            self.assertError(request("PATCH", "/v1/cluster/settings",
                                     {"fence_after_seconds": bad}),
                             422, "invalid", "fence_after_seconds")
        self.assertEqual(settings()[1]["version"], s["version"], "a refused PATCH changed something")
        st, n = settings({"fence_after_seconds": 26})
        self.assertEqual((st, n["fence_after_seconds"], n["version"]), (200, 26, s["version"] + 1), n)
        st, _, ev = request("GET", "/v1/events?type=controller.settings")
        self.assertIn("fence_after_seconds 20 -> 26", ev["items"][-1]["message"])
        # The agents are told at their next heartbeat flush.
        poll(lambda: "fence_after is 26000 ms" in agent_msgs(), 10,
             what="the agent told fence_after 26 s")

    def test_2_alone_agent_fences_stop_keeps_keep_and_reports_on_return(self):
        st, _ = settings({"fence_after_seconds": 3, "down_after_seconds": 60})
        self.assertEqual(st, 200)
        poll(lambda: "fence_after is 3000 ms" in agent_msgs(), 10, what="fence_after 3 s")
        stop, keep = unique_name("fstop"), unique_name("fkeep")
        service(stop, "stop", 2)
        service(keep, "keep", 1)
        poll(lambda: all(len(items(n)) == r and all(i["state"] == "running" for i in items(n))
                         for n, r in ((stop, 2), (keep, 1))), 30, what="all running")
        keep_before = items(keep)[0]
        stop_ids = sorted(i["id"] for i in items(stop))
        # Let the record catch up with the set (written on the worker's turn).
        record = os.path.join(AGENT.dir, "state", "fence", "instances.json")
        poll(lambda: os.path.exists(record) and
             sorted(e["id"] for e in read_json(record)["instances"]) == stop_ids,
             10, what="the fence record lists the stop instances")

        # A healthy link never fences, even at the least fence_after: the
        # acks (one per 2 s flush) keep the clock within it.
        time.sleep(7)
        self.assertFalse([m for m in agent_msgs() if "fenced" in m or m.startswith("fence:")],
                         "fenced while the controller answered")

        C.proc.send_signal(signal.SIGSTOP)
        try:
            cut = time.monotonic()
            poll(lambda: sum("fenced (destroyed)" in m for m in agent_msgs()) == 2, 10,
                 what="both stop instances fenced")
            took = time.monotonic() - cut
            print("fenced %.1f s after the controller stopped answering" % took)
            # fence_after (3 s) counts from the last heartbeat flush stored,
            # up to one 2 s flush interval (and its latency) before the cut.
            self.assertGreaterEqual(took, 0.3)
            self.assertLess(took, 5.0)
            msgs = agent_msgs()
            for iid in stop_ids:
                self.assertTrue(any(m.startswith("instance %s: fenced" % iid) for m in msgs), iid)
            self.assertFalse(any(keep_before["id"] in m and "fenced" in m for m in msgs))
            # The record is written on the worker's next turn, after the
            # log lines: wait for it to name the fence of both.
            poll(lambda: all("fenced" in e for e in read_json(record)["instances"]), 5,
                 what="the fence record noting both fences")
            rec = {e["id"]: e for e in read_json(record)["instances"]}
            self.assertEqual(sorted(rec), stop_ids)
            self.assertTrue(all("fenced: no controller heard" in e["fenced"] for e in rec.values()),
                            rec)
            # Killed and started again while alone: the record holds.
            AGENT.kill()
            AGENT.start()
            poll(lambda: any(m.startswith("fence record: 2 instances") for m in agent_msgs()), 10,
                 what="the restarted agent read its fence record")
            time.sleep(1)
        finally:
            C.proc.send_signal(signal.SIGCONT)

        def reported():
            got = {i["id"]: i for i in items(stop)}
            return got if sorted(got) == stop_ids and all(
                i["state"] == "exited" and i["exit_code"] == 137 and "fenced" in (i["reason"] or "")
                for i in got.values()) else None
        poll(reported, 40, what="the fenced instances reported exited 137 (fenced)")
        k = poll(lambda: [i for i in items(keep) if i["state"] == "running"], 20,
                 what="the keep instance running")[0]
        self.assertEqual((k["id"], k["started_at"], k["restart_count"]),
                         (keep_before["id"], keep_before["started_at"],
                          keep_before["restart_count"]), k)
        # Fenced instances stay down: restart "never", and nothing starts
        # them again on the agent's own.
        time.sleep(2)
        self.assertTrue(reported())
        starts = [m for m in agent_msgs() if any(m == "instance %s: running" % i for i in stop_ids)]
        self.assertEqual(len(starts), 2, starts)  # the first start of each, no other


if __name__ == "__main__":
    unittest.main()
