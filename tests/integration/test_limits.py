"""Connection limits and rate limits per client address (docs/security.md,
"Connection and rate limits").

One client holding 1,500 idle connections must not lock others out: at
--max-conns the oldest idle connection is closed for a new one, and one
address may hold at most --max-conns-per-addr connections (429 beyond).
Requests without a valid token (401s, open routes, 404s) and agent join
attempts have a token bucket per client address (429 rate_limited, and
Error{RATE_LIMITED} on the agent link).

Loopback addresses 127.0.0.2, 127.0.0.3, ... are distinct client addresses
on Linux: each test plays its clients from its own, so buckets and counts
do not mix (the harness itself talks from 127.0.0.1).
"""

import http.client
import json
import os
import re
import resource
import socket
import ssl
import struct
import subprocess
import time
import unittest

import agentlib
import harness
from agentlib import pb_parse, pb_string, pb_uint, pb_varint  # noqa: F401
from harness import poll

HOGS = 1500
JOIN_BURST = 3


def setUpModule():
    # 2 x 1,500 sockets on our side, the same again in the controllers.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    harness.start(controller_args=["--join-burst", str(JOIN_BURST),
                                   "--join-rate", "0.001"])


def tearDownModule():
    harness.stop()


def connect(port, src, timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def request(port, method, path, src, token=None, timeout=10.0):
    """One request on a fresh connection from src; (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout,
                                      source_address=(src, 0))
    try:
        hdrs = {"Authorization": "Bearer " + token} if token else {}
        conn.request(method, path, headers=hdrs)
        resp = conn.getresponse()
        body = resp.read().decode("utf-8", "replace")
        return resp.status, resp.msg, (json.loads(body) if body.strip() else None)
    finally:
        conn.close()


def hold(port, src, n, kinds=("silent",)):
    """n open connections from src, cycling through kinds: silent (never
    sends a byte), partial (half a request head), keepalive (one complete
    request answered, then idle)."""
    socks = []
    for i in range(n):
        s = connect(port, src)
        kind = kinds[i % len(kinds)]
        if kind == "partial":
            s.sendall(b"GET /v1/hosts HTTP/1.1\r\nHost: x\r\n")
        elif kind == "keepalive":
            s.sendall(("GET /v1/hosts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                       % harness.cluster().token).encode())
        socks.append((kind, s))
    for kind, s in socks:
        if kind == "keepalive":
            s.recv(65536)  # its answer; the test judges the others
    return [s for _, s in socks]


def closed_by_server(socks):
    """How many of socks the server has closed (EOF or reset waiting)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    n += 1
                    break
        except BlockingIOError:
            pass
        except ConnectionResetError:
            n += 1
    return n


def close_all(socks):
    for s in socks:
        s.close()


class IdleConnectionsTest(harness.TestCase):

    def served(self, port):
        """/healthz and an authenticated GET from 127.0.0.1 answer 200."""
        token = harness.cluster().token
        st, _, body = request(port, "GET", "/healthz", "127.0.0.1", timeout=5)
        self.assertEqual(st, 200, body)
        st, _, body = request(port, "GET", "/v1/instances?limit=1", "127.0.0.1", token=token,
                              timeout=5)
        self.assertEqual(st, 200, body)

    def test_01_idle_connections_make_room_at_the_limit(self):
        # No per-address cap and a long request deadline: only the
        # eviction of idle connections can let another client in.
        ctl = harness.cluster().spawn_controller(
            "nocap", ["--max-conns-per-addr", "0", "--max-conns", "1024",
                      "--request-timeout", "120"], reconcile=False)
        socks = hold(ctl.http_port, "127.0.0.2", HOGS,
                     kinds=("silent", "silent", "partial", "keepalive"))
        try:
            t0 = time.monotonic()
            self.served(ctl.http_port)
            # Well before any deadline: room was made, not waited for.
            self.assertLess(time.monotonic() - t0, 5)
            # The controller holds at most --max-conns: the rest were closed.
            closed = poll(lambda: closed_by_server(socks) >= HOGS - 1024 and
                          closed_by_server(socks), 10, what="idle connections closed")
            self.assertGreaterEqual(closed, HOGS - 1024)
        finally:
            close_all(socks)
            ctl.stop()

    def test_02_one_address_is_capped(self):
        # The default cap (64) on the main controller: the hog's extra
        # connections are refused, others are served.
        port = harness.cluster().http_port
        socks = hold(port, "127.0.0.2", HOGS)
        try:
            self.served(port)
        finally:
            close_all(socks)

    def test_03_the_connection_over_the_cap_gets_429(self):
        port = harness.cluster().http_port
        socks = hold(port, "127.0.0.4", 64)
        try:
            time.sleep(0.3)  # all 64 accepted and counted
            st, hdrs, body = request(port, "GET", "/healthz", "127.0.0.4")
            self.assertEqual(st, 429, body)
            self.assertEqual(body["error"]["code"], "too_many_connections", body)
            self.assertIn("127.0.0.4", body["error"]["message"])
            self.assertIn("64", body["error"]["message"])
            self.assertEqual(hdrs.get("Retry-After"), "1")
            self.assertEqual(hdrs.get("Connection"), "close")
            # Another address is not affected.
            st, _, body = request(port, "GET", "/healthz", "127.0.0.5")
            self.assertEqual(st, 200, body)
            # One closed: room for one more from the same address.
            socks.pop().close()
            poll(lambda: request(port, "GET", "/healthz", "127.0.0.4")[0] == 200, 5,
                 what="a connection from 127.0.0.4 once one of its 64 closed")
        finally:
            close_all(socks)
        # Once they are gone the address is served again.
        poll(lambda: request(port, "GET", "/healthz", "127.0.0.4")[0] == 200, 5,
             what="127.0.0.4 served after closing")


class AnonRateTest(harness.TestCase):

    def test_04_bad_tokens_get_429_once_the_bucket_is_empty(self):
        # Defaults: 10 per second, bursts of 50.
        port = harness.cluster().http_port
        src = "127.0.0.3"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                          source_address=(src, 0))
        statuses, last429 = [], None
        t0 = time.monotonic()
        try:
            for _ in range(150):
                conn.request("GET", "/v1/instances", headers={"Authorization": "Bearer cld_wrong"})
                resp = conn.getresponse()
                body = resp.read()
                statuses.append(resp.status)
                if resp.status == 429:
                    last429 = (resp.msg, json.loads(body))
        finally:
            conn.close()
        elapsed = time.monotonic() - t0
        n401 = statuses.count(401)
        self.assertEqual(n401 + statuses.count(429), 150, statuses)
        self.assertEqual(statuses[:50], [401] * 50)
        self.assertIsNotNone(last429, "no 429 in %d requests" % len(statuses))
        # The burst plus what refilled meanwhile, no more.
        self.assertLessEqual(n401, 50 + 10 * elapsed + 1, (n401, elapsed))
        hdrs, body = last429
        self.assertEqual(body["error"]["code"], "rate_limited", body)
        self.assertIn(src, body["error"]["message"])
        self.assertGreaterEqual(int(hdrs.get("Retry-After")), 1)
        self.assertTrue(hdrs.get("Content-Type").startswith("application/json"))
        # A good token from the same address still works...
        token = harness.cluster().token
        st, _, body = request(port, "GET", "/v1/instances?limit=1", src, token=token)
        self.assertEqual(st, 200, body)
        # ... while what needs no token shares the spent budget.
        st, _, body = request(port, "GET", "/healthz", src)
        self.assertEqual(st, 429, body)
        st, _, body = request(port, "GET", "/no/such/route", src)
        self.assertEqual(st, 429, body)
        # Another address has its own budget.
        st, _, body = request(port, "GET", "/v1/instances", "127.0.0.6",
                              token="cld_wrong")
        self.assertEqual(st, 401, body)
        # And the budget comes back with time (10 per second).
        poll(lambda: request(port, "GET", "/healthz", src)[0] == 200, 5,
             what="/healthz from %s after the bucket refilled" % src)


