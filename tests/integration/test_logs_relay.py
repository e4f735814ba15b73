"""Console logs relayed between controller replicas (docs/decisions.md §30).

Two controllers on one PostgreSQL: A (the harness's, with the agent
gateway; its one agent "rl1" on libvirt's test:///default driver is
connected there) and B (no agent gateway at all). GET
/v1/instances/{id}/logs on B is relayed through PostgreSQL to A, which asks
the agent. What a user relies on:
- the answer through B is the answer through A: status, headers, body, for
  the whole log, ?tail= and ?tail_bytes= (a body larger than a relay row);
- a follow through B gets bytes as they are written, the same bytes as a
  follow through A;
- a client leaving B ends the relay on A: no relay rows left, A's stream
  to the agent freed (A's per-agent limit of 16 streams serves 16 direct
  follows afterwards; past it, B relays A's 429);
- the host's agent offline: a follow through B ends, and both replicas
  answer 503 saying no controller holds the agent;
- a third replica asking stops mid-follow: it exits cleanly, and A stops
  the agent's stream and drops the relay's rows;
- A restarted (SIGTERM) during a follow through B: B's body ends cleanly,
  and B relays again from the new A once the agent is back;
- A killed with SIGKILL during a follow through B: B ends the stream
  cleanly (a complete chunked body), leaves no rows, and answers 503.

The test writes known bytes into the instance's console log where the agent
reads it, as test_logs.py does.
"""

import http.client
import json
import os
import time
import unittest

import agentlib
import harness
import logslib
from harness import poll, request, unique_name

HOST = "rl1"
MODULE = agentlib.ModuleAgent(HOST)
B = None


def setUpModule():
    global B
    MODULE.set_up()
    B = harness.cluster().spawn_controller("b", reconcile=False)
    # A records that it holds the agent as the session starts.
    poll(lambda: harness.psql("SELECT count(*) FROM agent_links") == "1", 5,
         what="A's link to the agent recorded")
    # Ready (/readyz) comes before B's read cache is loaded.
    poll(lambda: raw_get(B.http_port, "/v1/instances/none/logs")[0] == 404, 10,
         what="B's read cache loaded")


def tearDownModule():
    MODULE.tear_down()


def write_console(inst_id, data, mode="ab"):
    logslib.write_console(MODULE.agent, inst_id, data, mode)


def port_a():
    return harness.cluster().http_port


def run_instance(tc):
    body = {"image": "hello:latest", "name": unique_name("rel"),
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}}
    st, _, inst = request("POST", "/v1/instances", body)
    tc.assertEqual(st, 201, inst)

    def running():
        st, _, i = request("GET", "/v1/instances/" + inst["id"])
        return i if st == 200 and i["state"] == "running" else None
    return poll(running, 30, what="instance %s running" % inst["id"])


