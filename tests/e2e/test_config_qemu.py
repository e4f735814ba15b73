"""End to end, live config (issue 6): controller (reconciler on) + PostgreSQL
+ one cloud-agent on real libvirtd + QEMU (TCG) with the sample image
(images/build-sample.sh), whose init echoes every JSON line it reads on the
guest channel org.cloud.config.0 as "CLOUD-CONFIG: <line>" on its console.
Through the REST API only:
  - a service runs; PUT /v1/services/{name}/config with a new key: the
    guest prints the line carrying the new value (read through GET
    /v1/instances/{id}/logs) without a restart (same started_at, same
    restart_count, same QEMU domain id), and the instance's config_version
    reaches the effective version (GET /v1/instances/{id}/config);
  - web links db; db scaled from 1 to 2: web's guest prints a config line
    whose DB_ENDPOINTS lists two endpoints (the addresses of db's running
    instances).

Run it under `flock /tmp/cloud-libvirt.lock` (it may start libvirtd).
Exit code 77 (ctest skip) when QEMU or libvirtd is missing (a failure under CI;
e2elib.main).
"""

import json
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import agentlib  # noqa: E402
import e2elib  # noqa: E402
import harness  # noqa: E402
from e2elib import virsh  # noqa: E402
from harness import poll, request, unique_name  # noqa: E402

IMAGE = "sample:e2e"
AGENT = None
NETWORK = None


def agent_help():
    r = subprocess.run([agentlib.AGENT_BIN, "--help"], capture_output=True, text=True, timeout=30)
    return r.stdout + r.stderr


def setUpModule():
    global AGENT, NETWORK
    e2elib.ensure_libvirtd()
    # Endpoint addresses: libvirt's view of a NIC on the "default" network
    # when the agent can give domains one (--network).
    if "--network" in agent_help():
        NETWORK = e2elib.default_network(required=True)
    AGENT = e2elib.start_module("cfg-host", IMAGE, extra=["--network", NETWORK] if NETWORK else [])


def tearDownModule():
    e2elib.teardown(AGENT)