# ---- join attempts on the agent gateway ----------------------------------


def join_attempt(src):
    """A JoinRequest with a made-up token from src; the Error's fields
    ({1: [code], 2: [message], 3: [retry_after_s]})."""
    c = harness.cluster()
    ctx = ssl.create_default_context(
        cafile=os.path.join(agentlib.ctl_data_dir(c), "pki", "ca.pem"))
    raw = connect(c.agent_port, src)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    try:
        body = (pb_string(1, "0" * 16 + "." + "1" * 64) + pb_string(2, "limits1") +
                pb_string(3, "-----BEGIN CERTIFICATE REQUEST-----\nxx\n"))
        env = pb_string(12, body)
        s.sendall(struct.pack(">I", len(env)) + env)
        data = agentlib.read_until_closed(s, timeout=10)
    finally:
        s.close()
    n = struct.unpack(">I", data[:4])[0]
    env = pb_parse(data[4:4 + n])
    if 9 not in env:
        raise AssertionError("no Error envelope: %r" % env)
    return pb_parse(env[9][0])


class JoinRateTest(harness.TestCase):

    def test_05_join_attempts_over_the_rate_are_refused(self):
        src = "127.0.0.7"
        for i in range(JOIN_BURST):
            err = join_attempt(src)
            self.assertEqual(err[1], [4], err)  # UNAUTHENTICATED: judged
        err = join_attempt(src)
        self.assertEqual(err[1], [8], err)  # RATE_LIMITED: not judged
        self.assertIn(b"too many join attempts from 127.0.0.7", err[2][0])
        self.assertGreaterEqual(err.get(3, [0])[0], 1, err)
        # Another address is judged as before.
        self.assertEqual(join_attempt("127.0.0.8")[1], [4])

    def test_06_cloud_agent_join_reports_the_refusal(self):
        c = harness.cluster()
        out = subprocess.run(
            [c.controller_bin, "join-token", "create", "--data-dir", agentlib.ctl_data_dir(c),
             "--controller", "127.0.0.1:%d" % c.agent_port, "--db", c.db_url],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        m = re.search(r"--token (\S+) --ca-pin (\S+)", out.stdout)
        token, pin = m.group(1), m.group(2)
        # cloud-agent dials from 127.0.0.1: spend that address's budget.
        for _ in range(JOIN_BURST):
            join_attempt("127.0.0.1")
        state = os.path.join(c.tmp, "joined", "limits2")
        r = subprocess.run([agentlib.AGENT_BIN, "--name", "limits2", "--state-dir", state,
                            "join", "--controller", "127.0.0.1:%d" % c.agent_port,
                            "--token", token, "--ca-pin", pin],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 75, r.stderr)  # EX_TEMPFAIL: run it again
        self.assertIn("too many join attempts", r.stderr)
        self.assertRegex(r.stderr, r"run the same command again in \d+ s")
        # Nothing was judged: the token is still unused.
        self.assertEqual(harness.psql("SELECT used_at IS NULL FROM join_tokens WHERE id = '%s'"
                                      % token.split(".")[0]), "t")
        self.assertFalse(os.path.exists(os.path.join(state, "pki", "cert.pem")))


if __name__ == "__main__":
    unittest.main()
