"""`cloud-controller --dev` (issue 16): the dev cluster supervises the local
agent it starts, and says what to do when its PostgreSQL cannot reach the
data directory.

Supervision: the local agent is killed with SIGKILL twice; each time the
controller reaps it (no zombie), logs how it ended, restarts it after the
back-off (1 s, then 2 s) and the host registers again and is ready. The
agent uses libvirt's test driver (--agent-connect test:///default), so no
libvirtd is started and the test runs beside the QEMU ones.

The data directory: as root, a --data-dir under a mktemp -d folder (0700,
closed to the postgres user) fails at once with one line naming that folder
and the chmod that opens it, before initdb runs.

Environment: CLOUD_CONTROLLER, CLOUD_AGENT (set by ctest). Runs as root
(CI does): dev mode's PostgreSQL then runs as the postgres user.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from harness import _die_with_parent, free_port, poll, terminate

CONTROLLER = os.environ.get("CLOUD_CONTROLLER")
AGENT = os.environ.get("CLOUD_AGENT")


def proc_status(pid):
    """/proc/<pid>/status as a dict, or None when there is no such process."""
    try:
        with open("/proc/%d/status" % pid) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError):
        return None


def zombie_children(ppid):
    """Pids of the zombies whose parent is ppid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        st = proc_status(int(d))
        if st and st.get("PPid") == str(ppid) and st.get("State", "").startswith("Z"):
            out.append(int(d))
    return out


class DevModeBase(unittest.TestCase):
    def setUp(self):
        self.assertTrue(CONTROLLER and os.access(CONTROLLER, os.X_OK),
                        "CLOUD_CONTROLLER must name the cloud-controller binary")
        self.assertTrue(AGENT and os.access(AGENT, os.X_OK),
                        "CLOUD_AGENT must name the cloud-agent binary")
        self.assertEqual(os.geteuid(), 0, "dev mode's PostgreSQL checks need root (CI runs as root)")
        self.tmp = tempfile.mkdtemp(prefix="cloud-devmode-")
        self.proc = None

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc, "cloud-controller --dev", timeout=30)
        if os.environ.get("CLOUD_ITEST_KEEP") != "1":
            shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self):
        env = dict(os.environ)
        env["HOME"] = self.tmp  # the CLI context goes here, not to root's home
        env["XDG_CONFIG_HOME"] = os.path.join(self.tmp, "config")
        return env