def create_service(tc, name, replicas=1, links=(), ports=()):
    body = {"name": name, "image": IMAGE, "replicas": replicas,
            "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}}
    if links:
        body["links"] = list(links)
    if ports:
        body["ports"] = [{"name": "p%d" % p, "port": p, "protocol": "tcp"} for p in ports]
    st, _, svc = request("POST", "/v1/services", body)
    tc.assertEqual(st, 201, svc)
    return svc


def running_instances(svc, n, timeout=240):
    seen = []

    def ok():
        st, _, body = request("GET", "/v1/instances?service=" + svc)
        if st != 200:
            return None
        seen[:] = [(i["name"], i["state"], i["reason"] or i["pending_reason"])
                   for i in body["items"]]
        items = [i for i in body["items"] if i["state"] == "running"]
        return items if len(items) >= n else None
    try:
        return poll(ok, timeout, interval=1, what="%d running instances of %s" % (n, svc))
    except AssertionError as e:
        raise AssertionError("%s; instances: %r; agent log:\n%s"
                             % (e, seen, AGENT.log_tail())) from None


def console(inst_id):
    st, _, text = request("GET", "/v1/instances/%s/logs" % inst_id, timeout=30)
    return text if st == 200 and isinstance(text, str) else ""


def config_lines(inst_id):
    """The JSON lines the guest echoed, parsed, oldest first."""
    out = []
    for m in re.finditer(r"CLOUD-CONFIG: (\{.*?\})\s*$", console(inst_id), re.M):
        try:
            out.append(json.loads(m.group(1)))
        except ValueError:
            pass  # a line the console cut: the next poll sees it whole
    return out


def booted(inst_id):
    poll(lambda: "CLOUD-CHANNEL:" in console(inst_id), 240, interval=2,
         what="instance %s to boot and open its channel" % inst_id)


class ConfigQemuTest(harness.TestCase):

    def test_1_config_change_reaches_the_running_guest(self):
        name = unique_name("cfg")
        create_service(self, name)
        inst = running_instances(name, 1)[0]
        booted(inst["id"])
        domid = virsh("domid", "cloud-" + inst["id"]).stdout.strip()
        value = "hello-" + harness.hex_id(4)
        st, _, cfg = request("PUT", "/v1/services/%s/config" % name,
                             {"config": {"GREETING": value, "MODE": "e2e"}})
        self.assertEqual(st, 200, cfg)
        self.assertEqual(cfg["config"], {"GREETING": value, "MODE": "e2e"})
        st, _, eff = request("GET", "/v1/instances/%s/config" % inst["id"])
        self.assertEqual(st, 200, eff)
        self.assertEqual(eff["config"].get("GREETING"), value, eff)
        line = poll(lambda: [l for l in config_lines(inst["id"])
                             if l.get("config", {}).get("GREETING") == value], 120, interval=1,
                    what="the guest to print GREETING=%s" % value)[-1]
        self.assertGreaterEqual(line["version"], eff["version"], line)
        self.assertEqual(line["config"].get("MODE"), "e2e", line)
        # The guest acked: the API shows the version, without a restart.
        after = poll(lambda: (lambda r: r[2] if r[0] == 200 and
                              r[2]["config_version"] >= eff["version"] else None)(
                         request("GET", "/v1/instances/" + inst["id"])), 60, interval=0.5,
                     what="config_version >= %d" % eff["version"])
        self.assertEqual(after["state"], "running", after)
        self.assertEqual(after["started_at"], inst["started_at"], after)
        self.assertEqual(after["restart_count"], inst["restart_count"], after)
        self.assertEqual(virsh("domid", "cloud-" + inst["id"]).stdout.strip(), domid)

        # A second change (PATCH, one key) arrives too, with a higher version.
        st, _, cfg2 = request("PATCH", "/v1/services/%s/config" % name,
                              {"config": {"GREETING": value + "-2"}})
        self.assertEqual(st, 200, cfg2)
        self.assertGreater(cfg2["version"], cfg["version"])
        line2 = poll(lambda: [l for l in config_lines(inst["id"])
                              if l.get("config", {}).get("GREETING") == value + "-2"], 120,
                     interval=1, what="the guest to print the patched value")[-1]
        self.assertGreater(line2["version"], line["version"])
        self.assertEqual(line2["config"].get("MODE"), "e2e", line2)

    def test_2_linked_endpoints_follow_a_scale_up(self):
        db = unique_name("db")
        web = unique_name("web")
        create_service(self, db, replicas=1, ports=[5432])
        create_service(self, web, replicas=1, links=[db])
        key = db.upper().replace("-", "_") + "_ENDPOINTS"
        w = running_instances(web, 1)[0]
        running_instances(db, 1)
        booted(w["id"])

        def endpoints(n):
            st, _, body = request("GET", "/v1/services/%s/endpoints" % db)
            return body if st == 200 and len(body["endpoints"]) == n else None
        try:
            one = poll(lambda: endpoints(1), 120, interval=1, what="one endpoint of " + db)
        except AssertionError as e:
            self.fail("no address source: %s has a running instance but no endpoint "
                      "(agent --network %s; the sample guest reports no {\"addr\"}): %s"
                      % (db, NETWORK, e))
        poll(lambda: [l for l in config_lines(w["id"])
                      if l.get("config", {}).get(key, "").count(",") == 0
                      and l.get("config", {}).get(key)], 120, interval=1,
             what="web's guest to print %s with one endpoint" % key)
        st, _, svc = request("PATCH", "/v1/services/" + db, {"replicas": 2})
        self.assertEqual(st, 200, svc)
        two = poll(lambda: endpoints(2), 240, interval=1, what="two endpoints of " + db)
        want = sorted(e["addr"] for e in two["endpoints"])
        self.assertIn(one["endpoints"][0]["addr"], want)
        self.assertEqual(len(set(want)), 2, want)
        for addr in want:
            self.assertRegex(addr, r"^\d+\.\d+\.\d+\.\d+:5432$")
        line = poll(lambda: [l for l in config_lines(w["id"])
                             if sorted(l.get("config", {}).get(key, "").split(",")) == want],
                    120, interval=1,
                    what="web's guest to print %s=%s" % (key, ",".join(want)))[-1]
        self.assertIn(key + "_VERSION", line["config"], line)
        st, _, eff = request("GET", "/v1/instances/%s/config" % w["id"])
        self.assertEqual(st, 200, eff)
        self.assertEqual(sorted(eff["config"][key].split(",")), want, eff)


if __name__ == "__main__":
    e2elib.main()