def raw_get(port, path, timeout=20):
    """(status, headers without Date, body bytes) of one GET on port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path,
                     headers={"Authorization": "Bearer " + harness.cluster().token})
        resp = conn.getresponse()
        body = resp.read()
        hdrs = sorted((k.lower(), v) for k, v in resp.getheaders() if k.lower() != "date")
        return resp.status, hdrs, body
    finally:
        conn.close()


def error_message(resp):
    return json.loads(resp[2])["error"]["message"]


def Follow(port, path):
    return logslib.Follow(path, port=port)


def follow_through_b(tc, first):
    """A new running instance whose console says first, and a follow of its
    logs through B that has read it; returns (instance, follow)."""
    inst = run_instance(tc)
    write_console(inst["id"], first)
    fb = Follow(B.http_port, "/v1/instances/%s/logs?follow=true" % inst["id"])
    fb.wait_for(first)
    return inst, fb


def assert_ended_cleanly(tc, fb, timeout, why):
    """fb's body ended within timeout seconds (else fails saying why) with
    its last chunk; closes fb."""
    tc.assertTrue(fb.ended.wait(timeout), why)
    tc.assertTrue(fb.clean, "B's body did not end cleanly")
    fb.close()


def relay_rows():
    """(relays, chunk rows) in the database."""
    out = harness.psql("SELECT (SELECT count(*) FROM log_relays) || ' ' || "
                       "(SELECT count(*) FROM log_relay_chunks)")
    a, b = out.split()
    return int(a), int(b)


def wait_no_rows():
    poll(lambda: relay_rows() == (0, 0), 15, what="no relay rows left")


class LogsRelayTest(harness.TestCase):

    def test_01_b_answers_as_a(self):
        inst = run_instance(self)
        # No file yet: an empty log on both.
        a = raw_get(port_a(), "/v1/instances/%s/logs" % inst["id"])
        self.assertEqual(a[0], 200, a)
        self.assertEqual(raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"]), a)
        lines = b"".join(b"line %d \x00\x01\xff\n" % i for i in range(1, 2001))
        write_console(inst["id"], lines)
        big = os.urandom(1536 * 1024)  # several relay rows of 256 KiB
        for q in ("", "?tail=3", "?tail_bytes=17", "?tail=5&tail_bytes=40",
                  "?follow=false"):
            path = "/v1/instances/%s/logs%s" % (inst["id"], q)
            a = raw_get(port_a(), path)
            self.assertEqual(a[0], 200, (q, a))
            self.assertEqual(raw_get(B.http_port, path), a, q)
        self.assertEqual(raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])[2], lines)
        write_console(inst["id"], big, mode="wb")
        for q in ("", "?tail_bytes=%d" % (4 << 20)):
            path = "/v1/instances/%s/logs%s" % (inst["name"], q)
            a = raw_get(port_a(), path)
            b = raw_get(B.http_port, path)
            self.assertEqual(b, a, q)
        self.assertEqual(b[2], big)
        # The most a request may ask (16 MiB, 64 relay rows), whole.
        most = os.urandom(16 << 20)
        write_console(inst["id"], most, mode="wb")
        path = "/v1/instances/%s/logs?tail_bytes=%d" % (inst["id"], 16 << 20)
        a, b = raw_get(port_a(), path), raw_get(B.http_port, path)
        self.assertEqual(len(b[2]), len(most))
        self.assertEqual(b, a)
        self.assertEqual(b[2], most)
        # Bad parameters are refused alike (by each replica itself).
        for q in ("follow=maybe", "tail=-1", "tail_bytes=0"):
            path = "/v1/instances/%s/logs?%s" % (inst["id"], q)
            a = raw_get(port_a(), path)
            self.assertEqual(a[0], 400, a)
            self.assertEqual(raw_get(B.http_port, path), a)
        wait_no_rows()

    def test_02_follow_through_b(self):
        inst = run_instance(self)
        write_console(inst["id"], b"before\n")
        fa = Follow(port_a(), "/v1/instances/%s/logs?follow=true" % inst["id"])
        fb = Follow(B.http_port, "/v1/instances/%s/logs?follow=true" % inst["id"])
        self.assertEqual((fa.status, fb.status), (200, 200))
        self.assertEqual(fb.resp.getheader("X-Log-Offset"), "0")
        fb.wait_for(b"before\n")
        want = b"before\n"
        for i in range(5):
            line = b"after %d \xfe\n" % i
            write_console(inst["id"], line)
            want += line
            fb.wait_for(line)
        fa.wait_for(want)
        self.assertEqual(fb.text(), want)
        self.assertEqual(fa.text(), fb.text())
        # The instance goes: the agent ends the stream, B's body ends too.
        st, _, body = request("DELETE", "/v1/instances/" + inst["id"])
        self.assertIn(st, (200, 202), body)
        assert_ended_cleanly(self, fb, 30, "the follow through B did not end after delete")
        fa.close()
        wait_no_rows()

    def test_03_leaving_b_ends_the_relay_on_a(self):
        inst = run_instance(self)
        write_console(inst["id"], b"hello\n")
        path = "/v1/instances/%s/logs?follow=true" % inst["id"]
        f = Follow(B.http_port, path)
        f.wait_for(b"hello\n")
        self.assertEqual(harness.psql("SELECT state FROM log_relays"), "open")
        f.close()
        wait_no_rows()
        # More relayed follows than A (16 per agent) or the agent (32) serve
        # at once, each left: each must be freed on A and on the agent.
        for i in range(40):
            f = Follow(B.http_port, path)
            self.assertEqual(f.status, 200, "follow %d: %r" % (i, getattr(f, "body", "")))
            f.wait_for(b"hello\n")
            f.close()
        wait_no_rows()
        # A serves its 16 at once directly: none of the relayed ones is left
        # (A stops each as the end of its relay reaches it: a few ms).
        direct = []

        def sixteen():
            for f in direct:
                f.close()
            direct[:] = [Follow(port_a(), path) for _ in range(16)]
            return [f.status for f in direct] == [200] * 16
        try:
            poll(sixteen, 5, interval=0.2, what="16 direct follows on A at once")
            # The 17th, through B: A's 429, relayed.
            r = raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])
            self.assertEqual(r[0], 429, r)
            self.assertIn("already streams 16 console logs", error_message(r))
        finally:
            for f in direct:
                f.close()
        poll(lambda: raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])[0] == 200,
             10, what="A's streams freed")
        wait_no_rows()

    def test_04_agent_offline_503_on_both(self):
        inst, fb = follow_through_b(self, b"still here\n")
        MODULE.agent.stop()
        try:
            assert_ended_cleanly(self, fb, 15, "B's follow did not end with the agent")
            for port in (port_a(), B.http_port):
                def gone():
                    r = raw_get(port, "/v1/instances/%s/logs" % inst["id"])
                    return r if r[0] == 503 and "not connected to any controller" \
                        in error_message(r) else None
                r = poll(gone, 10, what="503 on port %d" % port)
                self.assertIn("host %s" % HOST, error_message(r))
            wait_no_rows()
        finally:
            MODULE.agent.start()
        agentlib.wait_host_ready(HOST, what="the agent back")
        poll(lambda: raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])[2]
             == b"still here\n", 20, what="logs through B again")

    def test_05_asker_stopped_mid_follow(self):
        # A third replica C (no gateway) relays a follow, then stops: it
        # exits cleanly with the relay open (the harness checks its exit
        # status, and the sanitizers its leaks), and A, seeing C silent,
        # stops the agent's stream and drops the relay's rows.
        inst = run_instance(self)
        write_console(inst["id"], b"to c\n")
        c = harness.cluster().spawn_controller("c", reconcile=False)
        # Ready (/readyz) comes before its read cache is loaded.
        poll(lambda: raw_get(c.http_port, "/v1/instances/%s/logs" % inst["id"])[0] == 200, 10,
             what="C serving logs")
        f = Follow(c.http_port, "/v1/instances/%s/logs?follow=true" % inst["id"])
        self.assertEqual(f.status, 200, getattr(f, "body", b""))
        f.wait_for(b"to c\n")
        self.assertEqual(relay_rows()[0], 1)
        c.stop()
        self.assertTrue(f.ended.wait(10), "C's follow did not end with C")
        f.close()
        wait_no_rows()
        self.assertEqual(raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])[2],
                         b"to c\n")

    def test_08_holder_restarted_mid_follow(self):
        # A stops (SIGTERM: its exit status and leaks checked) while B
        # relays a follow from it: B's body ends cleanly; once the agent
        # has reconnected to the new A, B relays again.
        inst, fb = follow_through_b(self, b"before restart\n")
        harness.cluster().restart_controller()
        assert_ended_cleanly(self, fb, 15, "B's follow did not end with A")
        poll(lambda: raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])
             == raw_get(port_a(), "/v1/instances/%s/logs" % inst["id"])
             and raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])[0] == 200,
             30, what="logs through B from the new A")
        wait_no_rows()

    def test_09_a_killed_during_a_follow_through_b(self):
        # Last: it kills A.
        inst, fb = follow_through_b(self, b"one\n")
        write_console(inst["id"], b"two\n")
        fb.wait_for(b"two\n")
        t0 = time.monotonic()
        harness.cluster().kill_controller()
        self.assertTrue(fb.ended.wait(20), "B's follow did not end after A died")
        took = time.monotonic() - t0
        self.assertTrue(fb.clean, "B's body did not end cleanly")
        self.assertEqual(fb.text(), b"one\ntwo\n")
        fb.close()
        self.assertLess(took, 15, "B noticed A's death after %.1f s" % took)
        wait_no_rows()
        r = raw_get(B.http_port, "/v1/instances/%s/logs" % inst["id"])
        self.assertEqual(r[0], 503, r)
        self.assertIn("not connected to any controller", error_message(r))


if __name__ == "__main__":
    unittest.main()
