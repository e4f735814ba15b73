"""systemd readiness (packaging/systemd/cloud-controller.service,
Type=notify): the controller sends READY=1 to NOTIFY_SOCKET once GET
/readyz answers 200, exactly once, from its own pid, and STOPPING=1 when
SIGTERM starts its shutdown (controller/notify.c, docs/install.md). The
agent (cloud-agent.service) is ready once it runs, before any controller
answers (it must keep its guests while none does), and sends STOPPING=1
on SIGTERM.

The socket is a unix datagram socket like systemd's, with SO_PASSCRED so
the kernel says which process sent each message.
"""

import http.client
import os
import socket
import struct
import subprocess
import time
import unittest

import agentlib
import harness

READY_WAIT_S = 30.0


def setUpModule():
    harness.start(with_controller=False)


def tearDownModule():
    harness.stop()


def readyz(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/readyz")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class NotifySocket:
    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.bind(path)

    def recv(self, timeout):
        """(pid, [lines]) of the next message, or None after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            return None
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        return pid, data.decode().split("\n")

    def close(self):
        self.sock.close()
        os.unlink(self.path)


class ControllerNotify(unittest.TestCase):
    def setUp(self):
        c = harness.cluster()
        self.notify = NotifySocket(os.path.join(c.tmp, "notify.sock"))
        self.port = harness.free_port()
        self.log = open(os.path.join(c.tmp, "controller-notify.log"), "ab")
        data_dir = os.path.join(c.tmp, "ctl-notify")
        os.makedirs(data_dir, exist_ok=True)
        env = dict(os.environ, NOTIFY_SOCKET=self.notify.path)
        self.proc = subprocess.Popen(
            [c.controller_bin, "--listen", "127.0.0.1:%d" % self.port, "--db", c.db_url,
             "--data-dir", data_dir, "--agent-listen", "none", "--no-reconcile"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            cwd=c.tmp, env=env, preexec_fn=harness._die_with_parent)

    def tearDown(self):
        if self.proc.poll() is None:
            harness.terminate(self.proc, "cloud-controller")
        self.log.close()
        self.notify.close()

    def log_tail(self):
        with open(self.log.name, "rb") as f:
            return f.read()[-4000:].decode(errors="replace")

    def wait_for(self, key, deadline):
        """Messages up to the first with the line key; fails without one."""
        seen = []
        while time.monotonic() < deadline:
            m = self.notify.recv(max(0.1, deadline - time.monotonic()))
            if m is None:
                break
            seen.append(m)
            if key in m[1]:
                return seen
        self.fail("no %s on NOTIFY_SOCKET within the time; got %r; log:\n%s"
                  % (key, seen, self.log_tail()))

    def test_ready_once_serving_then_stopping(self):
        seen = self.wait_for("READY=1", time.monotonic() + READY_WAIT_S)
        # Ready means ready: /readyz answers 200 at once, not later.
        status, body = readyz(self.port)
        self.assertEqual(status, 200, body)
        for pid, lines in seen:
            self.assertEqual(pid, self.proc.pid, "message %r from pid %s" % (lines, pid))
        ready = [lines for _, lines in seen if "READY=1" in lines][0]
        self.assertIn("STATUS=serving the API on http://127.0.0.1:%d" % self.port, ready)
        # Once: nothing more while it serves.
        self.assertIsNone(self.notify.recv(0.5))

        self.proc.send_signal(15)
        seen = self.wait_for("STOPPING=1", time.monotonic() + 10)
        self.assertFalse([m for m in seen if "READY=1" in m[1]], seen)
        self.assertEqual(self.proc.wait(timeout=15), 0, self.log_tail())


class AgentNotify(unittest.TestCase):
    def test_ready_while_no_controller_answers_then_stopping(self):
        c = harness.cluster()
        self.notify = NotifySocket(os.path.join(c.tmp, "agent-notify.sock"))
        self.addCleanup(self.notify.close)
        # Its controller is not up yet: the agent is ready all the same.
        port = harness.free_port()
        agent = agentlib.Agent(c, "sdn-agent", cap_vcpus=2, cap_memory=2048,
                               controllers=["127.0.0.1:%d" % port],
                               env={"NOTIFY_SOCKET": self.notify.path}).start()
        self.addCleanup(agent.stop)
        m = self.notify.recv(READY_WAIT_S)
        self.assertIsNotNone(m, "no READY=1 from the agent; log:\n%s" % agent.messages()[-20:])
        pid, lines = m
        self.assertEqual(pid, agent.proc.pid)
        self.assertIn("READY=1", lines)
        self.assertIn("STATUS=connecting to 127.0.0.1:%d" % port, lines)
        agent.proc.send_signal(15)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = self.notify.recv(deadline - time.monotonic())
            self.assertIsNotNone(m, "no STOPPING=1 from the agent")
            if "STOPPING=1" in m[1]:
                break
        self.assertEqual(m[0], agent.proc.pid)


if __name__ == "__main__":
    unittest.main()
