"""The host network overlay between two hosts (issue 15, agent/hostnet.c).

Two network namespaces stand in for two hosts, A and B, joined by a veth
pair (the underlay: 192.168.250.1/24 and .2/24). Each applies its own plan
with `cloud-agent net apply --plan FILE` (libnl only; `ip` here builds the
fake underlay and guest, never the overlay). A third namespace G is a
guest of B: a veth whose other end is a port of B's bridge, with
10.240.2.5/24 and a default route via B's gateway, MTU 1450 as libvirt
would give a tap on that bridge.

- A reaches B's gateway and B's guest across the VXLAN overlay, and the
  guest reaches A's gateway (routed both ways, ip_forward on B).
- A full-size packet (1450 bytes, don't fragment) crosses the overlay: the
  bridge and VXLAN MTU leave room for the 50 bytes VXLAN adds.
- Applying B's plan again reports 0 changes, the guest's port stays on the
  bridge, and traffic still flows (an agent restart disturbs nothing).
- A plan whose peer list loses A removes A's route from B.

Needs root (ip netns); fails, never skips, without it. The namespaces are
deleted even when the test fails.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

AGENT = os.environ.get("CLOUD_AGENT")
SUF = "%d" % (os.getpid() % 100000)
NS_A, NS_B, NS_G = "hna" + SUF, "hnb" + SUF, "hng" + SUF
UL_A, UL_B = "192.168.250.1", "192.168.250.2"
GW_A, GW_B, GUEST = "10.240.1.1", "10.240.2.1", "10.240.2.5"
TMP = None


def run(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError("%s failed (%d): %s%s" % (" ".join(args), r.returncode,
                                                       r.stdout, r.stderr))
    return r


def ip(*args, check=True):
    return run("ip", *args, check=check)


def plan(ns, gateway, underlay, peers):
    path = os.path.join(TMP, ns + ".json")
    with open(path, "w") as f:
        json.dump({"bridge": "cloudbr0", "gateway": gateway,
                   "cluster_cidr": "10.240.0.0/16", "vni": 4240,
                   "vxlan": "cloudvx0", "underlay": underlay,
                   "peers": [{"underlay": u, "subnet": s} for u, s in peers]}, f)
    return path


def apply(ns, path):
    """The tool's summary line ("net apply: N changes")."""
    r = run("ip", "netns", "exec", ns, AGENT, "net", "apply", "--plan", path)
    return r.stdout.strip()


def ping(ns, addr, size=None):
    args = ["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "2"]
    if size is not None:
        args += ["-M", "do", "-s", str(size)]
    return run(*args + [addr], check=False)


def net_down():
    for ns in (NS_A, NS_B, NS_G):
        ip("netns", "del", ns, check=False)


def setUpModule():
    global TMP
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise AssertionError("test_hostnet needs root and iproute2 (ip netns)")
    if not AGENT:
        raise AssertionError("CLOUD_AGENT must name the cloud-agent binary")
    TMP = tempfile.mkdtemp(prefix="test_hostnet.")
    try:
        for ns in (NS_A, NS_B, NS_G):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        # The underlay: one veth pair, an end in each host.
        ip("link", "add", "hnua" + SUF, "netns", NS_A, "type", "veth",
           "peer", "name", "hnub" + SUF, "netns", NS_B)
        for ns, dev, addr in ((NS_A, "hnua" + SUF, UL_A), (NS_B, "hnub" + SUF, UL_B)):
            ip("-n", ns, "addr", "add", addr + "/24", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    net_down()
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


class HostNet(unittest.TestCase):
    def test_overlay_between_two_hosts(self):
        pa = plan(NS_A, GW_A + "/24", UL_A, [(UL_B, "10.240.2.0/24")])
        pb = plan(NS_B, GW_B + "/24", UL_B, [(UL_A, "10.240.1.0/24")])
        self.assertRegex(apply(NS_A, pa), r"^net apply: [1-9][0-9]* changes$")
        self.assertRegex(apply(NS_B, pb), r"^net apply: [1-9][0-9]* changes$")

        # B's guest: a veth into B's bridge, as libvirt attaches a tap.
        ip("link", "add", "hngb" + SUF, "netns", NS_B, "mtu", "1450", "type", "veth",
           "peer", "name", "eth0", "netns", NS_G, "mtu", "1450")
        ip("-n", NS_B, "link", "set", "hngb" + SUF, "master", "cloudbr0")
        ip("-n", NS_B, "link", "set", "hngb" + SUF, "up")
        ip("-n", NS_G, "addr", "add", GUEST + "/24", "dev", "eth0")
        ip("-n", NS_G, "link", "set", "eth0", "up")
        ip("-n", NS_G, "route", "add", "default", "via", GW_B)

        for ns in (NS_A, NS_B):
            mtu = ip("-n", ns, "-j", "link", "show", "cloudbr0").stdout
            self.assertEqual(json.loads(mtu)[0]["mtu"], 1450, ns)

        r = ping(NS_A, GW_B)
        self.assertEqual(r.returncode, 0, "A -> B's gateway: " + r.stdout + r.stderr)
        r = ping(NS_A, GUEST)
        self.assertEqual(r.returncode, 0, "A -> B's guest: " + r.stdout + r.stderr)
        r = ping(NS_G, GW_A)
        self.assertEqual(r.returncode, 0, "B's guest -> A: " + r.stdout + r.stderr)
        # 1422 + 28 = 1450: a full overlay packet, not fragmented.
        r = ping(NS_A, GUEST, size=1422)
        self.assertEqual(r.returncode, 0, "A -> guest, 1450 bytes DF: " + r.stdout + r.stderr)
        # One byte more does not fit the overlay: refused, not blackholed.
        r = ping(NS_A, GUEST, size=1423)
        self.assertNotEqual(r.returncode, 0, "1451 bytes DF should not fit: " + r.stdout)

        # An agent restart: the same plan again changes nothing.
        self.assertEqual(apply(NS_B, pb), "net apply: 0 changes")
        self.assertEqual(apply(NS_A, pa), "net apply: 0 changes")
        link = json.loads(ip("-n", NS_B, "-j", "link", "show", "hngb" + SUF).stdout)[0]
        self.assertEqual(link.get("master"), "cloudbr0")
        r = ping(NS_A, GUEST)
        self.assertEqual(r.returncode, 0, "after re-apply: " + r.stdout + r.stderr)

        # A leaves B's peer list: B's route to A's subnet goes.
        pb_alone = plan(NS_B + "x", GW_B + "/24", UL_B, [])
        self.assertEqual(apply(NS_B, pb_alone), "net apply: 3 changes")
        routes = ip("-n", NS_B, "route", "show", "dev", "cloudvx0").stdout
        self.assertNotIn("10.240.1.0/24", routes)
        r = ping(NS_G, GW_A)
        self.assertNotEqual(r.returncode, 0, "B no longer routes to A")


if __name__ == "__main__":
    unittest.main()
