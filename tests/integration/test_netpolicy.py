"""Links are the firewall, on real namespaces and real nftables (issue 15).

One "host" network namespace holds a Linux bridge, cloudbr0, with the
host's gateway address 10.240.3.1/24; three "guest" namespaces hang off it
by veth with 10.240.3.5, .6 and .7; a fourth, "outside", is reached from
the host through another veth (198.51.100.0/24) and routes the cluster
CIDR back to the host. The policy is applied in the host namespace by the
real `cloud-agent net policy --file` (agent/netpolicy.c, libnftables).

- .5 accepts only from .6: .6 connects, .7 does not (dropped: times out),
  and the host itself (the gateway) does; .7 can still ping .5 (ICMP echo
  is allowed for diagnosis).
- a live update allowing .7: .7 connects, and a connection .6 opened
  before the update carries on; a further update that no longer allows
  .6 refuses new connections from .6 but leaves the established one alone.
- the outside (routed, not bridged) is refused by .5 until .5 is open.
- masquerade: a guest connecting to the outside is seen there with the
  host's address, not its own.

Needs root (ip netns); fails, never skips, without it. Every namespace is
deleted even when the test fails.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

AGENT = os.environ.get("CLOUD_AGENT")
TAG = "np%d" % (os.getpid() % 100000)
HOST, OUT = TAG + "h", TAG + "o"
GUESTS = {5: TAG + "g5", 6: TAG + "g6", 7: TAG + "g7"}
GW, HOST_OUT, OUTSIDE = "10.240.3.1", "198.51.100.1", "198.51.100.2"
PORT, OUT_PORT = 7000, 7001
TMP = None

# A TCP server: answers each line with "<peer address> <line>".
SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64)
print("listening", flush=True)
def serve(c, peer):
    f = c.makefile("rwb", buffering=0)
    for line in f:
        f.write(("%s %s\n" % (peer[0], line.decode().strip())).encode())
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""

# One connection, one line: prints the answer, exits 1 when it fails.
CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    c.sendall(b"hello\n"); print(c.makefile().readline().strip())
except OSError as e:
    print("FAILED %s" % e); sys.exit(1)
"""

# A connection kept open: one line per line on stdin, each answer printed.
KEEP = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
f = c.makefile("rwb", buffering=0)
for line in sys.stdin:
    try:
        f.write(line.encode()); print(f.readline().decode().strip(), flush=True)
    except OSError as e:
        print("FAILED %s" % e, flush=True)
