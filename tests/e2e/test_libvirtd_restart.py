"""End to end: the agent survives a libvirtd restart.

A controller (with the reconciler) and one cloud-agent on qemu:///system;
a sample-image guest runs. Then libvirtd is killed (SIGTERM) and started
again with `libvirtd -d`, the way tests/e2e/boot_sample.sh and the dev mode
start it. Checked:
  - the guest keeps running: the same QEMU process (pid file and /proc),
    the same domain id, and the instance stays `running` in the API;
  - the agent notices (log "lost the libvirt connection"), reconnects (a
    second "connected to libvirt" line) and registers its libvirt event
    callbacks again: a domain destroyed behind its back is reported through
    a lifecycle event (debug log line "lifecycle event") as exited 137;
  - instance operations work afterwards: a TERM stop ends with an exit code
    (0 when the sample guest's acpid answers the power button; 143 after
    the grace period if the guest was not that far in its boot) and the QEMU process is gone; a new instance
    starts and boots.

Must run under `flock /tmp/cloud-libvirt.lock` (other tests start and stop
libvirtd too). Starts virtlogd/libvirtd if they are not running, leaves
libvirtd running if it was running before, stops only what it started.
Exit code 77 (ctest skip) when QEMU or libvirtd is missing or not root (a
failure under CI; e2elib.main).
"""

import os
import signal
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import e2elib  # noqa: E402
import harness  # noqa: E402
from e2elib import virsh  # noqa: E402
from harness import poll, request  # noqa: E402

HOST = "e2e-lvrestart"
IMAGE = "sample:lvrestart"
STARTED = {}  # daemon -> True if this test started it
AGENT = None


def read_pid(pidfile):
    try:
        with open(pidfile) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid):
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def start_daemon(daemon, pidfile):
    subprocess.run([daemon, "-d"], check=True)
    poll(lambda: pid_alive(read_pid(pidfile)), 10, what=daemon + " to start")


def ensure_libvirtd():
    for daemon, pidfile in (("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")):
        if not pid_alive(read_pid(pidfile)):
            start_daemon(daemon, pidfile)
            STARTED[daemon] = True
    poll(lambda: virsh("version").returncode == 0, 30, what="libvirtd to answer")


def restart_libvirtd():
    pid = read_pid("/run/libvirtd.pid")
    assert pid_alive(pid), "libvirtd is not running"
    os.kill(pid, signal.SIGTERM)
    poll(lambda: not pid_alive(pid), 30, what="libvirtd to exit")
    start_daemon("libvirtd", "/run/libvirtd.pid")
    poll(lambda: virsh("version").returncode == 0, 30, what="the new libvirtd to answer")
    return pid, read_pid("/run/libvirtd.pid")


def setUpModule():
    global AGENT
    ensure_libvirtd()
    c = harness.start(reconcile=True)
    images = e2elib.add_sample_image(c, IMAGE)
    AGENT = e2elib.start_agent(c, HOST, images=images, extra=("--verbose",),
                               what="the agent to register")


def tearDownModule():
    e2elib.stop_agent_and_guests(AGENT)
    harness.stop()
    # By pid file, not by the pid seen at start: libvirtd was restarted.
    for daemon, pidfile in (("libvirtd", "/run/libvirtd.pid"), ("virtlogd", "/run/virtlogd.pid")):
        if STARTED.get(daemon):
            pid = read_pid(pidfile)
            if pid_alive(pid):
                os.kill(pid, signal.SIGTERM)


def run(args=None):
    return e2elib.run_instance(IMAGE, "lvr", args)


def wait_state(ref, state, timeout, **fields):
    return e2elib.wait_state(ref, state, timeout, interval=0.2, **fields)


def agent_log():
    with open(AGENT.log, "rb") as f:
        return f.read().decode("utf-8", "replace")


def qemu_pid(inst_id):
    return read_pid("/run/libvirt/qemu/cloud-%s.pid" % inst_id)


def console(inst_id):
    return e2elib.console(AGENT, inst_id)


class LibvirtdRestartTest(harness.TestCase):

    def test_restart_is_survived(self):
        inst = run()
        wait_state(inst["id"], "running", 90)
        dom = "cloud-" + inst["id"]
        poll(lambda: "CLOUD-SAMPLE-BOOTED" in console(inst["id"]), 120, interval=1,
             what="the boot marker on the console")
        qpid = qemu_pid(inst["id"])
        self.assertTrue(pid_alive(qpid), "no QEMU pid for %s" % dom)
        domid = virsh("domid", dom).stdout.strip()
        connects = agent_log().count("connected to libvirt at")
        self.assertEqual(connects, 1, AGENT.log_tail())

        old, new = restart_libvirtd()
        self.assertNotEqual(old, new)

        # The agent notices and reconnects.
        poll(lambda: "lost the libvirt connection" in agent_log(), 30, interval=0.2,
             what="the agent to notice the restart")
        poll(lambda: agent_log().count("connected to libvirt at") == connects + 1, 60,
             interval=0.2, what="the agent to reconnect")

        # The guest kept running: same QEMU process, same domain.
        self.assertEqual(qemu_pid(inst["id"]), qpid)
        self.assertTrue(pid_alive(qpid))
        self.assertEqual(virsh("domstate", dom).stdout.strip(), "running")
        self.assertEqual(virsh("domid", dom).stdout.strip(), domid)
        wait_state(inst["id"], "running", 5)

        # Event callbacks are registered on the new connection: a destroy
        # behind the agent's back arrives as a lifecycle event.
        victim = run()
        wait_state(victim["id"], "running", 90)
        mark = len(agent_log())
        self.assertEqual(virsh("destroy", "cloud-" + victim["id"]).returncode, 0)
        done = wait_state(victim["id"], "exited", 30, exit_code=137)
        self.assertIn("destroyed outside the agent", done["reason"] or "", done)
        self.assertIn("domain cloud-%s: lifecycle event" % victim["id"], agent_log()[mark:],
                      AGENT.log_tail())

        # A TERM stop: the sample guest powers off on the ACPI button (0);
        # one still booting (no acpid yet) is destroyed after the grace (143).
        # test_guest_stop_qemu checks each case on its own.
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "TERM"})
        self.assertEqual(st, 202, body)
        done = wait_state(inst["id"], "exited", 60)
        self.assertIn(done["exit_code"], (0, 143), done)
        self.assertEqual(virsh("domstate", dom).stdout.strip(), "shut off")
        self.assertFalse(pid_alive(qpid))

        # A new instance starts and boots.
        fresh = run()
        wait_state(fresh["id"], "running", 90)
        poll(lambda: "CLOUD-SAMPLE-BOOTED" in console(fresh["id"]), 120, interval=1,
             what="the new instance's boot marker")
        self.assertEqual(agent_log().count("connected to libvirt at"), connects + 1,
                         AGENT.log_tail())


if __name__ == "__main__":
    e2elib.main()
