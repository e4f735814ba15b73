"""Agent enrolment with join tokens, the CA pin, revocation and the TLS rules
of the agent gateway (docs/security.md, "Agent enrolment").

One controller (gateway deadline 3 s through --request-timeout) and agents on
libvirt's test:///default driver. Python's ssl module plays the hostile
peers: a client without a certificate, with another CA's certificate, with an
expired one, speaking TLS 1.1, and a server presenting an agent certificate.
"""

import datetime
import os
import re
import socket
import ssl
import stat
import struct
import subprocess
import sys
import threading
import time
import unittest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import agentlib
import harness
from agentlib import pb_parse, pb_string, pb_uint, pb_varint  # noqa: F401
from harness import poll

DEADLINE_S = 3
AGENTS = []


def setUpModule():
    harness.start(controller_args=["--request-timeout", str(DEADLINE_S)])


def tearDownModule():
    for a in AGENTS:
        a.stop()
    harness.stop()


def ctl(*args, check=True):
    c = harness.cluster()
    r = subprocess.run([c.controller_bin] + list(args) + ["--db", c.db_url],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("cloud-controller %s: exit %d: %s" % (args, r.returncode, r.stderr))
    return r


def new_join_command(ttl=None):
    """Runs join-token create; returns (token, pin) from the printed command."""
    c = harness.cluster()
    args = ["join-token", "create", "--data-dir", agentlib.ctl_data_dir(c),
            "--controller", "127.0.0.1:%d" % c.agent_port]
    if ttl:
        args += ["--ttl", ttl]
    out = ctl(*args).stdout.strip()
    m = re.fullmatch(r"cloud-agent join --controller 127\.0\.0\.1:\d+ --token "
                     r"([0-9a-f]{16}\.[0-9a-f]{64}) --ca-pin (sha256:[0-9a-f]{64})", out)
    if not m:
        raise AssertionError("unexpected join-token output: %r" % out)
    return m.group(1), m.group(2)


def agent_join(name, token, pin, state_dir=None, controller=None):
    c = harness.cluster()
    state_dir = state_dir or os.path.join(c.tmp, "joined", name)
    argv = [agentlib.AGENT_BIN, "--name", name, "--state-dir", state_dir,
            "join", "--controller", controller or "127.0.0.1:%d" % c.agent_port,
            "--token", token, "--ca-pin", pin]
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    return r, os.path.join(state_dir, "pki")


def joined_agent(name):
    """join, then an Agent running on what join wrote (no --ca/--cert/--key)."""
    token, pin = new_join_command()
    r, pki = agent_join(name, token, pin)
    if r.returncode != 0:
        raise AssertionError("join %s failed: %s" % (name, r.stderr))
    a = agentlib.Agent(harness.cluster(), name)
    state = os.path.dirname(pki)
    a.argv = [agentlib.AGENT_BIN, "--connect", "test:///default", "--hypervisor", "test",
              "--name", name, "--controller", "127.0.0.1:%d" % harness.cluster().agent_port,
              "--state-dir", state, "run"]
    AGENTS.append(a)
    return a.start(), pki


def host_state(name):
    return harness.psql("SELECT state FROM hosts WHERE name = '%s'" % name)


def read_frames(sock, want, timeout=10.0):
    """Envelopes ({field: [...]}) until one has field `want` or Error (9)."""
    buf, deadline, seen = b"", time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            env = pb_parse(buf[4:4 + n])
            buf = buf[4 + n:]
            seen.append(env)
            if want in env or 9 in env:
                return env, seen
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    raise AssertionError("no envelope with field %d (saw %r)" % (want, seen))


def frame(env_field, body):
    env = pb_string(env_field, body)
    return struct.pack(">I", len(env)) + env


def error_of(data):
    """(code, message) of an Error envelope at the start of data, or None."""
    if len(data) < 6:
        return None
    n = struct.unpack(">I", data[:4])[0]
    env = pb_parse(data[4:4 + n])
    if 9 not in env:  # Envelope.error
        return None
    err = pb_parse(env[9][0])
    return err.get(1, [0])[0], err.get(2, [b""])[0].decode(errors="replace")


def make_ca(cn="other CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca_cert, ca_key, cn, days_valid=(-1, 30)):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=days_valid[0]))
            .not_valid_after(now + datetime.timedelta(days=days_valid[1]))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def write_pair(d, cert, key):
    os.makedirs(d, exist_ok=True)
    cp, kp = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    with open(cp, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(kp, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return d


def cluster_ca():
    d = os.path.join(agentlib.ctl_data_dir(harness.cluster()), "pki")
    with open(os.path.join(d, "ca.pem"), "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(d, "ca.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return cert, key


def gateway_refuses(test, cert_dir, what):
    """A TLS client with cert_dir's pair sends a Hello: the gateway must end
    the session without answering (handshake alert or close)."""
    c = harness.cluster()
    s = None
    try:
        s = agentlib.tls_client(c, cert_dir=cert_dir)
        s.sendall(frame(1, b""))
        data = agentlib.read_until_closed(s, timeout=DEADLINE_S + 5)
        test.assertEqual(data, b"", "%s: the gateway answered %r" % (what, data[:60]))
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass  # refused in the handshake
    finally:
        if s is not None:
            s.close()


def revoked_refusal(cert_dir):
    """True if the gateway refuses cert_dir's certificate as revoked."""
    # Sends nothing: the refusal comes right after the handshake, and a
    # close with unread input would reset the connection and lose it.
    s = agentlib.tls_client(harness.cluster(), cert_dir=cert_dir)
    try:
        err = error_of(agentlib.read_until_closed(s))
    finally:
        s.close()
    return err is not None and "revoked" in err[1]


class JoinTest(harness.TestCase):

    def test_01_join_then_run_registers_the_host(self):
        a, pki = joined_agent("joined1")
        poll(lambda: host_state("joined1") == "ready", 20,
             what="joined1 registered and ready (agent log: %s)" % a.log_tail(10))
        # key 0600, directory 0700; the certificate is for clientAuth only,
        # CN = the host name, and the CA is the cluster's.
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(pki, "key.pem")).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(pki).st_mode), 0o700)
        with open(os.path.join(pki, "cert.pem"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        self.assertEqual(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
                         "joined1")
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        self.assertEqual(list(eku), [ExtendedKeyUsageOID.CLIENT_AUTH])
        self.assertEqual(cert.issuer, cluster_ca()[0].subject)
        serial = "%X" % cert.serial_number
        self.assertEqual(harness.psql("SELECT host_name FROM agent_certs WHERE serial = '%s'"
                                      % serial), "joined1")
        self.assertIn("host.joined", harness.psql(
            "SELECT type FROM events WHERE name = 'joined1'"))
        listing = ctl("join-token", "list").stdout
        self.assertIn("used by joined1", listing)

    def test_02_token_is_one_time(self):
        token, pin = new_join_command()
        r, _ = agent_join("once1", token, pin)
        self.assertEqual(r.returncode, 0, r.stderr)
        r, pki = agent_join("once2", token, pin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("already used by once1", r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertFalse(os.path.exists(os.path.join(pki, "cert.pem")))
        self.assertEqual(harness.psql("SELECT count(*) FROM agent_certs WHERE host_name = "
                                      "'once2'"), "0")

    def test_02b_a_host_name_with_a_live_certificate_cannot_be_taken(self):
        token, pin = new_join_command()
        self.assertEqual(agent_join("taken1", token, pin)[0].returncode, 0)
        token2, _ = new_join_command()
        r, _ = agent_join("taken1", token2, pin, state_dir=os.path.join(
            harness.cluster().tmp, "joined", "taken1-again"))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("host taken1 already has certificate", r.stderr)
        ctl("cert", "revoke", "--host", "taken1")
        # The refusal left token2 unused: it works once the name is free.
        r, _ = agent_join("taken1", token2, pin, state_dir=os.path.join(
            harness.cluster().tmp, "joined", "taken1-again"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_03_expired_and_unknown_tokens_are_refused(self):
        token, pin = new_join_command(ttl="2m")
        tid = token.split(".")[0]
        harness.psql("UPDATE join_tokens SET created_at = now() - interval '2 hours', "
                     "expires_at = now() - interval '1 hour' WHERE id = '%s'" % tid)
        r, _ = agent_join("late1", token, pin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("expired", r.stderr)
        # Right id, wrong secret; and a token that was never issued.
        r, _ = agent_join("late2", tid + "." + "0" * 64, pin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("not known", r.stderr)
        r, _ = agent_join("late3", "0" * 16 + "." + "1" * 64, pin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("not known", r.stderr)
        # Bad --ttl values are usage errors.
        for bad in ("0", "59s", "31d", "1w", "-5m", "abc"):
            r = ctl("join-token", "create", "--data-dir", agentlib.ctl_data_dir(
                harness.cluster()), "--ttl", bad, check=False)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))

    def test_03b_an_unused_token_can_be_deleted(self):
        token, pin = new_join_command()
        tid = token.split(".")[0]
        self.assertEqual(ctl("join-token", "delete", tid).returncode, 0)
        r, _ = agent_join("deleted1", token, pin)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("not known", r.stderr)
        r = ctl("join-token", "delete", tid, check=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("does not exist or was used", r.stderr)
        for bad in (["delete"], ["delete", "xyz"], ["delete", tid, tid]):
            self.assertEqual(ctl("join-token", *bad, check=False).returncode, 2, bad)

    def test_04_wrong_pin_is_refused_before_sending_the_token(self):
        token, pin = new_join_command()
        wrong = "sha256:" + "ab" * 32
        r, pki = agent_join("pin1", token, wrong)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn("does not present a CA with pin " + wrong, lines[0])
        self.assertIn(pin, lines[0])  # it says which CA it saw
        self.assertFalse(os.path.exists(pki))
        # The token was never sent: it still works.
        r, _ = agent_join("pin1", token, pin)
        self.assertEqual(r.returncode, 0, r.stderr)
        for bad in ("sha256:abc", "md5:" + "ab" * 32, "ab" * 32, "sha256:" + "zz" * 32):
            r, _ = agent_join("pin2", token, bad)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))

    def test_05_without_a_certificate_only_join_is_accepted(self):
        c = harness.cluster()
        s = agentlib.tls_client(c, cert_dir=None)
        s.sendall(frame(1, pb_string(1, "sneaky")))  # Hello{host_name}
        data = agentlib.read_until_closed(s)
        s.close()
        self.assertEqual(error_of(data)[0], 4, data)  # UNAUTHENTICATED
        self.assertIn("only a JoinRequest", error_of(data)[1])
        self.assertEqual(harness.psql("SELECT count(*) FROM hosts WHERE name = 'sneaky'"), "0")

    def test_06_bad_certificate_requests_are_refused_and_keep_the_token(self):
        token, pin = new_join_command()
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other")]))
               .sign(key, hashes.SHA256())).public_bytes(serialization.Encoding.PEM)
        for what, host, pem, want in [
            ("CN differs from host_name", "csr1", csr, "exactly one CN"),
            ("not a CSR", "csr1", b"-----BEGIN CERTIFICATE REQUEST-----\nxx\n", "not a PEM"),
            ("bad host name", "CSR_1", csr, "not valid"),
        ]:
            with self.subTest(what=what):
                s = agentlib.tls_client(harness.cluster(), cert_dir=None)
                body = pb_string(1, token) + pb_string(2, host) + pb_string(3, pem)
                s.sendall(frame(12, body))
                data = agentlib.read_until_closed(s)
                s.close()
                err = error_of(data)
                self.assertIsNotNone(err, data)
                self.assertEqual(err[0], 4)
                self.assertIn(want, err[1])
        r, _ = agent_join("csr1", token, pin)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_07_other_ca_expired_and_tls11_are_refused(self):
        ca, ca_key = make_ca()
        leaf, key = make_leaf(ca, ca_key, "intruder")
        gateway_refuses(self, write_pair(os.path.join(harness.cluster().tmp, "other-ca"),
                                         leaf, key), "another CA")
        cca, cca_key = cluster_ca()
        leaf, key = make_leaf(cca, cca_key, "expired1", days_valid=(-30, -1))
        gateway_refuses(self, write_pair(os.path.join(harness.cluster().tmp, "expired"),
                                         leaf, key), "expired certificate")
        # The control: the same construction, valid, is accepted.
        leaf, key = make_leaf(cca, cca_key, "valid1")
        s = agentlib.tls_client(harness.cluster(), cert_dir=write_pair(
            os.path.join(harness.cluster().tmp, "valid"), leaf, key))
        s.sendall(frame(1, b""))  # an empty Hello: refused with an Error frame
        data = agentlib.read_until_closed(s)
        s.close()
        self.assertIsNotNone(error_of(data), data)
        # TLS 1.1, offered by a client that allows it.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        raw = socket.create_connection(("127.0.0.1", harness.cluster().agent_port), timeout=5)
        with self.assertRaises(ssl.SSLError) as cm:
            ctx.wrap_socket(raw).close()
        raw.close()
        self.assertIn("VERSION", str(cm.exception).upper())

    def test_08_revoked_certificate_is_disconnected_and_refused(self):
        a, pki = joined_agent("revoked1")
        poll(lambda: host_state("revoked1") == "ready", 20, what="revoked1 ready")
        epoch = int(harness.psql("SELECT session_epoch FROM hosts WHERE name = 'revoked1'"))
        r = ctl("cert", "revoke", "--host", "revoked1")
        self.assertIn("revoked 1 certificate", r.stdout)
        log = harness.cluster().controller_log_tail
        t0 = time.monotonic()
        poll(lambda: re.search(r"certificate [0-9A-F]+ was revoked", log(300)), 5,
             what="the connected agent dropped")
        dropped = time.monotonic() - t0
        # It reconnects (back-off) and is refused at once, never registering.
        poll(lambda: re.search(r"certificate [0-9A-F]+ is revoked", log(300)), 20,
             what="the reconnecting agent refused")
        self.assertEqual(int(harness.psql(
            "SELECT session_epoch FROM hosts WHERE name = 'revoked1'")), epoch)
        self.assertIn("revoked", ctl("cert", "list").stdout)
        # Revoking by serial: an out-of-band certificate (issue-agent-cert).
        oob = agentlib.issue_cert(harness.cluster(), "oob1")
        with open(os.path.join(oob, "cert.pem"), "rb") as f:
            serial = x509.load_pem_x509_certificate(f.read()).serial_number
        hexs = "%X" % serial
        colons = ":".join(re.findall("..", ("0" if len(hexs) % 2 else "") + hexs.lower()))
        r = ctl("cert", "revoke", colons)
        self.assertIn(hexs, r.stdout)
        poll(lambda: revoked_refusal(oob), 15,
             what="oob1's certificate refused after revocation")
        a.stop()
        sys.stderr.write("\n[test_join] connected agent dropped %.2fs after `cert revoke` "
                         "returned\n" % dropped)
        self.assertLess(dropped, 5)
        for bad in (["revoke"], ["revoke", "xyz"], ["revoke", "AB", "--host", "h"],
                    ["frob"]):
            self.assertEqual(ctl("cert", *bad, check=False).returncode, 2, bad)

    def test_09_an_agent_certificate_cannot_pose_as_a_controller(self):
        # A server that presents an agent's certificate (same CA, clientAuth
        # only), with the CA in its chain so the pin matches.
        cca = os.path.join(agentlib.ctl_data_dir(harness.cluster()), "pki", "ca.pem")
        pki = agentlib.issue_cert(harness.cluster(), "127.0.0.1")
        chain = os.path.join(pki, "chain.pem")
        with open(chain, "wb") as out:
            for p in (os.path.join(pki, "cert.pem"), cca):
                with open(p, "rb") as f:
                    out.write(f.read())
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(chain, os.path.join(pki, "key.pem"))
        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        handshakes = []

        def serve():
            srv.settimeout(20)
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                try:
                    with sctx.wrap_socket(conn, server_side=True) as t:
                        handshakes.append("ok")
                        t.recv(100)
                except (ssl.SSLError, OSError) as e:
                    handshakes.append(str(e))

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        try:
            _, pin = new_join_command()
            token, _ = new_join_command()
            r, _ = agent_join("fake1", token, pin, controller="127.0.0.1:%d" % port)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("unsuitable certificate purpose", r.stderr)
            # join checks the purpose after its handshake, so the server saw
            # one complete: wait until its thread has said so (under load it
            # may append after join returned), then watch `run` alone.
            poll(lambda: len(handshakes) >= 1, 10, what="the join's handshake recorded")
            del handshakes[:]
            # And `run` with the cluster CA refuses it too.
            own = agentlib.issue_cert(harness.cluster(), "fake2")
            a = agentlib.Agent(harness.cluster(), "fake2")
            a.argv = [agentlib.AGENT_BIN, "--connect", "test:///default", "--hypervisor", "test",
                      "--name", "fake2", "--controller", "127.0.0.1:%d" % port,
                      "--ca", cca, "--cert", os.path.join(own, "cert.pem"),
                      "--key", os.path.join(own, "key.pem"),
                      "--state-dir", os.path.join(harness.cluster().tmp, "fake2"), "run"]
            AGENTS.append(a)
            a.start()
            poll(lambda: "unsuitable certificate purpose" in a.log_tail(50)
                 or "certificate verify failed" in a.log_tail(50), 15,
                 what="the agent to refuse the server (log: %s)" % a.log_tail(5))
            a.stop()
            self.assertNotIn("ok", handshakes)
        finally:
            srv.close()

    def test_09b_the_certificate_binds_the_host_and_its_instances(self):
        c = harness.cluster()
        token, pin = new_join_command()
        r, pki = agent_join("bind1", token, pin)
        self.assertEqual(r.returncode, 0, r.stderr)
        c.add_image("hello", "latest")
        other = c.add_host("bind2")
        inst = c.add_placed_instance("bind2-inst", other)
        hello = (pb_string(1, "bind1")
                 + pb_string(3, pb_uint(1, 2) + pb_uint(2, 2048) + pb_uint(3, 10))
                 + pb_string(4, pb_string(1, "x86_64") + pb_string(4, "test"))
                 + pb_uint(7, 1))
        # A Hello naming another host than the certificate's CN.
        s = agentlib.tls_client(c, cert_dir=pki)
        s.sendall(frame(1, hello.replace(b"bind1", b"bind2")))
        err = error_of(agentlib.read_until_closed(s))
        s.close()
        self.assertEqual(err[0], 4, err)
        self.assertIn("certificate", err[1])
        # Its own name: a session; then a status report for bind2's
        # instance is refused and changes nothing.
        s = agentlib.tls_client(c, cert_dir=pki, timeout=2.0)
        try:
            s.sendall(frame(1, hello))
            env, _ = read_frames(s, 2)
            self.assertIn(2, env, env)  # Welcome
            epoch = pb_parse(env[2][0])[2][0]
            status = (pb_uint(1, epoch) + pb_string(2, inst) + pb_uint(3, 1)
                      + pb_uint(4, 6) + pb_uint(5, 9))  # EXITED, exit code 9
            s.sendall(frame(5, status))
            env, _ = read_frames(s, 9)
            err = pb_parse(env[9][0])
            self.assertEqual(err[1][0], 7, err)  # NOT_FOUND
            self.assertIn(b"not assigned", err[2][0])
        finally:
            s.close()
        self.assertEqual(harness.psql("SELECT state FROM instances WHERE id = '%s'" % inst),
                         "running")

    def test_09c_admin_api_for_tokens_and_certificates(self):
        c = harness.cluster()
        st, _, body = harness.request("POST", "/v1/join-tokens", {"ttl_seconds": 120})
        self.assertEqual(st, 201, body)
        self.assertEqual(set(body), {"id", "token", "expires_at", "ca_pin", "command"})
        self.assertEqual(body["command"],
                         "cloud-agent join --controller 127.0.0.1:%d --token %s --ca-pin %s"
                         % (c.agent_port, body["token"], body["ca_pin"]))
        self.assertEqual(body["ca_pin"], new_join_command()[1])
        r, pki = agent_join("apijoin1", body["token"], body["ca_pin"])
        self.assertEqual(r.returncode, 0, r.stderr)
        st, _, lst = harness.request("GET", "/v1/join-tokens")
        self.assertEqual(st, 200, lst)
        mine = [t for t in lst["items"] if t["id"] == body["id"]]
        self.assertEqual(len(mine), 1, lst)
        self.assertEqual((mine[0]["state"], mine[0]["used_by"]), ("used", "apijoin1"))
        self.assertNotIn("token", mine[0])
        st, _, certs = harness.request("GET", "/v1/agent-certs")
        self.assertEqual(st, 200, certs)
        with open(os.path.join(pki, "cert.pem"), "rb") as f:
            serial = "%X" % x509.load_pem_x509_certificate(f.read()).serial_number
        self.assertEqual([x["host"] for x in certs["items"] if x["serial"] == serial],
                         ["apijoin1"])
        st, _, out = harness.request("POST", "/v1/agent-certs/revoke", {"serial": serial.lower()})
        self.assertEqual((st, out), (200, {"revoked": 1}))
        st, _, out = harness.request("POST", "/v1/agent-certs/revoke", {"host": "apijoin1"})
        self.assertEqual((st, out), (200, {"revoked": 0}))
        poll(lambda: revoked_refusal(pki), 15, what="apijoin1 refused after the API revoked it")
        for path, bad, field in [
            ("/v1/join-tokens", {"ttl_seconds": 59}, "ttl_seconds"),
            ("/v1/join-tokens", {"ttl_seconds": "1h"}, "ttl_seconds"),
            ("/v1/join-tokens", {"ttl": 60}, "ttl"),
            ("/v1/agent-certs/revoke", {"serial": "xyz"}, "serial"),
            ("/v1/agent-certs/revoke", {"host": "Bad_Host"}, "host"),
            ("/v1/agent-certs/revoke", {"serial": "AB", "host": "h1"}, None),
            ("/v1/agent-certs/revoke", {"frob": 1}, "frob"),
        ]:
            st, _, out = harness.request("POST", path, bad)
            self.assertEqual(st, 422, (path, bad, out))
            if field:
                self.assertEqual(out["error"].get("field"), field, out)
        viewer = c.create_token("join-viewer", "viewer")
        # A token made outside the API reaches the controller through the
        # event stream: wait until it is accepted before expecting 403s.
        poll(lambda: harness.request("GET", "/v1/services",
                                     headers={"Authorization": "Bearer " + viewer})[0] == 200,
             5, what="the viewer token to be accepted")
        for method, path in [("POST", "/v1/join-tokens"), ("GET", "/v1/join-tokens"),
                             ("GET", "/v1/agent-certs"), ("POST", "/v1/agent-certs/revoke")]:
            st, _, out = harness.request(method, path, {} if method == "POST" else None,
                                         headers={"Authorization": "Bearer " + viewer})
            self.assertEqual(st, 403, (method, path, out))

    def test_10_first_frame_deadline_is_not_reset_by_bytes(self):
        c = harness.cluster()
        # TLS up, no certificate, a frame header trickled one byte a second.
        s = agentlib.tls_client(c, cert_dir=None, timeout=1.0)
        t0 = time.monotonic()
        closed = None
        for i in range(4 * DEADLINE_S):
            try:
                s.sendall(b"\x00" if i < 3 else b"")
                if s.recv(100) == b"":
                    closed = time.monotonic() - t0
                    break
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError):
                closed = time.monotonic() - t0
                break
        s.close()
        self.assertIsNotNone(closed, "the gateway kept a trickling client")
        self.assertLess(closed, DEADLINE_S + 2)
        self.assertGreater(closed, DEADLINE_S - 1)
        # A TCP client that never starts TLS is closed by the same deadline.
        raw = socket.create_connection(("127.0.0.1", c.agent_port), timeout=DEADLINE_S + 3)
        t0 = time.monotonic()
        try:
            self.assertEqual(raw.recv(100), b"")
        except ConnectionResetError:
            pass
        self.assertLess(time.monotonic() - t0, DEADLINE_S + 2)
        raw.close()


if __name__ == "__main__":
    unittest.main()