class TestSupervisedAgent(DevModeBase):
    def setUp(self):
        super().setUp()
        os.chmod(self.tmp, 0o755)  # the postgres user must reach the data dir
        self.data = os.path.join(self.tmp, "data")
        self.http_port = free_port()
        self.log_path = os.path.join(self.tmp, "controller.log")
        self.log_file = open(self.log_path, "w")
        self.out_file = open(os.path.join(self.tmp, "controller.out"), "w")
        self.proc = subprocess.Popen(
            [CONTROLLER, "--dev", "--data-dir", self.data,
             "--listen", "127.0.0.1:%d" % self.http_port,
             "--agent-listen", "127.0.0.1:%d" % free_port(),
             "--agent-bin", AGENT, "--agent-connect", "test:///default",
             "--no-sample-image"],
            stdin=subprocess.DEVNULL, stdout=self.out_file, stderr=self.log_file,
            env=self.env(), preexec_fn=_die_with_parent)

    def tearDown(self):
        super().tearDown()
        self.log_file.close()
        self.out_file.close()

    def lines(self):
        """The controller's log: JSON lines (stderr is a file)."""
        with open(self.log_path) as f:
            return [json.loads(line) for line in f if line.startswith("{")]

    def log_text(self):
        with open(self.log_path) as f:
            return f.read()

    def find(self, pattern, after=0):
        """The first match of pattern in a dev-module line from index after
        on, as (index, line, match), or None."""
        for i, line in enumerate(self.lines()[after:], start=after):
            m = re.search(pattern, line["msg"])
            if m and line["module"] == "dev":
                return i, line, m
        return None

    def wait_log(self, pattern, after=0, timeout=20):
        def look():
            if self.proc.poll() is not None:
                self.fail("the controller exited:\n" + self.log_text())
            return self.find(pattern, after)
        return poll(look, timeout, what="a dev log line matching %r" % pattern)

    def host(self):
        with open(os.path.join(self.data, "admin-token")) as f:
            token = f.read().strip()
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=5)
        try:
            conn.request("GET", "/v1/hosts", headers={"Authorization": "Bearer " + token})
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        self.assertEqual(resp.status, 200, body)
        items = json.loads(body)["items"]
        self.assertEqual(len(items), 1, items)
        return items[0]

    def ready_after(self, epoch):
        """Waits for the host to be ready in a session newer than epoch."""
        def look():
            h = self.host()
            return h if h["state"] == "ready" and h["session_epoch"] > epoch else None
        return poll(look, 20, interval=0.2, what="the host ready after session %d" % epoch)

    def kill_and_check_restart(self, pid, after, backoff):
        """SIGKILLs agent pid; checks it is reaped, the reason and the
        back-off are logged and a new agent is a child of the controller.
        Returns (new pid, log index)."""
        os.kill(pid, signal.SIGKILL)
        i, died, _ = self.wait_log(
            r"^local agent \(pid %d\) was killed by signal 9 \(SIGKILL\) after running \d+ s; "
            r"restarting it in %d s$" % (pid, backoff), after)
        self.assertEqual(died["level"], "warn")
        # reaped: the old pid is gone, or (reused) not a zombie of ours
        st = proc_status(pid)
        self.assertTrue(st is None or not (st.get("PPid") == str(self.proc.pid)
                                            and st.get("State", "").startswith("Z")),
                        "agent %d left a zombie: %r" % (pid, st))
        j, back, m = self.wait_log(r"^local agent \S+ restarted \(pid (\d+), restart \d+, log ", i,
                                   timeout=backoff + 10)
        new = int(m.group(1))
        self.assertNotEqual(new, pid)
        # not before the back-off: the two lines' times are backoff s apart
        t0 = time.strptime(died["time"][:19], "%Y-%m-%dT%H:%M:%S")
        t1 = time.strptime(back["time"][:19], "%Y-%m-%dT%H:%M:%S")
        gap = (time.mktime(t1) + float(back["time"][19:23])) - \
              (time.mktime(t0) + float(died["time"][19:23]))
        self.assertGreaterEqual(gap, backoff - 0.05, (died, back))
        self.assertLess(gap, backoff + 2, (died, back))
        st = proc_status(new)
        self.assertIsNotNone(st, "the restarted agent %d is not running" % new)
        self.assertEqual(st["PPid"], str(self.proc.pid), st)
        self.assertFalse(st["State"].startswith("Z"), st)
        return new, j

    def test_killed_agent_is_reaped_and_restarted(self):
        started = time.monotonic()
        i, _, m = self.wait_log(r"^local agent \S+ started \(pid (\d+), log ", timeout=40)
        pid = int(m.group(1))
        first = poll(lambda: (lambda h: h if h["state"] == "ready" else None)(self.host()),
                     20, interval=0.2, what="the dev host ready")
        self.assertEqual(first["labels"].get("dev"), "true", first)

        pid2, i = self.kill_and_check_restart(pid, i, backoff=1)
        second = self.ready_after(first["session_epoch"])
        self.assertEqual(second["id"], first["id"])

        # killed again within 60 s of its start: the back-off doubles
        pid3, i = self.kill_and_check_restart(pid2, i, backoff=2)
        self.ready_after(second["session_epoch"])
        self.assertEqual(zombie_children(self.proc.pid), [])

        # Ctrl-C / SIGTERM stops the restarted agent too, and nothing restarts it
        self.assertEqual(terminate(self.proc, "cloud-controller --dev", timeout=30), 0,
                         self.log_text()[-3000:])
        self.assertIsNone(proc_status(pid3), "the local agent outlived the controller")
        self.assertIsNotNone(self.find(r"^local agent stopped$", i))
        self.assertIsNone(self.find(r"restarting it in", i))
        self.assertLess(time.monotonic() - started, 60)


class TestDataDirClosedToPostgres(DevModeBase):
    def test_unreachable_data_dir_is_named_with_the_fix(self):
        closed = tempfile.mkdtemp(dir=self.tmp)  # mode 0700, owner root
        os.chmod(self.tmp, 0o755)
        self.assertEqual(os.stat(closed).st_mode & 0o777, 0o700)
        data = os.path.join(closed, "dev")
        t0 = time.monotonic()
        r = subprocess.run(
            [CONTROLLER, "--dev", "--data-dir", data, "--listen", "127.0.0.1:%d" % free_port(),
             "--agent-listen", "none", "--no-sample-image"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, env=self.env(),
            timeout=30, preexec_fn=_die_with_parent)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertLess(time.monotonic() - t0, 10)
        errors = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
        errors = [e for e in errors if e["level"] == "error"]
        self.assertEqual(len(errors), 1, r.stderr)
        self.assertEqual(
            errors[0]["msg"],
            "%s is not searchable by user postgres (mode 0700, owner root), so the private "
            "PostgreSQL cannot reach %s/pg; use a --data-dir that user can reach (the default "
            "/var/lib/cloud/dev), or chmod o+x %s" % (closed, data, closed))
        # said before initdb ran: no cluster was made
        self.assertFalse(os.path.exists(os.path.join(data, "pg", "PG_VERSION")))

        # The fix it names works: with o+x the same run gets past the check
        # and initdb (it then stops, as meant, on an API port already taken).
        os.chmod(closed, 0o701)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            r = subprocess.run(
                [CONTROLLER, "--dev", "--data-dir", data,
                 "--listen", "127.0.0.1:%d" % s.getsockname()[1],
                 "--agent-listen", "none", "--no-sample-image"],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, env=self.env(),
                timeout=60, preexec_fn=_die_with_parent)
        self.assertNotIn("is not searchable", r.stderr)
        self.assertTrue(os.path.exists(os.path.join(data, "pg", "PG_VERSION")), r.stderr)


if __name__ == "__main__":
    unittest.main()
