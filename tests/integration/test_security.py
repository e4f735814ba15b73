"""API security: bearer tokens with roles, the audit trail, TLS, CORS.

Tokens: 401 without or with a bad token, 403 for a role that may not;
secrets shown once and stored only as SHA-256; revocation and expiry take
effect at once. Every refused or failed mutating request is an event with
who did it. TLS 1.2+ with the given certificate; plain HTTP only on
loopback. CORS only for configured origins.
"""

import http.client
import os
import socket
import ssl
import subprocess
import time

import harness
from harness import request, unique_name, poll

IMAGE = "hello:latest"


setUpModule, tearDownModule = harness.module_fixture()


def as_token(secret):
    return {"Authorization": "Bearer " + secret}


def events_of(tc, etype, limit=1000):
    st, _, page = request("GET", "/v1/events?type=%s&limit=%d" % (etype, limit))
    tc.assertEqual(st, 200, page)
    return page["items"]


class TokenTests(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        cls.viewer_name = unique_name("viewer")
        cls.operator_name = unique_name("op")
        cls.viewer = c.create_token(cls.viewer_name, "viewer")
        cls.operator = c.create_token(cls.operator_name, "operator")

    def wait_accepted(self, secret):
        # Tokens made outside the API reach the controller through the
        # event stream; allow it that moment.
        poll(lambda: request("GET", "/v1/services", headers=as_token(secret))[0] == 200,
             5, what="the new token to be accepted")

    def test_missing_and_bad_tokens_are_401(self):
        resp = request("GET", "/v1/services", auth=False)
        err = self.assertError(resp, 401, "unauthorized")
        self.assertIn("bearer", err["message"].lower())
        self.assertIn("Bearer", resp[1].get("WWW-Authenticate", ""))
        self.assertError(request("GET", "/v1/services", headers=as_token("cld_nope")),
                         401, "unauthorized")
        self.assertError(request("GET", "/v1/services", headers={"Authorization": "Basic eDp5"}),
                         401, "unauthorized")
        self.assertError(request("POST", "/v1/services", {"name": "x", "image": IMAGE},
                                 auth=False), 401, "unauthorized")

    def test_health_is_open(self):
        self.assertEqual(request("GET", "/healthz", auth=False)[0], 200)
        self.assertEqual(request("GET", "/readyz", auth=False)[0], 200)

    def test_viewer_reads_but_may_not_write(self):
        self.wait_accepted(self.viewer)
        self.assertEqual(request("GET", "/v1/instances", headers=as_token(self.viewer))[0], 200)
        err = self.assertError(request("POST", "/v1/services",
                                       {"name": unique_name("v"), "image": IMAGE},
                                       headers=as_token(self.viewer)),
                               403, "forbidden")
        self.assertIn("viewer", err["message"])
        # the refusal is in the audit trail, with who
        poll(lambda: any(self.viewer_name in e["actor"] and "POST /v1/services" in e["name"]
                         for e in events_of(self, "api.denied")),
             5, what="an api.denied event for the viewer")

    def test_operator_runs_but_may_not_administer(self):
        self.wait_accepted(self.operator)
        name = unique_name("op-svc")
        st, _, svc = request("POST", "/v1/services", {"name": name, "image": IMAGE, "replicas": 0},
                             headers=as_token(self.operator))
        self.assertEqual(st, 201, svc)
        created = [e for e in events_of(self, "service.created") if e["name"] == name]
        self.assertEqual([e["actor"] for e in created], [self.operator_name])
        harness.cluster().add_host(unique_name("hv"), host_id=unique_name("h"))
        self.assertError(request("POST", "/v1/hosts/nohost/cordon", headers=as_token(self.operator)),
                         403, "forbidden")
        self.assertError(request("GET", "/v1/tokens", headers=as_token(self.operator)),
                         403, "forbidden")
        self.assertError(request("POST", "/v1/blobs/uploads", headers=as_token(self.operator)),
                         403, "forbidden")

    def test_failed_write_is_audited(self):
        name = unique_name("dup")
        self.assertEqual(request("POST", "/v1/services", {"name": name, "image": IMAGE})[0], 201)
        self.assertError(request("POST", "/v1/services", {"name": name, "image": IMAGE}),
                         409, "conflict")
        poll(lambda: any(e["actor"] == "itest-admin" and "409" in e["message"]
                         and name in e["message"] for e in events_of(self, "api.failed")),
             5, what="an api.failed event for the duplicate")

    def test_text_that_is_not_utf8_is_refused_and_audited(self):
        # An Idempotency-Key with a byte that is not UTF-8 (0xff): JSON
        # cannot carry it, so the write is refused with 400 rather than
        # sent with its arguments shifted (the actor in the key's place);
        # the refusal is audited under the caller's name.
        since = int(harness.psql("SELECT coalesce(max(id), 0) FROM events"))
        name = unique_name("u8")
        st, _, body = request("POST", "/v1/services", {"name": name, "image": IMAGE},
                              headers={"Idempotency-Key": "k\xff"})
        self.assertEqual(st, 400, body)
        self.assertEqual(body["error"]["code"], "bad_request")
        self.assertIn("UTF-8", body["error"]["message"])
        self.assertEqual(request("GET", "/v1/services/%s" % name)[0], 404)
        poll(lambda: harness.psql(
            "SELECT count(*) FROM events WHERE id > %d AND type = 'api.failed' "
            "AND actor = 'itest-admin' AND message LIKE '%%-> 400%%UTF-8%%'" % since) == "1",
             5, what="the refusal audited under the caller's name")
        # nothing was written in anyone's name
        self.assertEqual(harness.psql(
            "SELECT count(*) FROM events WHERE id > %d AND type <> 'api.failed'" % since), "0")

    def test_create_list_revoke_through_the_api(self):
        name = unique_name("t")
        st, _, tok = request("POST", "/v1/tokens", {"name": name, "role": "operator"})
        self.assertEqual(st, 201, tok)
        secret = tok["secret"]
        self.assertTrue(secret.startswith("cld_") and len(secret) == 47, secret)
        self.assertEqual((tok["name"], tok["role"], tok["revoked_at"]), (name, "operator", None))
        # shown once: never in a list, never in the database
        st, _, page = request("GET", "/v1/tokens?limit=1000")
        self.assertEqual(st, 200)
        mine = [t for t in page["items"] if t["name"] == name]
        self.assertEqual(len(mine), 1)
        self.assertNotIn("secret", mine[0])
        self.assertNotIn(secret, harness.psql("SELECT string_agg(encode(secret_sha256, 'escape'), '') FROM tokens"))
        self.wait_accepted(secret)
        st, _, body = request("DELETE", "/v1/tokens/%s" % name)
        self.assertEqual((st, body["name"]), (200, name))
        self.assertIsNotNone(body["revoked_at"])
        poll(lambda: request("GET", "/v1/services", headers=as_token(secret))[0] == 401,
             5, what="the revoked token to be refused")
        self.assertError(request("DELETE", "/v1/tokens/%s" % unique_name("nope")), 404, "not_found")
        self.assertError(request("POST", "/v1/tokens", {"name": name, "role": "admin"}),
                         409, "conflict")

    def test_token_validation(self):
        self.assertError(request("POST", "/v1/tokens", {"name": "Bad", "role": "admin"}),
                         422, "invalid", field="name")
        self.assertError(request("POST", "/v1/tokens", {"name": unique_name("t"), "role": "root"}),
                         422, "invalid", field="role")
        self.assertError(request("POST", "/v1/tokens", {"name": unique_name("t"), "role": "viewer",
                                                        "ttl_seconds": 0}),
                         422, "invalid", field="ttl_seconds")
        self.assertError(request("POST", "/v1/tokens", {"name": unique_name("t"), "role": "viewer",
                                                        "scope": "x"}),
                         422, "invalid", field="scope")

    def test_expiry(self):
        st, _, tok = request("POST", "/v1/tokens", {"name": unique_name("short"), "role": "viewer",
                                                    "ttl_seconds": 2})
        self.assertEqual(st, 201, tok)
        self.assertIsNotNone(tok["expires_at"])
        poll(lambda: request("GET", "/v1/services", headers=as_token(tok["secret"]))[0] == 401,
             10, what="the expired token to be refused")

    def test_secrets_never_logged(self):
        st, _, tok = request("POST", "/v1/tokens", {"name": unique_name("log"), "role": "viewer"})
        self.assertEqual(st, 201)
        request("GET", "/v1/nope", headers=as_token(tok["secret"]))
        request("GET", "/v1/services", headers=as_token(tok["secret"] + "x"))
        log = harness.cluster().controller_log_tail(100000)
        self.assertNotIn(tok["secret"], log)
        self.assertNotIn(harness.cluster().token, log)


def make_cert(tmp):
    key, crt = os.path.join(tmp, "api.key"), os.path.join(tmp, "api.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


class ExtraController:
    """A second controller on the same database with extra flags."""

    def __init__(self, *flags, listen=None):
        c = harness.cluster()
        self.port = harness.free_port()
        self.log = os.path.join(c.tmp, "extra-%d.log" % self.port)
        argv = [c.controller_bin, "--listen", listen or "127.0.0.1:%d" % self.port,
                "--db", c.db_url, "--data-dir", os.path.join(c.tmp, "ctl"),
                "--agent-listen", "none", "--no-reconcile"] + list(flags)
        self.fh = open(self.log, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.fh,
                                     stderr=subprocess.STDOUT)

    def wait_port(self):
        def up():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        poll(up, 20, what="the extra controller to listen")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.fh.close()


class TlsTests(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crt, cls.key = make_cert(harness.cluster().tmp)
        cls.ctl = ExtraController("--tls-cert", cls.crt, "--tls-key", cls.key)
        cls.ctl.wait_port()

    @classmethod
    def tearDownClass(cls):
        cls.ctl.stop()

    def https(self, ctx, path="/healthz", headers=None):
        conn = http.client.HTTPSConnection("127.0.0.1", self.ctl.port, context=ctx, timeout=10)
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body

    def test_https_with_the_certificate(self):
        ctx = ssl.create_default_context(cafile=self.crt)
        def ready():
            return self.https(ctx, "/readyz")[0] == 200
        poll(ready, 20, what="the TLS controller to be ready")
        st, _ = self.https(ctx, "/v1/services", as_token(harness.cluster().token))
        self.assertEqual(st, 200)

    def test_tls_below_1_2_is_refused(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.crt)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with self.assertRaises((ssl.SSLError, ConnectionError, OSError)):
            self.https(ctx)

    def test_plain_http_to_the_tls_port_fails(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.ctl.port, timeout=5)
        with self.assertRaises((http.client.HTTPException, ConnectionError, OSError)):
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                raise AssertionError("plain HTTP was answered on the TLS port")
        conn.close()


class PlainHttpPolicyTests(harness.TestCase):
    def test_non_loopback_needs_tls(self):
        c = harness.cluster()
        out = subprocess.run([c.controller_bin, "--listen", "0.0.0.0:%d" % harness.free_port(),
                              "--db", c.db_url, "--agent-listen", "none"],
                             capture_output=True, timeout=30)
        self.assertEqual(out.returncode, 2, out.stderr)
        self.assertIn(b"--tls-cert", out.stderr)


class CorsTests(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ctl = ExtraController("--cors-origin", "https://dash.example")
        cls.ctl.wait_port()

    @classmethod
    def tearDownClass(cls):
        cls.ctl.stop()

    def call(self, port, method, path, headers):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp

    def test_allowed_origin(self):
        poll(lambda: self.call(self.ctl.port, "GET", "/readyz", {}).status == 200, 20,
             what="the CORS controller to be ready")
        pre = self.call(self.ctl.port, "OPTIONS", "/v1/services",
                        {"Origin": "https://dash.example",
                         "Access-Control-Request-Method": "POST"})
        self.assertEqual(pre.status, 204)
        self.assertEqual(pre.getheader("Access-Control-Allow-Origin"), "https://dash.example")
        self.assertIn("POST", pre.getheader("Access-Control-Allow-Methods"))
        self.assertIn("Authorization", pre.getheader("Access-Control-Allow-Headers"))
        get = self.call(self.ctl.port, "GET", "/v1/services",
                        dict(as_token(harness.cluster().token), Origin="https://dash.example"))
        self.assertEqual(get.status, 200)
        self.assertEqual(get.getheader("Access-Control-Allow-Origin"), "https://dash.example")

    def test_other_origins_get_nothing(self):
        get = self.call(self.ctl.port, "GET", "/healthz", {"Origin": "https://evil.example"})
        self.assertIsNone(get.getheader("Access-Control-Allow-Origin"))
        # and none at all by default
        get = self.call(harness.cluster().http_port, "GET", "/healthz",
                        {"Origin": "https://dash.example"})
        self.assertIsNone(get.getheader("Access-Control-Allow-Origin"))
