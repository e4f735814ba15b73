"""IPAM (issue 15, docs/network.md "IPAM"): the cluster CIDR and host
subnets as cluster settings, a subnet per host when it registers, an
address per instance when it is placed, released when it is gone; double
allocation impossible by constraint.

Three cloud-agent processes on libvirt's test:///default register against
the real controller and PostgreSQL; the reconciler places instances. What
the tests check is what an operator sees: the settings (and their errors),
each host's subnet in GET /v1/hosts, the address each placed instance holds
(in the database and in its instance.scheduled event), reuse after delete,
a full subnet leaving instances pending with a reason that says so, and
the constraints refusing a second holder of an address or an overlapping
subnet.
"""

import ipaddress
import unittest

import agentlib
import harness
from harness import poll, request, unique_name

AGENTS = []
IMAGE = "hello:latest"


def setUpModule():
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")
    # Small subnets, so that a host fills up: /29 is 8 addresses, of
    # which .0, .1 (the gateway) and the broadcast are never given: 5.
    st, _, body = request("PATCH", "/v1/cluster/settings",
                          {"cluster_cidr": "10.250.0.0/24", "host_subnet_prefix": 29})
    assert st == 200, "cannot set the IPAM settings: %d %r" % (st, body)
    for i in range(3):
        AGENTS.append(agentlib.Agent(c, "ipam%d" % i, cap_vcpus=64,
                                     cap_memory=65536).start())
    for a in AGENTS:
        agentlib.wait_host_ready(a.name)


def tearDownModule():
    for a in AGENTS:
        a.stop()
    harness.stop()


def sql(q):
    return harness.psql(q)


def sql_error(q):
    """The error psql printed for q; fails the test's caller if q worked."""
    try:
        sql(q)
    except harness.HarnessError as e:
        return str(e)
    return None


def run(tc):
    body = {"image": IMAGE, "name": unique_name("ip"),
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}}
    st, _, inst = request("POST", "/v1/instances", body)
    tc.assertEqual(st, 201, inst)
    return inst


def address_of(inst_id):
    return sql("SELECT host(address) FROM instance_addresses WHERE instance_id = '%s'"
               % inst_id).strip()


def wait_address(inst_id, timeout=30):
    poll(lambda: address_of(inst_id) != "", timeout, what="an address for %s" % inst_id)
    return address_of(inst_id)


class Test01Settings(unittest.TestCase):
    def test_01_shown(self):
        st, _, s = request("GET", "/v1/cluster/settings")
        self.assertEqual(st, 200, s)
        self.assertEqual(s["cluster_cidr"], "10.250.0.0/24")
        self.assertEqual(s["host_subnet_prefix"], 29)

    def test_02_bad_values_refused(self):
        for patch, field in (({"cluster_cidr": "10.250.0.1/24"}, "cluster_cidr"),
                             ({"cluster_cidr": "not-a-cidr"}, "cluster_cidr"),
                             ({"cluster_cidr": "fd00::/64"}, "cluster_cidr"),
                             ({"cluster_cidr": 42}, "cluster_cidr"),
                             ({"host_subnet_prefix": 30}, "host_subnet_prefix"),
                             ({"host_subnet_prefix": "24"}, "host_subnet_prefix")):
            st, _, body = request("PATCH", "/v1/cluster/settings", patch)
            self.assertEqual(st, 422, (patch, body))
            self.assertIn("message", body["error"], body)
        st, _, s = request("GET", "/v1/cluster/settings")
        self.assertEqual(s["cluster_cidr"], "10.250.0.0/24", "a refused patch changed nothing")

    def test_03_no_renumbering_under_allocated_subnets(self):
        st, _, body = request("PATCH", "/v1/cluster/settings", {"cluster_cidr": "10.251.0.0/16"})
        self.assertEqual(st, 409, body)
        self.assertIn("never renumbered", body["error"]["message"])


class Test02Hosts(unittest.TestCase):
    def test_01_each_host_has_its_own_subnet(self):
        st, _, body = request("GET", "/v1/hosts")
        self.assertEqual(st, 200, body)
        subnets = {}
        for h in body["items"]:
            if h["name"].startswith("ipam"):
                subnets[h["name"]] = ipaddress.ip_network(h["subnet"])
        self.assertEqual(len(subnets), 3, subnets)
        nets = list(subnets.values())
        for n in nets:
            self.assertEqual(n.prefixlen, 29)
            self.assertTrue(n.subnet_of(ipaddress.ip_network("10.250.0.0/24")), n)
        for i, a in enumerate(nets):
            for b in nets[i + 1:]:
                self.assertFalse(a.overlaps(b), (a, b))

    def test_02_overlapping_subnet_refused_by_constraint(self):
        row = sql("SELECT host_id, subnet FROM host_subnets LIMIT 1").strip()
        host_id, subnet = row.split("|")
        other = sql("SELECT id FROM hosts WHERE id <> '%s' AND name LIKE 'ipam%%' LIMIT 1"
                    % host_id).strip()
        err = sql_error("UPDATE host_subnets SET subnet = '%s' WHERE host_id = '%s'"
                        % (subnet, other))
        self.assertIsNotNone(err, "an overlapping subnet was stored")
        self.assertIn("host_subnets_no_overlap", err)


