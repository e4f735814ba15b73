"""Process life cycle through the API, with a real agent on libvirt's test
driver and the reconciler: run, kill, start again, restart a running one.

start: an ended instance runs again (pending, placed anew, running).
restart: a running instance is stopped (TERM) and runs again once it has
ended, under the same id and name, with restart_count counting the run.
"""

import agentlib
import harness
from agentlib import wait_instance as wait_for
from harness import poll, request, unique_name

MODULE = agentlib.ModuleAgent("lc1")
setUpModule = MODULE.set_up
tearDownModule = MODULE.tear_down


def running(i):
    return i["state"] == "running"


class LifecycleTests(harness.TestCase):
    def run_one(self):
        st, _, inst = request("POST", "/v1/instances", {"image": "hello:latest",
                                                         "name": unique_name("lc")})
        self.assertEqual(st, 201, inst)
        return wait_for(inst["id"], running, "running")

    def test_kill_then_start(self):
        inst = self.run_one()
        self.assertEqual(request("POST", "/v1/instances/%s/kill" % inst["id"],
                                 {"signal": "KILL"})[0], 202)
        ended = wait_for(inst["id"], lambda i: i["state"] == "exited", "exited")
        self.assertEqual(ended["exit_code"], 137)
        # a stopping or running instance cannot be started; an ended one can
        st, _, body = request("POST", "/v1/instances/%s/start" % inst["id"])
        self.assertEqual(st, 202, body)
        self.assertEqual((body["state"], body["desired_state"], body["exit_code"]),
                         ("pending", "running", None))
        again = wait_for(inst["id"], running, "running again")
        self.assertEqual((again["id"], again["name"]), (inst["id"], inst["name"]))
        self.assertEqual(again["restart_count"], inst["restart_count"] + 1)
        st, _, body = request("POST", "/v1/instances/%s/start" % inst["id"])
        self.assertEqual(st, 200, body)  # already running: nothing to do

    def test_restart_a_running_instance(self):
        inst = self.run_one()
        st, _, body = request("POST", "/v1/instances/%s/restart" % inst["name"])
        self.assertEqual(st, 202, body)
        self.assertEqual(body["desired_state"], "stopped")
        again = wait_for(inst["id"], lambda i: running(i) and
                         i["restart_count"] == inst["restart_count"] + 1,
                         "running again after the restart", timeout=60)
        self.assertEqual(again["desired_state"], "running")
        st, _, page = request("GET", "/v1/events?type=instance.restart&limit=1000")
        self.assertIn(inst["name"], [e["name"] for e in page["items"]])

    def test_start_errors(self):
        self.assertError(request("POST", "/v1/instances/%s/start" % unique_name("nope")),
                         404, "not_found")
        inst = self.run_one()
        self.assertEqual(request("POST", "/v1/instances/%s/kill" % inst["id"],
                                 {"signal": "TERM"})[0], 202)
        # While it stops, start is refused; once it has ended, it works.
        # (The test driver may have ended it before the start arrives.)
        st, _, body = request("POST", "/v1/instances/%s/start" % inst["id"])
        if st == 409:
            self.assertIn("stopping", body["error"]["message"])
            wait_for(inst["id"], lambda i: i["state"] in ("exited", "failed"), "ended", 60)
            st, _, body = request("POST", "/v1/instances/%s/start" % inst["id"])
        self.assertEqual(st, 202, body)
        self.assertEqual((body["state"], body["desired_state"]), ("pending", "running"))
