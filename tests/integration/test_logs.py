"""Console logs: GET /v1/instances/{id}/logs through the agent gateway.

One cloud-agent on libvirt's test:///default driver (with the reconciler
placing instances). The test driver boots nothing and writes no console, so
the test writes known bytes into the instance's console log where the agent
reads it (<state-dir>/run/<id>/console.log) and checks what a user relies
on: the log comes back; ?tail= and ?tail_bytes= bound it; ?follow=true
delivers bytes appended after the request started; a client that leaves a
follow frees its stream on the controller and the agent (more abandoned
follows than either allows at once, and logs still work); the per-agent
limit answers 429; deleting the instance ends a follow; the agent caps a
console log past 4 MiB; 409 for an instance not placed yet, 404 for an
unknown one, 401 without a token, 503 while the host's agent is not
connected.
"""

import http.client
import os
import subprocess
import time
import unittest

import agentlib
import harness
import logslib
from logslib import Follow
from harness import poll, request, unique_name

IMAGE = "hello:latest"
MODULE = agentlib.ModuleAgent("lg1")
setUpModule = MODULE.set_up
tearDownModule = MODULE.tear_down


def console_path(inst_id):
    return logslib.console_path(MODULE.agent, inst_id)


def write_console(inst_id, data, mode="ab"):
    logslib.write_console(MODULE.agent, inst_id, data, mode)


def run_instance(tc, memory_mib=64):
    body = {"image": IMAGE, "name": unique_name("con"),
            "resources": {"vcpus": 1, "memory_mib": memory_mib, "disk_gib": 0}}
    st, _, inst = request("POST", "/v1/instances", body)
    tc.assertEqual(st, 201, inst)
    return inst


def wait_running(ref, timeout=30):
    def ok():
        st, _, inst = request("GET", "/v1/instances/" + ref)
        return inst if st == 200 and inst["state"] == "running" else None
    return poll(ok, timeout, what="instance %s running" % ref)


