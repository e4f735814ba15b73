"""Agents for the black-box tests: certificates and cloud-agent processes.

Builds on harness.Cluster: certificates come from `cloud-controller
issue-agent-cert` against the controller's data directory, and each agent
dials the controller's agent gateway (harness passes --agent-listen on a
free port). On libvirt's test:///default driver every agent process has a
private simulated host, so ten agents on one machine are ten hosts.

Environment:
  CLOUD_AGENT   path of the cloud-agent binary (set by ctest)
"""

import atexit
import calendar
import concurrent.futures
import json
import os
import signal
import socket
import ssl
import subprocess
import time

import harness

AGENT_BIN = os.environ.get("CLOUD_AGENT")


def ctl_data_dir(cluster):
    return os.path.join(cluster.tmp, "ctl")


def issue_cert(cluster, name, out=None, timeout=60):
    """Signs a client certificate for host `name` into the directory out
    (default <tmp>/agents/<name>/pki); returns that directory."""
    if out is None:
        out = os.path.join(cluster.tmp, "agents", name, "pki")
    r = subprocess.run([cluster.controller_bin, "issue-agent-cert", "--data-dir",
                        ctl_data_dir(cluster), "--name", name, "--out", out],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise harness.HarnessError("issue-agent-cert %s failed: %s"
                                   % (name, r.stderr.decode(errors="replace")))
    return out


def issue_certs(cluster, names, certs):
    """Signs a certificate for each host in names into certs/<name> (the
    layout of cloud-hollow's --certs-dir), two at a time: the machines
    that run the simulated hosts have 2 cores."""
    def one(name):
        issue_cert(cluster, name, out=os.path.join(certs, name), timeout=120)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        list(ex.map(one, names))


class Agent:
    """One cloud-agent process for host `name`."""

    def __init__(self, cluster, name, uri="test:///default", hypervisor="test",
                 labels=None, images=None, cap_vcpus=None, cap_memory=None, extra=(),
                 env=None, controllers=None, wrap=()):
        if not AGENT_BIN or not os.access(AGENT_BIN, os.X_OK):
            raise harness.HarnessError("CLOUD_AGENT=%r is not an executable" % AGENT_BIN)
        self.cluster = cluster
        self.name = name
        self.dir = os.path.join(cluster.tmp, "agents", name)
        os.makedirs(self.dir, exist_ok=True)
        self.pki = issue_cert(cluster, name)
        self.log = os.path.join(self.dir, "agent.log")
        # controllers: the --controller list ("HOST:PORT" each), else the
        # main controller's gateway. wrap: a command the agent runs under
        # (e.g. ["ip", "netns", "exec", NS]).
        self.argv = list(wrap) + [
                     AGENT_BIN, "--connect", uri, "--name", name,
                     "--controller", ",".join(controllers or
                                              ["127.0.0.1:%d" % cluster.agent_port]),
                     "--ca", os.path.join(self.pki, "ca.pem"),
                     "--cert", os.path.join(self.pki, "cert.pem"),
                     "--key", os.path.join(self.pki, "key.pem"),
                     "--state-dir", os.path.join(self.dir, "state")]
        if hypervisor:
            self.argv += ["--hypervisor", hypervisor]
        if labels:
            self.argv += ["--labels", ",".join("%s=%s" % kv for kv in sorted(labels.items()))]
        if images:
            self.argv += ["--images", images]
        if cap_vcpus:
            self.argv += ["--cap-vcpus", str(cap_vcpus)]
        if cap_memory:
            self.argv += ["--cap-memory", str(cap_memory)]
        self.argv += list(extra) + ["run"]
        # env: variables added to the agent's environment, e.g.
        # {"CLOUD_AGENT_TEST_CHANNELS": "1"} (guest channels on the test
        # driver, served by guestpeer.py).
        self.env = dict(os.environ, **env) if env else None
        self.proc = None
        self._fh = None
        atexit.register(self.stop)

    def start(self):
        self._fh = open(self.log, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._fh,
                                     stderr=subprocess.STDOUT, cwd=self.dir, env=self.env,
                                     preexec_fn=harness._die_with_parent)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self._close()

    def stop(self):
        if self.alive():
            harness.terminate(self.proc)
        self._close()

    def _close(self):
        if self._fh:
            self._fh.close()
            self._fh = None

    def messages(self):
        """The agent's log lines as (seconds since the epoch, message)."""
        out = []
        try:
            with open(self.log, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                rec = json.loads(line)
                t = calendar.timegm(time.strptime(rec["time"][:19], "%Y-%m-%dT%H:%M:%S"))
                out.append((t + int(rec["time"][20:23]) / 1000.0, rec.get("msg", "")))
            except (ValueError, KeyError):
                continue
        return out

    def log_tail(self, lines=40):
        try:
            with open(self.log, "rb") as f:
                data = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return "(no agent log)"
        return "\n".join(data[-lines:])


def tls_client(cluster, cert_dir=None, timeout=5.0):
    """A raw TLS socket to the agent gateway (with the client cert in cert_dir)."""
    ctx = ssl.create_default_context(cafile=os.path.join(ctl_data_dir(cluster), "pki", "ca.pem"))
    if cert_dir:
        ctx.load_cert_chain(os.path.join(cert_dir, "cert.pem"), os.path.join(cert_dir, "key.pem"))
    raw = socket.create_connection(("127.0.0.1", cluster.agent_port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_until_closed(sock, timeout=5.0):
    """Reads until the peer closes; returns the bytes (raises on timeout)."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, ConnectionResetError):
            return data
        except socket.timeout:
            continue
        if not chunk:
            return data
        data += chunk
    raise AssertionError("the gateway did not close the connection in %.0fs" % timeout)


# -- one reconciling controller with one agent (test_lifecycle, test_stop_grace)

def wait_host_ready(host, timeout=30, what=None):
    """Polls until the API shows host ready (GET /v1/hosts/<host>); what:
    the words of the timeout's failure, default "host <host> ready"."""
    def ready():
        st, _, h = harness.request("GET", "/v1/hosts/" + host)
        return st == 200 and h["state"] == "ready"
    harness.poll(ready, timeout, what=what or "host %s ready" % host)


def start_with_agent(host, controller_args=(), **kw):
    """Starts a reconciling controller (more options: controller_args) with
    hello:latest and one agent named host (8 vCPUs, 8 GiB; kw further Agent
    arguments); returns the Agent once its host is ready."""
    c = harness.start(reconcile=True, controller_args=list(controller_args))
    c.add_image("hello", "latest")
    agent = Agent(c, host, cap_vcpus=8, cap_memory=8192, **kw).start()
    wait_host_ready(host, what="the agent's host to be ready")
    return agent


def stop_with_agent(agent):
    """The teardown of start_with_agent."""
    if agent:
        agent.stop()
    harness.stop()


class ModuleAgent:
    """A test module's controller and agent: `setUpModule = m.set_up` and
    `tearDownModule = m.tear_down` run start_with_agent(host, **kw) and its
    teardown; m.agent is the Agent in between."""

    def __init__(self, host, **kw):
        self.host = host
        self.kw = kw
        self.agent = None

    def set_up(self):
        self.agent = start_with_agent(self.host, **self.kw)

    def tear_down(self):
        stop_with_agent(self.agent)


def instance(ref):
    """The instance ref as the API shows it, or None."""
    st, _, body = harness.request("GET", "/v1/instances/%s" % ref)
    return body if st == 200 else None


def wait_instance(ref, pred, what, timeout=30):
    """Polls until pred(instance) holds; returns the instance."""
    def ok():
        inst = instance(ref)
        return inst if inst and pred(inst) else None
    return harness.poll(ok, timeout, what="%s: %s" % (ref, what))


# -- a minimal protobuf codec, for tests that speak the agent protocol by hand

def pb_varint(v):
    """v as a protobuf varint."""
    out = b""
    while True:
        x = v & 0x7f
        v >>= 7
        if v:
            out += bytes([x | 0x80])
        else:
            return out + bytes([x])


def pb_string(field, s):
    """A length-delimited field (str or bytes)."""
    b = s.encode() if isinstance(s, str) else s
    return pb_varint(field << 3 | 2) + pb_varint(len(b)) + b


def pb_uint(field, v):
    """A varint field."""
    return pb_varint(field << 3) + pb_varint(v)


def pb_msg(*fields):
    """A message of (field, value) pairs: an int a varint field, str or
    bytes a length-delimited one."""
    return b"".join(pb_uint(f, v) if isinstance(v, int) else pb_string(f, v)
                    for f, v in fields)


def pb_parse(b):
    """{field: [int or bytes, ...]} of one protobuf message (no groups;
    fixed64 and fixed32 fields as their 8 or 4 bytes)."""
    out, i = {}, 0
    while i < len(b):
        key, i = _pb_read_varint(b, i)
        if key & 7 == 0:
            v, i = _pb_read_varint(b, i)
        elif key & 7 == 2:
            n, i = _pb_read_varint(b, i)
            v, i = b[i:i + n], i + n
        elif key & 7 == 1:
            v, i = b[i:i + 8], i + 8
        elif key & 7 == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise AssertionError("unexpected wire type %d" % (key & 7))
        out.setdefault(key >> 3, []).append(v)
    return out


def _pb_read_varint(b, i):
    v = shift = 0
    while True:
        x = b[i]
        i += 1
        v |= (x & 0x7f) << shift
        shift += 7
        if not x & 0x80:
            return v, i
