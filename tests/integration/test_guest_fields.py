"""Guest channel fields of an instance (the addresses, ready and config_version columns, agent --network).

One cloud-agent on libvirt's test:///default driver with --network default:
the test driver's "default" network gives every domain with a NIC an
address (virDomainInterfaceAddresses), so a running instance shows it in
GET /v1/instances/{id} `addresses`, and loses it once it has exited. Every
instance shows `config_version` and `ready`.

The status function itself (cloud_agent_status, what the gateway calls with
each agent report) on a host no agent holds: config_version never goes
back, ready only while running, addresses are cleaned (strings only,
bounded), a stale session is refused.

The agent refuses a --network that is not a libvirt network name (exit 2).
"""

import json
import subprocess
import unittest

import agentlib
import harness
from harness import poll, request, unique_name

IMAGE = "hello:latest"
MODULE = agentlib.ModuleAgent("gf1", extra=["--network", "default"])
setUpModule = MODULE.set_up
tearDownModule = MODULE.tear_down


def get(ref):
    st, _, inst = request("GET", "/v1/instances/" + ref)
    assert st == 200, inst
    return inst


def until(ref, **want):
    """The instance once its fields equal want (the read cache follows the
    event of a status report shortly after it commits)."""
    last = {}

    def ok():
        last["i"] = get(ref)
        return last["i"] if all(last["i"].get(k) == v for k, v in want.items()) else None
    try:
        return poll(ok, 10, interval=0.1, what="instance %s %r" % (ref, want))
    except AssertionError:
        raise AssertionError("instance %s never had %r; last: %r" % (ref, want, last.get("i")))