def raw_get(path, timeout=10, auth=True):
    """(status, headers, body bytes) of one GET, the body read to its end."""
    c = harness.cluster()
    conn = http.client.HTTPConnection("127.0.0.1", c.http_port, timeout=timeout)
    hdrs = {"Authorization": "Bearer " + c.token} if auth else {}
    try:
        conn.request("GET", path, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read()
    finally:
        conn.close()


class LogsTest(harness.TestCase):

    @classmethod
    def setUpClass(cls):
        agentlib.wait_host_ready("lg1")

    def test_01_errors(self):
        st, _, body = request("GET", "/v1/instances/zzzzzzzz/logs")
        self.assertError((st, _, body), 404, "not_found")
        st, _, body = request("GET", "/v1/instances/zzzzzzzz/logs", auth=False)
        self.assertEqual(st, 401, body)
        # More memory than the host has: never placed, no console.
        inst = run_instance(self, memory_mib=65536)
        time.sleep(1)
        st, _, body = request("GET", "/v1/instances/%s/logs" % inst["id"])
        self.assertError((st, _, body), 409, "conflict")
        self.assertIn("has no console yet", body["error"]["message"])
        self.assertIn(inst["name"], body["error"]["message"])
        for q in ("follow=maybe", "tail=-1", "tail_bytes=0", "tail_bytes=abc"):
            st, _, body = request("GET", "/v1/instances/%s/logs?%s" % (inst["id"], q))
            self.assertEqual(st, 400, (q, body))
        request("DELETE", "/v1/instances/" + inst["id"])

    def test_02_read_tail_and_bounds(self):
        inst = wait_running(run_instance(self)["id"])
        # No file yet: an empty log, not an error.
        st, hdrs, body = raw_get("/v1/instances/%s/logs" % inst["id"])
        self.assertEqual((st, body), (200, b""))
        lines = b"".join(b"line %d \x01\xff\n" % i for i in range(1, 1001))
        write_console(inst["id"], lines)
        st, hdrs, body = raw_get("/v1/instances/%s/logs" % inst["id"])
        self.assertEqual(st, 200)
        self.assertTrue(hdrs.get("Content-Type", "").startswith("text/plain"), hdrs)
        self.assertEqual(body, lines)
        self.assertEqual(hdrs.get("X-Log-Offset"), "0")
        # By name too, and the last lines only.
        st, _, body = raw_get("/v1/instances/%s/logs?tail=2" % inst["name"])
        self.assertEqual(body, b"line 999 \x01\xff\nline 1000 \x01\xff\n")
        st, hdrs, body = raw_get("/v1/instances/%s/logs?tail_bytes=16" % inst["id"])
        self.assertEqual(body, lines[-16:])
        self.assertEqual(int(hdrs.get("X-Log-Offset")), len(lines) - 16)
        # Larger than one 64 KiB chunk, and by default only the last 1 MiB.
        big = os.urandom(1536 * 1024)
        write_console(inst["id"], big, mode="wb")
        st, _, body = raw_get("/v1/instances/%s/logs" % inst["id"])
        self.assertEqual(body, big[-1024 * 1024:])
        st, _, body = raw_get("/v1/instances/%s/logs?tail_bytes=%d" % (inst["id"], 4 << 20))
        self.assertEqual(body, big)

    def test_03_follow_gets_new_bytes_and_ends_on_delete(self):
        inst = wait_running(run_instance(self)["id"])
        write_console(inst["id"], b"before\n")
        f = Follow("/v1/instances/%s/logs?follow=true" % inst["id"])
        self.assertEqual(f.status, 200)
        f.wait_for(b"before\n")
        for i in range(3):
            write_console(inst["id"], b"after %d\n" % i)
            f.wait_for(b"after %d\n" % i)
        self.assertEqual(f.text(), b"before\nafter 0\nafter 1\nafter 2\n")
        # Truncated (as the cap does): the follow goes on from the start.
        write_console(inst["id"], b"fresh\n", mode="wb")
        f.wait_for(b"fresh\n")
        # The instance goes: the agent ends the stream, the body ends.
        st, _, body = request("DELETE", "/v1/instances/" + inst["id"])
        self.assertIn(st, (200, 202), body)
        self.assertTrue(f.ended.wait(30), "the follow did not end after delete")
        f.close()

    def test_04_follow_of_a_log_not_there_yet(self):
        inst = wait_running(run_instance(self)["id"])
        f = Follow("/v1/instances/%s/logs?follow=true" % inst["id"])
        self.assertEqual(f.status, 200)
        write_console(inst["id"], b"first words\n")
        f.wait_for(b"first words\n")
        f.close()

    def test_05_clients_leaving_free_their_streams(self):
        inst = wait_running(run_instance(self)["id"])
        write_console(inst["id"], b"hello\n")
        # More abandoned follows than the controller (16 per agent) or the
        # agent (32) serve at once: each must be freed when its client goes.
        for i in range(40):
            f = Follow("/v1/instances/%s/logs?follow=true" % inst["id"])
            self.assertEqual(f.status, 200, "follow %d: %r" % (i, getattr(f, "body", "")))
            f.wait_for(b"hello\n")
            f.close()
            time.sleep(0.02)
        time.sleep(0.5)
        st, _, body = raw_get("/v1/instances/%s/logs" % inst["id"])
        self.assertEqual((st, body), (200, b"hello\n"))
        # At once: 16 per agent, then 429; freed again when they leave.
        open_ = [Follow("/v1/instances/%s/logs?follow=true" % inst["id"]) for _ in range(16)]
        self.assertTrue(all(f.status == 200 for f in open_), [f.status for f in open_])
        st, _, body = request("GET", "/v1/instances/%s/logs" % inst["id"])
        self.assertError((st, _, body), 429, "too_many")
        write_console(inst["id"], b"to all\n")
        for f in open_:
            f.wait_for(b"to all\n")
            f.close()
        poll(lambda: raw_get("/v1/instances/%s/logs" % inst["id"])[0] == 200, 10,
             what="log streams freed")
        # The controller and the agent keep working.
        st, _, h = request("GET", "/v1/hosts/lg1")
        self.assertEqual(h["state"], "ready", h)
        self.assertTrue(MODULE.agent.alive(), MODULE.agent.log_tail())

    def test_06_agent_caps_the_console_log(self):
        inst = wait_running(run_instance(self)["id"])
        write_console(inst["id"], b"x" * (5 << 20) + b"tail end\n")
        path = console_path(inst["id"])
        poll(lambda: os.path.getsize(path) < (4 << 20) and os.path.exists(path + ".1"), 15,
             what="the agent to cap %s" % path)
        self.assertGreaterEqual(os.path.getsize(path + ".1"), 5 << 20)
        write_console(inst["id"], b"after the cap\n")
        st, _, body = raw_get("/v1/instances/%s/logs" % inst["id"])
        self.assertEqual(st, 200)
        self.assertTrue(body.endswith(b"after the cap\n"), body[-100:])
        self.assertLess(len(body), 1 << 20)

    @unittest.skipUnless(os.environ.get("CLOUDCTL"), "CLOUDCTL not set")
    def test_06b_cloudctl_logs(self):
        c = harness.cluster()
        inst = wait_running(run_instance(self)["id"])
        write_console(inst["id"], b"one\ntwo\nthree\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "CLOUD_URL": "http://127.0.0.1:%d" % c.http_port, "CLOUD_TOKEN": c.token,
               "XDG_CONFIG_HOME": os.path.join(c.tmp, "xdg"), "HOME": c.tmp}
        r = subprocess.run([os.environ["CLOUDCTL"], "logs", "--tail", "2", inst["name"]],
                           env=env, capture_output=True, timeout=30)
        self.assertEqual((r.returncode, r.stdout), (0, b"two\nthree\n"), r.stderr)
        p = subprocess.Popen([os.environ["CLOUDCTL"], "logs", "-f", inst["id"]], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self.assertEqual(p.stdout.readline(), b"one\n")
            p.stdout.readline()
            p.stdout.readline()
            write_console(inst["id"], b"four\n")
            self.assertEqual(p.stdout.readline(), b"four\n")
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
            p.stderr.close()
        # A pending instance: the server's answer on one line, exit 1.
        pend = run_instance(self, memory_mib=65536)
        r = subprocess.run([os.environ["CLOUDCTL"], "logs", pend["id"]],
                           env=env, capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn(b"has no console yet", r.stderr)
        request("DELETE", "/v1/instances/" + pend["id"])

    def test_07_agent_gone_503(self):
        inst = wait_running(run_instance(self)["id"])
        write_console(inst["id"], b"still here\n")
        f = Follow("/v1/instances/%s/logs?follow=true" % inst["id"])
        f.wait_for(b"still here\n")
        MODULE.agent.stop()
        try:
            # The agent's connection ends: so does the follow.
            self.assertTrue(f.ended.wait(15), "the follow did not end with the agent")
            f.close()
            st, _, body = request("GET", "/v1/instances/%s/logs" % inst["id"])
            self.assertError((st, _, body), 503, "unavailable")
            self.assertIn("not connected to any controller", body["error"]["message"])
        finally:
            MODULE.agent.start()
        agentlib.wait_host_ready("lg1")
        poll(lambda: raw_get("/v1/instances/%s/logs" % inst["id"])[2] == b"still here\n", 20,
             what="logs again after the agent rejoined")


if __name__ == "__main__":
    unittest.main()
