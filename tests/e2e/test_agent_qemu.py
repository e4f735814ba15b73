"""End to end: controller + PostgreSQL + cloud-agent on real libvirtd + QEMU.

The sample image (images/build-sample.sh) is registered as an image whose
blobs the agent finds in its --images directory (named by digest; fetching
them over the agent link is test_blobfetch_qemu.py). Then, through the REST API:
  - an instance runs (QEMU/TCG where KVM is unusable) and boots: the marker
    appears on its console log, and GET /v1/instances/{id}/logs returns it;
  - kill -s KILL destroys it: exited with code 137;
  - an instance whose guest powers off by itself (cloud.exit=0): exited 0;
  - re-adoption: the agent is killed with SIGKILL, the guests keep running,
    one instance is deleted meanwhile; the restarted agent reports in with a
    new session, keeps the survivor running (same domain) and removes the
    domain the controller no longer wants.

Starts virtlogd/libvirtd if they are not running and stops only those.
Exit code 77 (ctest skip) when QEMU or libvirtd is missing (a failure under CI;
e2elib.main).
"""

import os
import re
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import e2elib  # noqa: E402
import harness  # noqa: E402
from e2elib import virsh  # noqa: E402
from harness import poll, request  # noqa: E402

IMAGE = "sample:e2e"
AGENT = None


def setUpModule():
    global AGENT
    AGENT = e2elib.start_module("e2e-host", IMAGE)


def tearDownModule():
    e2elib.teardown(AGENT)


def place(inst_id):
    """Waits for the reconciler to place the instance (fails otherwise)."""
    poll(lambda: harness.psql("SELECT host_id IS NOT NULL FROM instances WHERE id = '%s'"
                              % inst_id) == "t", 30, what="placement by the reconciler")


def run(args=None):
    inst = e2elib.run_instance(IMAGE, "e2e", args)
    place(inst["id"])
    return inst


wait_state = e2elib.wait_state


def console(inst_id):
    return e2elib.console(AGENT, inst_id)


class QemuTest(harness.TestCase):

    def test_1_run_then_kill_KILL_exits_137(self):
        inst = run()
        wait_state(inst["id"], "running", 60)
        self.assertEqual(virsh("domstate", "cloud-" + inst["id"]).stdout.strip(), "running")
        poll(lambda: "CLOUD-SAMPLE-BOOTED" in console(inst["id"]), 120, interval=1,
             what="the boot marker on the console")
        # The same console through the API (agent -> gateway -> HTTP).
        st, _, text = request("GET", "/v1/instances/%s/logs" % inst["id"])
        self.assertEqual(st, 200, text)
        self.assertIn("CLOUD-SAMPLE-BOOTED", text)
        st, _, text = request("GET", "/v1/instances/%s/logs?tail=1000" % inst["name"])
        self.assertEqual(st, 200, text)
        self.assertIn("CLOUD-SAMPLE-BOOTED", text)
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "KILL"})
        self.assertEqual(st, 202, body)
        wait_state(inst["id"], "exited", 60, exit_code=137)
        self.assertEqual(virsh("domstate", "cloud-" + inst["id"]).stdout.strip(), "shut off")

    def test_2_guest_poweroff_exits_0(self):
        inst = run(["cloud.exit=0"])
        done = wait_state(inst["id"], "exited", 180, exit_code=0)
        self.assertIsNone(done["reason"], done)

    def test_3_readopt_after_agent_sigkill(self):
        c = harness.cluster()
        inst = run()
        survivor = run()
        wait_state(inst["id"], "running", 60)
        wait_state(survivor["id"], "running", 60)
        domid = virsh("domid", "cloud-" + survivor["id"]).stdout.strip()
        epoch = int(c.psql("SELECT session_epoch FROM hosts WHERE name = 'e2e-host'"))
        AGENT.kill(signal.SIGKILL)
        # The guest does not depend on its agent.
        time.sleep(2)
        self.assertEqual(virsh("domstate", "cloud-" + inst["id"]).stdout.strip(), "running")
        keep = run()  # placed on the host while its agent is away
        st, _, body = request("DELETE", "/v1/instances/" + inst["id"])
        self.assertEqual(st, 202, body)
        AGENT.start()
        poll(lambda: int(c.psql("SELECT session_epoch FROM hosts WHERE name = 'e2e-host'")) > epoch,
             60, what="a new session")
        # The deleted instance's domain is stopped and undefined ...
        poll(lambda: request("GET", "/v1/instances/" + inst["id"])[0] == 404, 90, interval=0.5,
             what="the deleted instance to go")
        self.assertNotEqual(virsh("dominfo", "cloud-" + inst["id"]).returncode, 0)
        # ... the one placed meanwhile runs, and the survivor was re-adopted,
        # not restarted (same QEMU domain id).
        wait_state(keep["id"], "running", 60)
        wait_state(survivor["id"], "running", 10)
        self.assertEqual(virsh("domid", "cloud-" + survivor["id"]).stdout.strip(), domid)
        with open(c.ctl_log) as f:
            hellos = [l for l in f.read().splitlines() if "e2e-host: Hello" in l]
        found = re.search(r"(\d+) instances found", hellos[-1])
        self.assertGreaterEqual(int(found.group(1)), 2, hellos[-1])


if __name__ == "__main__":
    e2elib.main()