class AddressesTest(harness.TestCase):

    def test_running_instance_has_libvirt_address_then_none(self):
        st, _, inst = request("POST", "/v1/instances", {
            "image": IMAGE, "name": unique_name("gf"),
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        self.assertEqual(st, 201, inst)
        self.assertEqual(inst["config_version"], 0)
        self.assertIs(inst["ready"], False)
        self.assertEqual(inst["addresses"], [])
        got = poll(lambda: (lambda i: i if i["state"] == "running" and i["addresses"] else None)(
            get(inst["id"])), 30, interval=0.3, what="a running instance with an address")
        self.assertEqual(len(got["addresses"]), 1, got)
        self.assertRegex(got["addresses"][0], r"^192\.168\.122\.\d+$")
        self.assertIs(got["ready"], False)  # the test driver's guest says nothing
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "KILL"})
        self.assertEqual(st, 202, body)
        done = poll(lambda: (lambda i: i if i["state"] == "exited" else None)(get(inst["id"])),
                    30, interval=0.3, what="the instance to exit")
        self.assertEqual(done["addresses"], [])
        self.assertEqual(done["exit_code"], 137)

    def test_two_instances_get_different_addresses(self):
        ids = []
        for _ in range(2):
            st, _, inst = request("POST", "/v1/instances", {
                "image": IMAGE, "name": unique_name("gf"),
                "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
            self.assertEqual(st, 201, inst)
            ids.append(inst["id"])
        addrs = [poll(lambda i=i: get(i)["addresses"] or None, 30, interval=0.3,
                      what="an address for %s" % i) for i in ids]
        self.assertNotEqual(addrs[0], addrs[1])
        for i in ids:
            request("DELETE", "/v1/instances/" + i)


class StatusFunctionTest(harness.TestCase):
    """cloud_agent_status as the gateway calls it, on a host without agent."""

    @classmethod
    def setUpClass(cls):
        c = harness.cluster()
        row = c.psql("SELECT host_id || ' ' || session_epoch FROM cloud_agent_register("
                     "'{\"name\":\"gf-sql\",\"vcpus\":4,\"memory_mib\":4096,\"disk_gib\":10,"
                     "\"hypervisor\":\"test\"}'::jsonb)")
        cls.host, epoch = row.split()
        cls.epoch = int(epoch)
        # Keep the reconciler's placements away from this agentless host.
        c.psql("UPDATE hosts SET state = 'cordoned' WHERE id = '%s'" % cls.host)

    def make_instance(self):
        c = harness.cluster()
        st, _, inst = request("POST", "/v1/instances", {
            "image": IMAGE, "name": unique_name("gfs"),
            "placement": {"constraints": ["zone=nowhere"]},
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        self.assertEqual(st, 201, inst)
        c.psql("UPDATE instances SET state = 'scheduled', host_id = '%s' WHERE id = '%s'"
               % (self.host, inst["id"]))
        return inst["id"]

    def report(self, inst_id, state="running", epoch=None, **fields):
        s = {"host": self.host, "epoch": self.epoch if epoch is None else epoch,
             "id": inst_id, "generation": 1, "state": state, "exit_code": 0,
             "started_ms": 0, "finished_ms": 0}
        s.update(fields)
        arg = json.dumps([s]).replace("'", "''")
        return harness.cluster().psql(
            "SELECT coalesce(string_agg(refused, '; '), '') FROM cloud_agent_status('%s'::jsonb, true)"
            % arg)

    def report_via(self, inst_id, safe, *more, **fields):
        """A batch of reports with the guest keys the gateway always sends
        (fields, then each dict of more), through the fast path (safe
        False) or report by report (safe True)."""
        batch = []
        for f in (fields,) + more:
            s = {"host": self.host, "epoch": self.epoch, "id": inst_id, "generation": 1,
                 "exit_code": 0, "started_ms": 0, "finished_ms": 0, "config_version": 0,
                 "ready": False, "addresses": []}
            s.update(f)
            batch.append(s)
        arg = json.dumps(batch).replace("'", "''")
        return harness.cluster().psql(
            "SELECT coalesce(string_agg(refused, '; '), '') FROM cloud_agent_status('%s'::jsonb, %s)"
            % (arg, "true" if safe else "false"))

    def test_fast_path_equals_report_by_report(self):
        """The set statements of the fast path (transitions and removals,
        issue 13) leave the same row and write the same events as
        cloud_agent_status_one, report for report: exit codes out of range
        and a failure with 0, reasons, given and missing start and finish
        times, guest fields with a transition, a repeat, and a removal."""
        c = harness.cluster()
        given_start, given_end = 1700000000123, 1700000009000
        steps = [
            dict(state="starting"),
            dict(state="running", started_ms=given_start, config_version=2, ready=True,
                 addresses=["10.1.0.1/24", "10.1.0.2:80"]),
            dict(state="running", started_ms=given_start, config_version=2, ready=True,
                 addresses=["10.1.0.1/24", "10.1.0.2:80"]),
            dict(state="stopping", ready=True),
            dict(state="exited", exit_code=300, reason="out of memory", finished_ms=given_end),
            dict(state="failed", exit_code=0, reason="crashed"),
            dict(state="running"),
            dict(state="failed", exit_code=-4, reason=""),
            dict(state="exited", exit_code=7),
            dict(state="running", config_version=1),
        ]
        row = ("SELECT state, exit_code, reason, config_version, ready, addresses, version, "
               "CASE WHEN started_at IS NULL THEN 'none' WHEN started_at = "
               "to_timestamp(%d / 1000.0) THEN 'given' ELSE 'now' END, "
               "CASE WHEN finished_at IS NULL THEN 'none' WHEN finished_at = "
               "to_timestamp(%d / 1000.0) THEN 'given' ELSE 'now' END "
               "FROM instances WHERE id = '%%s'" % (given_start, given_end))
        evs = ("SELECT string_agg(type || ' ' || replace(message, name, 'NAME'), E'\\n' ORDER BY id) "
               "FROM events WHERE object_id = '%s' AND actor = 'agent'")
        a, b = self.make_instance(), self.make_instance()
        for n, st in enumerate(steps):
            self.assertEqual(self.report_via(a, True, **st), "")
            self.assertEqual(self.report_via(b, False, **st), "")
            self.assertEqual(c.psql(row % a), c.psql(row % b), "after step %d %r" % (n, st))
        self.assertEqual(c.psql(evs % a), c.psql(evs % b))
        self.assertIn("exited (255)", c.psql(evs % b))
        # Removal: both being deleted; one batch holds the agent's
        # stopping, exited and removed of each (a round each in the fast
        # path, in that order).
        c.psql("UPDATE instances SET desired_state = 'deleted', "
               "version = version + 1 WHERE id IN ('%s', '%s')" % (a, b))
        for inst, safe in ((a, True), (b, False)):
            self.assertEqual(self.report_via(inst, safe, {"state": "exited", "exit_code": 0},
                                             {"state": "removed"}, state="stopping"), "")
        self.assertEqual(c.psql("SELECT count(*) FROM instances WHERE id IN ('%s', '%s')"
                                % (a, b)), "0")
        self.assertEqual(c.psql(evs % a), c.psql(evs % b))
        self.assertTrue(c.psql(evs % b).endswith("instance.deleted instance NAME deleted: "
                                                 "removed from gf-sql"), c.psql(evs % b))

    def test_version_never_goes_back_ready_only_running(self):
        i = self.make_instance()
        self.assertEqual(self.report(i, config_version=5, ready=True,
                                     addresses=["10.0.0.7", "10.0.0.8:80"]), "")
        until(i, state="running", config_version=5, ready=True,
              addresses=["10.0.0.7", "10.0.0.8:80"])
        self.assertEqual(self.report(i, config_version=3, ready=True,
                                     addresses=["10.0.0.7", "10.0.0.8:80"]), "")
        self.assertEqual(harness.cluster().psql(
            "SELECT config_version FROM instances WHERE id = '%s'" % i), "5")
        # A guest-only change is an event (the read cache follows it).
        self.assertEqual(self.report(i, config_version=6, ready=False,
                                     addresses=["10.0.0.7", "10.0.0.8:80"]), "")
        until(i, config_version=6, ready=False)
        msg = harness.cluster().psql(
            "SELECT message FROM events WHERE object_id = '%s' AND type = 'instance.guest' "
            "ORDER BY id DESC LIMIT 1" % i)
        self.assertIn("config version 6 acknowledged", msg)
        self.assertIn("not ready", msg)
        # ready is false whenever the instance does not run.
        self.report(i, ready=True, config_version=6)
        until(i, ready=True)
        self.assertEqual(self.report(i, state="exited", ready=True, exit_code=3,
                                     reason="guest reported exit code 3", config_version=6), "")
        inst = until(i, state="exited", exit_code=3, ready=False, config_version=6)
        self.assertEqual(inst["reason"], "guest reported exit code 3")

    def test_addresses_are_cleaned(self):
        i = self.make_instance()
        junk = ["10.0.0.1", 7, None, "", "x" * 300, {"a": 1}] + ["10.1.0.%d" % n for n in range(80)]
        self.assertEqual(self.report(i, addresses=junk), "")
        got = poll(lambda: get(i)["addresses"] or None, 10, interval=0.1, what="addresses")
        self.assertEqual(len(got), 64)
        self.assertEqual(got[0], "10.0.0.1")
        self.assertTrue(all(isinstance(a, str) and 0 < len(a) <= 255 for a in got))
        self.assertEqual(self.report(i, addresses="not a list"), "")
        until(i, addresses=[])

    def test_report_without_guest_fields_keeps_them(self):
        i = self.make_instance()
        self.report(i, config_version=2, ready=True, addresses=["10.0.0.9"])
        until(i, config_version=2, ready=True, addresses=["10.0.0.9"])
        self.assertEqual(self.report(i), "")
        self.assertEqual(harness.cluster().psql(
            "SELECT config_version || ' ' || ready || ' ' || addresses::text FROM instances "
            "WHERE id = '%s'" % i), '2 true ["10.0.0.9"]')

    def test_stale_session_refused(self):
        i = self.make_instance()
        why = self.report(i, epoch=self.epoch + 100, config_version=9)
        self.assertIn("stale", why)
        self.assertEqual(harness.cluster().psql(
            "SELECT config_version FROM instances WHERE id = '%s'" % i), "0")


class NetworkOptionTest(unittest.TestCase):

    def test_bad_network_name_is_a_usage_error(self):
        for bad in ("my net", "", "x" * 65, "a/b"):
            r = subprocess.run([agentlib.AGENT_BIN, "--network", bad, "run"],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 2, (bad, r.stderr))
            self.assertIn("--network", r.stderr)
            self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)


if __name__ == "__main__":
    unittest.main()