class Test03Addresses(unittest.TestCase):
    def test_01_placed_instance_gets_an_address_in_its_host_subnet(self):
        inst = run(self)
        addr = ipaddress.ip_address(wait_address(inst["id"]))
        host_id = sql("SELECT host_id FROM instances WHERE id = '%s'" % inst["id"]).strip()
        subnet = ipaddress.ip_network(sql("SELECT subnet FROM host_subnets WHERE host_id = '%s'"
                                          % host_id).strip())
        self.assertIn(addr, subnet)
        self.assertNotIn(addr, (subnet.network_address, subnet.network_address + 1,
                                subnet.broadcast_address))
        ev = sql("SELECT message FROM events WHERE type = 'instance.scheduled' "
                 "AND object_id = '%s'" % inst["id"]).strip()
        self.assertIn("address %s" % addr, ev)

    def test_02_delete_releases_the_address(self):
        inst = run(self)
        addr = wait_address(inst["id"])
        st, _, body = request("DELETE", "/v1/instances/%s" % inst["id"])
        self.assertIn(st, (200, 202, 204), body)
        poll(lambda: sql("SELECT count(*) FROM instance_addresses WHERE host(address) = '%s'"
                         % addr).strip() == "0", 30, what="the address released")

    def test_03_restart_gives_the_address_back_and_takes_one_again(self):
        # A restart ends the run (the instances_restart trigger clears
        # host_id before the row is written): the address goes back, and
        # the new placement takes one.
        inst = run(self)
        wait_address(inst["id"])
        poll(lambda: request("GET", "/v1/instances/%s" % inst["id"])[2]["state"] == "running",
             30, what="%s running" % inst["name"])
        st, _, body = request("POST", "/v1/instances/%s/restart" % inst["id"])
        self.assertEqual(st, 202, body)
        poll(lambda: (lambda i: i["state"] == "running" and i["restart_count"] == 1)(
                 request("GET", "/v1/instances/%s" % inst["id"])[2]),
             60, what="%s running again" % inst["name"])
        self.assertNotEqual(wait_address(inst["id"]), "")
        self.assertEqual(sql("SELECT count(*) FROM instance_addresses WHERE instance_id = '%s'"
                             % inst["id"]).strip(), "1")

    def test_04_second_holder_refused_by_constraint(self):
        inst = run(self)
        addr = wait_address(inst["id"])
        row = sql("SELECT host_id, subnet FROM instance_addresses WHERE instance_id = '%s'"
                  % inst["id"]).strip().split("|")
        other = run(self)
        wait_address(other["id"])
        err = sql_error(
            "UPDATE instance_addresses SET address = '%s', host_id = '%s', subnet = '%s' "
            "WHERE instance_id = '%s'" % (addr, row[0], row[1], other["id"]))
        self.assertIsNotNone(err, "a second holder of %s was stored" % addr)
        self.assertIn("instance_addresses_address_key", err)


class Test04Exhaustion(unittest.TestCase):
    def test_01_full_subnets_leave_instances_pending_with_the_reason(self):
        # 3 hosts x 5 addresses; what the earlier tests hold counts too.
        free = 15 - int(sql("SELECT count(*) FROM instance_addresses").strip())
        insts = [run(self) for _ in range(free + 2)]
        poll(lambda: int(sql("SELECT count(*) FROM instance_addresses").strip()) == 15, 60,
             what="every address of the three /29 subnets given")
        # no two instances share an address, all inside the CIDR
        self.assertEqual(sql("SELECT count(*) - count(DISTINCT address) FROM instance_addresses")
                         .strip(), "0")
        pending = [i for i in insts
                   if sql("SELECT state FROM instances WHERE id = '%s'" % i["id"]).strip()
                   == "pending"]
        self.assertEqual(len(pending), 2, pending)
        for i in pending:
            poll(lambda: "has no free address" in request(
                     "GET", "/v1/instances/%s" % i["id"])[2].get("pending_reason", "") or "",
                 30, what="the pending reason of %s" % i["name"])
        # a delete frees an address; a pending one takes it
        placed = [i for i in insts if i not in pending]
        st, _, body = request("DELETE", "/v1/instances/%s" % placed[0]["id"])
        self.assertIn(st, (200, 202, 204), body)
        poll(lambda: any(address_of(i["id"]) for i in pending), 60,
             what="a pending instance placed once an address was free")


if __name__ == "__main__":
    unittest.main()
