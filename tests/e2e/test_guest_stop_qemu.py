"""End to end, how a real guest ends: controller (reconciler on) +
PostgreSQL + one cloud-agent on real libvirtd + QEMU (TCG) with the sample
image (images/build-sample.sh), through the REST API only:
  - kill -s TERM: the agent's ACPI shutdown reaches the guest's power
    button (busybox acpid), which powers off cleanly: exited 0 with no
    reason, well before the 10 s grace period (143 would mean the guest
    ignored it and was destroyed);
  - kill -s TERM with grace_seconds 60 on a guest that ignores the button
    (cloud.acpi=off) is still running after the default 10 s, and is
    destroyed after its 60 s: 143;
  - a guest kernel panic (config key PANIC=now makes the guest write c to
    /proc/sysrq-trigger): QEMU's pvpanic device tells libvirt, on_crash
    destroy ends the domain with reason crashed, and the instance is
    exited 1 with reason "the guest crashed".

Run it under `flock /tmp/cloud-e2e-dev.lock` (it may start libvirtd).
Exit code 77 (ctest skip) when QEMU or libvirtd is missing (a failure under CI;
e2elib.main).
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import e2elib  # noqa: E402
import harness  # noqa: E402
from e2elib import virsh  # noqa: E402
from harness import poll, request, unique_name  # noqa: E402

IMAGE = "sample:e2e"
HOST = "gstop-host"
AGENT = None


def setUpModule():
    global AGENT
    AGENT = e2elib.start_module(HOST, IMAGE)


def tearDownModule():
    e2elib.teardown(AGENT)


def console(inst_id):
    return e2elib.console(AGENT, inst_id)


get = e2elib.get


def wait_fields(ref, timeout, **want):
    return e2elib.wait_fields(AGENT, ref, timeout, interval=0.2, **want)


def run_ready(tc, args=()):
    """A one-off sample guest, booted until it said ready on its channel
    (its acpid runs from before that)."""
    st, _, inst = request("POST", "/v1/instances", {
        "image": IMAGE, "name": unique_name("gstop"), "args": list(args),
        "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}})
    tc.assertEqual(st, 201, inst)
    wait_fields(inst["id"], 240, state="running", ready=True)
    return inst


class GuestStopTest(harness.TestCase):

    def test_1_term_powers_off_cleanly_before_the_grace(self):
        inst = run_ready(self)
        t0 = time.monotonic()
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "TERM"})
        self.assertEqual(st, 202, body)
        done = wait_fields(inst["id"], 60, state="exited")
        took = time.monotonic() - t0
        sys.stderr.write("[e2e] kill -s TERM -> exited %s in %.1f s\n" % (done["exit_code"], took))
        self.assertEqual((done["exit_code"], done["reason"]), (0, None), done)
        self.assertLess(took, 8.0, "the clean poweroff took %.1f s of the 10 s grace" % took)
        self.assertIn("CLOUD-POWER-BUTTON", console(inst["id"]))

    def test_2_term_grace_from_the_kill(self):
        # cloud.acpi=off: the guest starts no acpid and ignores the button.
        inst = run_ready(self, ["cloud.acpi=off"])
        t0 = time.monotonic()
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"],
                              {"signal": "TERM", "grace_seconds": 25})
        self.assertEqual(st, 202, body)
        # Past the default 10 s it still runs (the agent waits 25 s).
        wait_fields(inst["id"], 10, state="stopping")
        time.sleep(max(0.0, 15.0 - (time.monotonic() - t0)))
        now = get(inst["id"])
        self.assertEqual(now["state"], "stopping", "%r\nconsole:\n%s\nagent:\n%s" % (
            now, console(inst["id"])[-2000:], AGENT.log_tail(30)))
        done = wait_fields(inst["id"], 60, state="exited")
        took = time.monotonic() - t0
        sys.stderr.write("[e2e] kill -s TERM grace 25 s, button ignored -> exited %s in %.1f s\n"
                         % (done["exit_code"], took))
        self.assertEqual(done["exit_code"], 143, done)
        self.assertGreaterEqual(took, 24.0, done)
        self.assertNotIn("CLOUD-POWER-BUTTON", console(inst["id"]))

    def test_3_kernel_panic_is_a_crash(self):
        name = unique_name("gpanic")
        self.assertStatus(request("POST", "/v1/services", {
            "name": name, "image": IMAGE, "replicas": 1, "restart": "never",
            "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}}), 201)

        def one():
            st, _, body = request("GET", "/v1/instances?service=" + name)
            return body["items"][0] if st == 200 and body["items"] else None
        inst = poll(one, 60, interval=0.5, what="an instance of " + name)
        wait_fields(inst["id"], 240, state="running", ready=True)
        st, _, cfg = request("PUT", "/v1/services/%s/config" % name, {"config": {"PANIC": "now"}})
        self.assertEqual(st, 200, cfg)
        done = wait_fields(inst["id"], 120, state="exited")
        self.assertEqual((done["exit_code"], done["reason"]), (1, "the guest crashed"), done)
        out = console(inst["id"])
        self.assertIn("CLOUD-PANIC", out)
        self.assertIn("Kernel panic", out)
        # libvirt saw the crash (pvpanic), not a poweroff or a destroy.
        r = virsh("domstate", "--reason", "cloud-" + inst["id"])
        self.assertIn("crashed", r.stdout, r)


if __name__ == "__main__":
    e2elib.main()
