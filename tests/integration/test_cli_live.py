"""cloudctl following live changes: `endpoints -w` while a service's
instances come up, get addresses and scale down, on a real cloud-agent
(libvirt's test driver, guest channels on: test_config.agent_with_guests)
whose instances' guest end (guestpeer.py) reports the addresses the test
sets, and `config watch` during changes. The rest of the CLI is in
test_cli.sh; this module needs the agent the shell test has not got.
"""

import json
import os
import queue
import subprocess
import tempfile
import threading
import unittest

import harness
from harness import poll, request, unique_name
from test_config import GuestAgentCase, instances_of, service

CLOUDCTL = os.environ.get("CLOUDCTL")


def setUpModule():
    if not CLOUDCTL:
        raise unittest.SkipTest("CLOUDCTL is not set")
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")


def tearDownModule():
    harness.stop()


def cli_env():
    c = harness.cluster()
    env = dict(os.environ)
    env.update({"CLOUD_URL": "http://127.0.0.1:%d" % c.http_port,
                "CLOUD_TOKEN": c.token,
                "XDG_CONFIG_HOME": tempfile.mkdtemp(prefix="cloudctl-cfg-"),
                "NO_COLOR": "1"})
    return env


def cloudctl(*args):
    p = subprocess.run([CLOUDCTL] + list(args), env=cli_env(), capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


class Follower:
    """A cloudctl that follows (endpoints -w, config watch): its stdout
    lines arrive on a queue."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([CLOUDCTL] + list(args), env=cli_env(),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pred, timeout):
        deadline = harness.time.monotonic() + timeout
        while True:
            left = deadline - harness.time.monotonic()
            if left <= 0:
                raise AssertionError("no matching line in %.0fs; saw %r" % (timeout, self.seen))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if pred(line):
                return line

    def stop(self):
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err


class CliLiveTest(GuestAgentCase):
    AGENT, MEMORY, GUEST_CLEAN = "cl", 16384, False

    def running(self, svc, n):
        def ok():
            got = [i for i in instances_of(svc) if i["state"] == "running"]
            return got if len(got) == n else None
        return poll(ok, 30, what="%d running instances of %s" % (n, svc))

    def test_endpoints_follow_scale_up_and_down(self):
        db = unique_name("db")
        service(self, name=db, replicas=2, ports=[{"name": "pg", "port": 5432}],
                labels={"role": "db"})
        dis = sorted(self.running(db, 2), key=lambda i: i["name"])
        # Inherited labels select the service's instances.
        rc, out, err = cloudctl("ps", "-l", "role=db", "-o", "name")
        self.assertEqual((rc, sorted(out.split())), (0, [i["name"] for i in dis]), err)

        js = Follower("endpoints", db, "-w", "-o", "json")
        table = Follower("endpoints", db, "-w")
        try:
            first = json.loads(js.wait_for(lambda l: l.startswith("{"), 10))
            self.assertEqual((first["service"], first["endpoints"]), (db, []))
            table.wait_for(lambda l: l == "NAME   ADDR", 10)

            self.guest.set_guest(dis[0]["id"], addresses=["10.0.0.5"])
            self.guest.set_guest(dis[1]["id"], addresses=["10.0.0.6:6000"])
            two = json.loads(js.wait_for(
                lambda l: len(json.loads(l)["endpoints"]) == 2, 15))
            self.assertEqual([e["addr"] for e in two["endpoints"]],
                             ["10.0.0.5:5432", "10.0.0.6:6000"])
            self.assertGreater(two["version"], first["version"])
            # The table form reprints the whole list under its version.
            table.wait_for(lambda l: l == "%s: endpoints version %d" % (db, two["version"]), 15)
            rows = [table.wait_for(lambda l: l.startswith(n + " "), 5)
                    for n in (dis[0]["name"], dis[1]["name"])]
            self.assertEqual([r.split() for r in rows],
                             [[dis[0]["name"], "10.0.0.5:5432"],
                              [dis[1]["name"], "10.0.0.6:6000"]])

            rc, out, err = cloudctl("endpoints", db)
            self.assertEqual(rc, 0, err)
            self.assertEqual([l.split() for l in out.splitlines()],
                             [["NAME", "ADDR"],
                              [dis[0]["name"], "10.0.0.5:5432"],
                              [dis[1]["name"], "10.0.0.6:6000"]])
            rc, out, err = cloudctl("endpoints", db, "-o", "name")
            self.assertEqual(out.split(), ["10.0.0.5:5432", "10.0.0.6:6000"])

            # Scale down: the follower shows the shorter list.
            rc, out, err = cloudctl("scale", db + "=1")
            self.assertEqual(rc, 0, err)
            one = json.loads(js.wait_for(
                lambda l: len(json.loads(l)["endpoints"]) == 1, 30))
            self.assertGreater(one["version"], two["version"])
        finally:
            err_js = js.stop()
            err_table = table.stop()
        self.assertEqual(err_js, "")
        self.assertEqual(err_table, "")

    def test_config_watch_and_link(self):
        web = unique_name("web")
        db = unique_name("db")
        rc, out, err = cloudctl("run", "--name", web, "--replicas", "1", "--link", db,
                                "-l", "app=" + web, "hello:latest")
        self.assertEqual((rc, out.strip()), (0, web), err)
        st, _, s = request("GET", "/v1/services/" + web)
        self.assertEqual((s["links"], s["labels"]), ([db], {"app": web}))
        w = Follower("config", "watch", web, "-o", "json")
        try:
            first = json.loads(w.wait_for(lambda l: l.startswith("{"), 10))
            self.assertEqual((first["version"], first["config"]), (0, {}))
            for i in range(1, 4):
                rc, out, err = cloudctl("config", "set", web, "N=%d" % i)
                self.assertEqual((rc, out.strip()), (0, "%s: config version %d" % (web, i)), err)
            seen = [json.loads(w.wait_for(lambda l: json.loads(l)["version"] == 3, 10))]
            # Every version arrives, in order (the watch may fold two quick
            # changes into one read, but never goes back).
            versions = [json.loads(l)["version"] for l in w.seen]
            self.assertEqual(versions, sorted(versions))
            self.assertEqual(seen[0]["config"], {"N": "3"})
            rc, out, err = cloudctl("config", "rollback", web, "1")
            self.assertEqual(rc, 0, err)
            back = json.loads(w.wait_for(lambda l: json.loads(l)["version"] == 4, 10))
            self.assertEqual(back["config"], {"N": "1"})
        finally:
            self.assertEqual(w.stop(), "")
        # The link: the instance's effective config names the linked service.
        inst = self.running(web, 1)[0]
        lk = db.upper().replace("-", "_") + "_ENDPOINTS"
        st, _, ic = request("GET", "/v1/instances/%s/config" % inst["id"])
        self.assertEqual(st, 200, ic)
        self.assertEqual(ic["config"].get(lk), "")
        self.assertEqual(ic["config"].get("N"), "1")
        # The same through the CLI, by instance name: a table, one value,
        # a missing key, and --instance only for get.
        rc, out, err = cloudctl("config", "get", "--instance", inst["name"])
        self.assertEqual(rc, 0, err)
        rows = [l.split(None, 1) for l in out.splitlines()]
        self.assertEqual(rows[0], ["KEY", "VALUE"])
        self.assertIn([lk, '""'], rows)
        self.assertIn(["N", "1"], rows)
        rc, out, err = cloudctl("config", "get", "--instance", inst["name"], "N")
        self.assertEqual((rc, out), (0, "1\n"), err)
        rc, out, err = cloudctl("config", "get", "--instance", inst["name"], "NOPE")
        self.assertEqual(rc, 1)
        self.assertIn("instance %s: config version" % inst["name"], err)
        rc, out, err = cloudctl("config", "set", "--instance", inst["name"], "A=b")
        self.assertEqual(rc, 2)
        self.assertIn("--instance is for get only", err)


if __name__ == "__main__":
    unittest.main()
