"""The host network built from the controller's plan (issue 15,
docs/network.md): agents started with --host-network get a HostNetwork
(their IPAM subnet, gateway, the VXLAN id, every other such host's
underlay address and subnet) and build the bridge and the overlay with
libnl; a host that joins later is added to the others' overlay at once.

Each agent runs in a network namespace of its own (its "host"), joined to
the others by veth pairs on a bridge in the root namespace (the underlay
"switch"); a controller replica's agent gateway listens on the switch's
address. Then, from inside host A's namespace, host B's gateway (the first
address of B's subnet, held by B's bridge) answers ping over the overlay:
the packet goes A's route -> A's VXLAN -> the underlay -> B's VXLAN ->
B's bridge. Host C joins afterwards: A and B get C as a peer without a
restart, and C reaches both.

Needs root (ip netns, libnl); fails, never skips, without it. The
namespaces, the veths, the switch and /etc/netns/<ns> are removed even
when the test fails.
"""

import ipaddress
import os
import shutil
import socket
import subprocess
import unittest

import agentlib
import harness
from netnslib import forget_host, ip, name_host
from harness import poll, request

TAG = os.getpid() % 100000
SW = "hnsw%d" % TAG
NET = "10.215.%d" % (os.getpid() % 250 + 1)
SW_IP = NET + ".1"
HOSTS = {"a": 11, "b": 12, "c": 13}   # host -> last byte of its underlay address
HOSTNAME = socket.gethostname()
C = REPLICA = None
AGENTS = {}
PORT = None


def ns(h):
    return "hn%s%d" % (h, TAG)



def host_up(h):
    n, vr, vn = ns(h), "hr%s%d" % (h, TAG), "hv%s%d" % (h, TAG)
    ip("netns", "add", n)
    ip("link", "add", vr, "type", "veth", "peer", "name", vn)
    ip("link", "set", vn, "netns", n)
    ip("link", "set", vr, "master", SW)
    ip("link", "set", vr, "up")
    ip("-n", n, "addr", "add", "%s.%d/24" % (NET, HOSTS[h]), "dev", vn)
    ip("-n", n, "link", "set", vn, "up")
    ip("-n", n, "link", "set", "lo", "up")
    name_host(n, SW_IP, HOSTNAME)


def net_up():
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ping") is None:
        raise harness.HarnessError("host_network needs root, iproute2 and ping")
    ip("link", "add", SW, "type", "bridge")
    ip("addr", "add", SW_IP + "/24", "dev", SW)
    ip("link", "set", SW, "up")


def net_down():
    if shutil.which("ip") is None:
        return
    for h in HOSTS:
        ip("link", "del", "hr%s%d" % (h, TAG), check=False)
        ip("netns", "del", ns(h), check=False)
        forget_host(ns(h))
    ip("link", "del", SW, check=False)


def start_agent(h):
    host_up(h)
    AGENTS[h] = agentlib.Agent(C, "hn%s" % h, cap_vcpus=8, cap_memory=8192,
                               controllers=["%s:%d" % (HOSTNAME, PORT)],
                               wrap=["ip", "netns", "exec", ns(h)],
                               extra=["--host-network"]).start()


def setUpModule():
    global C, REPLICA, PORT
    try:
        net_up()
        C = harness.start(reconcile=True)
        PORT = harness.free_port()
        REPLICA = C.spawn_controller("gw", agent_listen="%s:%d" % (SW_IP, PORT))
        for h in ("a", "b"):
            start_agent(h)
        for h in ("a", "b"):
            agentlib.wait_host_ready("hn" + h)
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    try:
        for a in AGENTS.values():
            a.stop()
        harness.stop()
    finally:
        net_down()


def host(name):
    st, _, body = request("GET", "/v1/hosts")
    assert st == 200, body
    for h in body["items"]:
        if h["name"] == name:
            return h
    raise AssertionError("no host %s in %r" % (name, body))


def gateway(name):
    return str(ipaddress.ip_network(host(name)["subnet"]).network_address + 1)


def pings(h, addr):
    r = subprocess.run(["ip", "netns", "exec", ns(h), "ping", "-c", "1", "-W", "1", addr],
                       capture_output=True, text=True, timeout=10)
    return r.returncode == 0


def routes(h):
    return ip("-n", ns(h), "route", "show", "dev", "cloudvx0", check=False).stdout


class Test01Built(unittest.TestCase):
    def test_01_hosts_show_subnet_and_underlay(self):
        for h in ("a", "b"):
            got = host("hn" + h)
            self.assertEqual(got["underlay_address"], "%s.%d" % (NET, HOSTS[h]), got)
            self.assertTrue(got["subnet"], got)

    def test_02_each_agent_built_its_bridge(self):
        for h in ("a", "b"):
            gw = gateway("hn" + h)
            poll(lambda: gw in ip("-n", ns(h), "addr", "show", "dev", "cloudbr0",
                                  check=False).stdout, 20,
                 what="cloudbr0 with %s in host %s" % (gw, h))

    def test_03_a_reaches_b_over_the_overlay(self):
        gb, ga = gateway("hnb"), gateway("hna")
        poll(lambda: pings("a", gb), 20, what="host a pinging b's gateway %s" % gb)
        poll(lambda: pings("b", ga), 20, what="host b pinging a's gateway %s" % ga)
        # it went over the overlay: a's route to b's subnet is on cloudvx0
        self.assertIn(host("hnb")["subnet"], routes("a"))

    def test_04_agent_without_host_network_is_no_peer(self):
        plain = agentlib.Agent(C, "hnplain", cap_vcpus=8, cap_memory=8192).start()
        try:
            agentlib.wait_host_ready("hnplain")
            self.assertEqual(host("hnplain")["underlay_address"], "")
            sub = host("hnplain")["subnet"]
            self.assertNotIn(sub, routes("a"))
        finally:
            plain.stop()


class Test02Join(unittest.TestCase):
    def test_01_a_host_that_joins_is_added_to_the_others(self):
        start_agent("c")
        agentlib.wait_host_ready("hnc")
        sc = host("hnc")["subnet"]
        for h in ("a", "b"):
            poll(lambda: sc in routes(h), 20, what="host %s routing c's subnet %s" % (h, sc))
        gc = gateway("hnc")
        for h in ("a", "b"):
            poll(lambda: pings(h, gc), 20, what="host %s pinging c's gateway %s" % (h, gc))
        for other in ("hna", "hnb"):
            g = gateway(other)
            poll(lambda: pings("c", g), 20, what="host c pinging %s's gateway %s" % (other, g))


if __name__ == "__main__":
    unittest.main()
