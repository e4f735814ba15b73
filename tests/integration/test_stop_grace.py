"""The stop grace period: stop_grace_seconds on services
and one-off instances, grace_seconds on a kill, with one cloud-agent on
libvirt's test driver and the reconciler.

What reaches the agent is read from its log: at a TERM stop it sends the
ACPI shutdown and logs "instance ID: ACPI shutdown sent; destroying it if
it is still up in N ms", N being InstanceSpec.stop_grace_period_ms of the
set it acts on (the test driver's guests power off at once: exit 0).

  - the default is 10 s (10000 ms at the agent), shown by services and
    instances as stop_grace_seconds 10;
  - a one-off instance's stop_grace_seconds is its grace;
  - a kill's grace_seconds is that stop's grace, and only that stop's: the
    next run is stopped with the instance's own again;
  - a service's stop_grace_seconds is its instances' (shown on them), and a
    change reaches the live instances without a new generation;
  - out of range (1..3600), not an integer, or a grace with KILL: 422
    naming the field.
"""

import os
import re

import agentlib
import harness
from agentlib import instance as get, wait_instance as wait_for
from harness import poll, request, unique_name

MODULE = agentlib.ModuleAgent("gr1")
setUpModule = MODULE.set_up
tearDownModule = MODULE.tear_down


def agent_graces(inst_id):
    """The grace periods (ms) the agent stopped inst_id with, in order."""
    with open(MODULE.agent.log, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return [int(m) for m in re.findall(
        r"instance %s: ACPI shutdown sent; destroying it if it is still up in (\d+) ms"
        % re.escape(inst_id), text)]


def stopped_with(ref, n):
    """The grace (ms) of the agent's n-th TERM stop of ref (1-based)."""
    return poll(lambda: agent_graces(ref)[n - 1] if len(agent_graces(ref)) >= n else None,
                30, what="the agent's TERM stop #%d of %s" % (n, ref))


class StopGraceTest(harness.TestCase):

    def run_one(self, **fields):
        body = {"image": "hello:latest", "name": unique_name("gr")}
        body.update(fields)
        st, _, inst = request("POST", "/v1/instances", body)
        self.assertEqual(st, 201, inst)
        return inst, wait_for(inst["id"], lambda i: i["state"] == "running", "running")

    def kill(self, ref, **body):
        st, _, ans = request("POST", "/v1/instances/%s/kill" % ref, body)
        self.assertEqual(st, 202, ans)
        return wait_for(ref, lambda i: i["state"] == "exited", "exited")

    def test_default_is_10_s(self):
        inst, _ = self.run_one()
        self.assertEqual(inst["stop_grace_seconds"], 10, inst)
        done = self.kill(inst["id"], signal="TERM")
        self.assertEqual(done["exit_code"], 0, done)
        self.assertEqual(stopped_with(inst["id"], 1), 10000)

    def test_instance_grace_then_a_kill_of_its_own(self):
        inst, _ = self.run_one(stop_grace_seconds=42)
        self.assertEqual(inst["stop_grace_seconds"], 42, inst)
        self.kill(inst["id"])
        self.assertEqual(stopped_with(inst["id"], 1), 42000)
        # Started again, a kill with its own grace: that stop's only.
        st, _, body = request("POST", "/v1/instances/%s/start" % inst["id"])
        self.assertEqual(st, 202, body)
        wait_for(inst["id"], lambda i: i["state"] == "running", "running again")
        self.kill(inst["id"], signal="TERM", grace_seconds=7)
        self.assertEqual(stopped_with(inst["id"], 2), 7000)
        self.assertEqual(get(inst["id"])["stop_grace_seconds"], 42)
        st, _, body = request("POST", "/v1/instances/%s/start" % inst["id"])
        self.assertEqual(st, 202, body)
        wait_for(inst["id"], lambda i: i["state"] == "running", "running a third time")
        self.kill(inst["id"], signal="TERM")
        self.assertEqual(stopped_with(inst["id"], 3), 42000)

    def test_service_grace_reaches_its_instances(self):
        name = unique_name("grs")
        st, _, svc = request("POST", "/v1/services", {
            "name": name, "image": "hello:latest", "replicas": 1, "restart": "never",
            "stop_grace_seconds": 20})
        self.assertEqual(st, 201, svc)
        self.assertEqual(svc["stop_grace_seconds"], 20, svc)

        def one():
            st, _, body = request("GET", "/v1/instances?service=" + name)
            items = [i for i in body["items"] if i["state"] == "running"] if st == 200 else []
            return items[0] if items else None
        inst = poll(one, 30, what="a running instance of " + name)
        self.assertEqual(inst["stop_grace_seconds"], 20, inst)
        st, _, svc2 = request("PATCH", "/v1/services/" + name, {"stop_grace_seconds": 30})
        self.assertEqual(st, 200, svc2)
        self.assertEqual(svc2["stop_grace_seconds"], 30, svc2)
        self.assertEqual(svc2["generation"], svc["generation"], svc2)  # no roll-over
        wait_for(inst["id"], lambda i: i["stop_grace_seconds"] == 30,
                 "the service's new grace on its instance")
        self.assertEqual(get(inst["id"])["state"], "running")
        self.kill(inst["id"], signal="TERM")
        self.assertEqual(stopped_with(inst["id"], 1), 30000)

    def test_out_of_range_is_422(self):
        svc = {"name": unique_name("grb"), "image": "hello:latest", "replicas": 0}
        for bad in (0, 3601, -1, "10", 1.5, None):
            st, _, body = request("POST", "/v1/services", dict(svc, stop_grace_seconds=bad))
            self.assertEqual(st, 422, body)
            self.assertEqual(body["error"]["field"], "stop_grace_seconds", body)
            st, _, body = request("POST", "/v1/instances", {
                "image": "hello:latest", "stop_grace_seconds": bad})
            self.assertEqual(st, 422, body)
            self.assertEqual(body["error"]["field"], "stop_grace_seconds", body)
        st, _, body = request("POST", "/v1/instances", {
            "image": "hello:latest", "stop_grace_seconds": 3601})
        self.assertIn("between 1 and 3600", body["error"]["message"], body)
        st, _, ok = request("POST", "/v1/services", dict(svc, stop_grace_seconds=3600))
        self.assertEqual(st, 201, ok)
        st, _, body = request("PATCH", "/v1/services/" + svc["name"], {"stop_grace_seconds": 0})
        self.assertEqual(st, 422, body)
        self.assertEqual(body["error"]["field"], "stop_grace_seconds", body)
        inst, _ = self.run_one()
        for bad in ({"grace_seconds": 0}, {"grace_seconds": 3601},
                    {"grace_seconds": "5"}, {"signal": "KILL", "grace_seconds": 5}):
            st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], bad)
            self.assertEqual(st, 422, (bad, body))
            self.assertEqual(body["error"]["field"], "grace_seconds", body)
        self.assertEqual(get(inst["id"])["state"], "running")
        self.assertEqual(agent_graces(inst["id"]), [])


if __name__ == "__main__":
    import unittest
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    unittest.main()