"""

# ICMP echo to argv[1]: exit 0 on a reply within 2 s.
PING = r"""
import os, socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(2)
def csum(b):
    n = sum(struct.unpack("!%dH" % (len(b) // 2), b)); n = (n >> 16) + (n & 0xffff)
    return ~(n + (n >> 16)) & 0xffff
ident = os.getpid() & 0xffff
pkt = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"netpolicy!"
pkt = pkt[:2] + struct.pack("!H", csum(pkt)) + pkt[4:]
s.sendto(pkt, (sys.argv[1], 0)); end = time.time() + 2
try:
    while time.time() < end:
        d, a = s.recvfrom(1500); h = (d[0] & 15) * 4
        if a[0] == sys.argv[1] and d[h] == 0 and struct.unpack("!H", d[h+4:h+6])[0] == ident:
            sys.exit(0)
except socket.timeout:
    pass
sys.exit(1)
"""


def run(*args, check=True, timeout=30):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                      r.stdout, r.stderr))
    return r


def ns(name, *args, **kw):
    return run("ip", "netns", "exec", name, *args, **kw)


def py(name, script, *args, **kw):
    return ns(name, sys.executable, "-c", script, *[str(a) for a in args], **kw)


def connect(name, addr, port=PORT, timeout=2):
    """(ok, answer) of one connection from namespace name."""
    r = py(name, CLIENT, addr, port, timeout, check=False, timeout=timeout + 20)
    return r.returncode == 0, r.stdout.strip()


def apply(insts):
    """Applies a policy in the host namespace with cloud-agent net policy."""
    doc = {"cluster_cidr": "10.240.0.0/16", "subnet": "10.240.3.0/24",
           "bridge": "cloudbr0", "gateway": GW,
           "instances": [dict(address="10.240.3.%d" % n, **spec) for n, spec in insts.items()]}
    path = os.path.join(TMP, "policy.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    ns(HOST, AGENT, "net", "policy", "--file", path)


def net_up():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise AssertionError("test_netpolicy needs root and iproute2 (ip netns)")
    if not AGENT or not os.access(AGENT, os.X_OK):
        raise AssertionError("CLOUD_AGENT must name the cloud-agent binary")
    for n in [HOST, OUT] + list(GUESTS.values()):
        run("ip", "netns", "add", n)
        run("ip", "-n", n, "link", "set", "lo", "up")
    run("ip", "-n", HOST, "link", "add", "cloudbr0", "type", "bridge")
    run("ip", "-n", HOST, "addr", "add", GW + "/24", "dev", "cloudbr0")
    run("ip", "-n", HOST, "link", "set", "cloudbr0", "up")
    for i, g in GUESTS.items():
        run("ip", "-n", HOST, "link", "add", "vg%d" % i, "type", "veth",
            "peer", "name", "eth0", "netns", g)
        run("ip", "-n", HOST, "link", "set", "vg%d" % i, "master", "cloudbr0", "up")
        run("ip", "-n", g, "addr", "add", "10.240.3.%d/24" % i, "dev", "eth0")
        run("ip", "-n", g, "link", "set", "eth0", "up")
        run("ip", "-n", g, "route", "add", "default", "via", GW)
    run("ip", "-n", HOST, "link", "add", "uplink", "type", "veth",
        "peer", "name", "eth0", "netns", OUT)
    run("ip", "-n", HOST, "addr", "add", HOST_OUT + "/24", "dev", "uplink")
    run("ip", "-n", HOST, "link", "set", "uplink", "up")
    run("ip", "-n", OUT, "addr", "add", OUTSIDE + "/24", "dev", "eth0")
    run("ip", "-n", OUT, "link", "set", "eth0", "up")
    # The outside can route to the guests: without masquerade, replies to a
    # guest would make it back, and the listener would see the guest.
    run("ip", "-n", OUT, "route", "add", "10.240.0.0/16", "via", HOST_OUT)
    ns(HOST, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    # Off, so that the test sees netpolicy_apply turn br_netfilter on.
    ns(HOST, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0")


def net_down():
    for n in [HOST, OUT] + list(GUESTS.values()):
        subprocess.run(["ip", "netns", "del", n], capture_output=True)


SERVERS = []


def start_server(name, port):
    p = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-u", "-c",
                          SERVER, str(port)], stdout=subprocess.PIPE, text=True)
    SERVERS.append(p)
    assert p.stdout.readline().strip() == "listening"


def setUpModule():
    global TMP
    try:
        TMP = tempfile.mkdtemp(prefix="test_netpolicy.")
        net_up()
        start_server(GUESTS[5], PORT)
        start_server(OUT, OUT_PORT)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    for p in SERVERS:
        p.kill()
        p.wait()
        p.stdout.close()
    net_down()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


ONLY_6 = {5: {"allowed": ["10.240.3.6"]}}


class NetPolicy(unittest.TestCase):
    def test_linked_source_only(self):
        apply(ONLY_6)
        out = ns(HOST, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables").stdout
        self.assertEqual(out.strip(), "1", "netpolicy_apply turns br_netfilter on")
        ok, ans = connect(GUESTS[6], "10.240.3.5")
        self.assertTrue(ok, ans)
        self.assertEqual(ans, "10.240.3.6 hello")
        ok, ans = connect(GUESTS[7], "10.240.3.5")
        self.assertFalse(ok, "an unlinked guest on the same bridge got through: " + ans)
        self.assertIn("timed out", ans)
        # The host (its gateway address on the bridge) is always allowed.
        ok, ans = connect(HOST, "10.240.3.5")
        self.assertTrue(ok, ans)
        self.assertEqual(ans, GW + " hello")
        # ICMP echo is allowed from anyone, for diagnosis.
        self.assertEqual(py(GUESTS[7], PING, "10.240.3.5", check=False).returncode, 0)

    def test_live_update_keeps_established(self):
        apply(ONLY_6)
        keep = subprocess.Popen(["ip", "netns", "exec", GUESTS[6], sys.executable, "-u",
                                 "-c", KEEP, "10.240.3.5", str(PORT)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            def say(line):
                keep.stdin.write(line + "\n")
                keep.stdin.flush()
                return keep.stdout.readline().strip()

            self.assertEqual(say("before"), "10.240.3.6 before")
            self.assertFalse(connect(GUESTS[7], "10.240.3.5")[0])

            apply({5: {"allowed": ["10.240.3.6", "10.240.3.7"]}})
            ok, ans = connect(GUESTS[7], "10.240.3.5")
            self.assertTrue(ok, "after the update allowing .7: " + ans)
            self.assertEqual(ans, "10.240.3.7 hello")
            self.assertEqual(say("during"), "10.240.3.6 during")

            # .6 unlinked: no new connection, the established one goes on.
            apply({5: {"allowed": ["10.240.3.7"]}})
            self.assertFalse(connect(GUESTS[6], "10.240.3.5")[0])
            self.assertTrue(connect(GUESTS[7], "10.240.3.5")[0])
            self.assertEqual(say("after"), "10.240.3.6 after")
        finally:
            keep.kill()
            keep.wait()
            keep.stdin.close()
            keep.stdout.close()

    def test_outside_refused_until_open(self):
        apply(ONLY_6)
        ok, ans = connect(OUT, "10.240.3.5")
        self.assertFalse(ok, "the outside got through to a closed instance: " + ans)
        apply({5: {"open": True}})
        ok, ans = connect(OUT, "10.240.3.5")
        self.assertTrue(ok, ans)
        self.assertEqual(ans, OUTSIDE + " hello")  # inbound is not masqueraded
        ok, ans = connect(GUESTS[7], "10.240.3.5")
        self.assertTrue(ok, ans)

    def test_masquerade_to_outside(self):
        apply(ONLY_6)
        ok, ans = connect(GUESTS[6], OUTSIDE, OUT_PORT)
        self.assertTrue(ok, ans)
        self.assertEqual(ans, HOST_OUT + " hello",
                         "the outside should see the host's address, not the guest's")
        # Between guests of the cluster there is no masquerade.
        ok, ans = connect(GUESTS[6], "10.240.3.5")
        self.assertEqual(ans, "10.240.3.6 hello")


if __name__ == "__main__":
    unittest.main()
