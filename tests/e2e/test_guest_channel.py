"""End to end, the guest channel (org.cloud.config.0) of the agent daemon:
controller (reconciler on) + PostgreSQL + one cloud-agent on real libvirtd +
QEMU (TCG) with the sample image (images/build-sample.sh), through the REST
API only:
  - a service with env and args whose config was set before it started:
    the guest prints its env from the boot line in fw_cfg ("CLOUD-ENV:
    KEY=VALUE", a value with a space and double quotes intact) and its
    init's argv ("CLOUD-ARGS: [two words]": an arg with a space is one arg
    after "--" on the kernel command line); it prints that
    config from fw_cfg (opt/org.cloud/config, "CLOUD-FWCFG: ..."), receives
    the same line on the channel, acks it and says ready: the instance
    shows config_version N and ready true;
  - a config change (a higher version) reaches the running guest without a
    restart ("CLOUD-CONFIG: ..." with the new value, config_version N+1,
    same QEMU domain id);
  - a config key exit_code=3 makes the guest write {"exit":3} and power off:
    the instance is exited with exit_code 3, reason "guest reported exit
    code 3", ready false;
  - a one-off instance booted with cloud.exit=3 exits with 3 the same way;
  - with --network default: the instance's addresses are its DHCP lease on
    libvirt's default network.

Run it under `flock /tmp/cloud-libvirt.lock` (it may start libvirtd).
Exit code 77 (ctest skip) when QEMU or libvirtd is missing (a failure under CI;
e2elib.main).
"""

import json
import os
import re
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

import e2elib  # noqa: E402
import harness  # noqa: E402
from e2elib import virsh  # noqa: E402
from harness import poll, request, unique_name  # noqa: E402

IMAGE = "sample:e2e"
HOST = "gch-host"
AGENT = None
NETWORK = None


def setUpModule():
    global AGENT, NETWORK
    e2elib.ensure_libvirtd()
    NETWORK = e2elib.default_network()
    sys.stderr.write("[e2e] addresses: %s\n" % (
        "agent --network " + NETWORK if NETWORK else "no libvirt network default: not checked"))
    AGENT = e2elib.start_module(HOST, IMAGE, extra=["--network", NETWORK] if NETWORK else [])


def tearDownModule():
    e2elib.teardown(AGENT)


def console(inst_id):
    return e2elib.console(AGENT, inst_id)


def marked_json(inst_id, marker):
    """The JSON objects the guest printed after marker, oldest first."""
    out = []
    for m in re.finditer(re.escape(marker) + r" (\{.*\})\s*$", console(inst_id), re.M):
        try:
            out.append(json.loads(m.group(1)))
        except ValueError:
            pass  # cut by the console: the next poll sees it whole
    return out


get = e2elib.get


def wait_fields(ref, timeout, **want):
    return e2elib.wait_fields(AGENT, ref, timeout, interval=0.5, **want)


def service_with_config(tc, config, **extra):
    name = unique_name("gch")
    body = {"name": name, "image": IMAGE, "replicas": 0, "restart": "never",
            "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}}
    body.update(extra)
    st, _, svc = request("POST", "/v1/services", body)
    tc.assertEqual(st, 201, svc)
    st, _, cfg = request("PUT", "/v1/services/%s/config" % name, {"config": config})
    tc.assertEqual(st, 200, cfg)
    st, _, svc = request("PATCH", "/v1/services/" + name, {"replicas": 1})
    tc.assertEqual(st, 200, svc)

    def one():
        st, _, body = request("GET", "/v1/instances?service=" + name)
        return body["items"][0] if st == 200 and body["items"] else None
    inst = poll(one, 60, interval=0.5, what="an instance of " + name)
    return name, inst


def effective_version(inst_id):
    st, _, eff = request("GET", "/v1/instances/%s/config" % inst_id)
    assert st == 200, eff
    return eff["version"]


class GuestChannelTest(harness.TestCase):

    def test_1_boot_config_ack_ready_then_live_change(self):
        value = "boot-" + harness.hex_id(4)
        env = {"GREETING_ENV": "hello world", "QUOTED": 'say "hi"'}
        args = ["--", "two words", "x"]
        name, inst = service_with_config(self, {"GREETING": value}, env=env, args=args)
        wait_fields(inst["id"], 180, state="running")
        t_running = time.monotonic()
        v1 = effective_version(inst["id"])
        # fw_cfg: read by the guest at boot, before any channel exists: the
        # boot line (env, args), then the config line.
        fw = poll(lambda: [l for l in marked_json(inst["id"], "CLOUD-FWCFG:")
                           if "version" in l], 240, interval=1,
                  what="the guest to print its fw_cfg boot config")[0]
        self.assertEqual(fw["version"], v1, fw)
        self.assertEqual(fw["config"].get("GREETING"), value, fw)
        boot = [l for l in marked_json(inst["id"], "CLOUD-FWCFG:") if "env" in l]
        self.assertEqual(boot, [{"env": env, "args": args}])
        # The guest's view: its env, and its init's argv with the boundary
        # of "two words" kept on the kernel command line.
        out = console(inst["id"])
        self.assertIn("CLOUD-ENV: GREETING_ENV=hello world\n", out.replace("\r", ""))
        self.assertIn('CLOUD-ENV: QUOTED=say "hi"\n', out.replace("\r", ""))
        self.assertEqual(re.findall(r"^CLOUD-ARGS: \[(.*)\]\s*$", out, re.M),
                         ["two words", "x"], out[-3000:])
        # The same version on the channel; the guest acks it and is ready.
        line = poll(lambda: [l for l in marked_json(inst["id"], "CLOUD-CONFIG:")
                             if l.get("version") == v1], 120, interval=1,
                    what="config version %d on the channel" % v1)[0]
        self.assertEqual(line["config"].get("GREETING"), value, line)
        ready = wait_fields(inst["id"], 60, state="running", config_version=v1, ready=True)
        sys.stderr.write("[e2e] running -> ready with config v%d acked: %.1f s (TCG boot)\n"
                         % (v1, time.monotonic() - t_running))
        domid = virsh("domid", "cloud-" + inst["id"]).stdout.strip()

        # A higher version reaches the running guest without a restart.
        t_put = time.monotonic()
        st, _, cfg = request("PUT", "/v1/services/%s/config" % name,
                             {"config": {"GREETING": value + "-2"}})
        self.assertEqual(st, 200, cfg)
        v2 = effective_version(inst["id"])
        self.assertGreater(v2, v1)
        line2 = poll(lambda: [l for l in marked_json(inst["id"], "CLOUD-CONFIG:")
                              if l.get("version") == v2], 120, interval=1,
                     what="config version %d on the channel" % v2)[0]
        self.assertEqual(line2["config"].get("GREETING"), value + "-2", line2)
        after = wait_fields(inst["id"], 60, config_version=v2)
        sys.stderr.write("[e2e] PUT config -> config_version %d in the API: %.2f s\n"
                         % (v2, time.monotonic() - t_put))
        self.assertEqual(after["state"], "running", after)
        self.assertIs(after["ready"], True, after)
        self.assertEqual(after["started_at"], ready["started_at"], after)
        self.assertEqual(virsh("domid", "cloud-" + inst["id"]).stdout.strip(), domid)
        # Versions only go up: each one was written once, in order.
        versions = [l["version"] for l in marked_json(inst["id"], "CLOUD-CONFIG:")
                    if "version" in l]
        # The boot line came on the channel too, first (one connection).
        self.assertEqual([l for l in marked_json(inst["id"], "CLOUD-CONFIG:") if "env" in l],
                         [{"env": env, "args": args}])
        self.assertEqual(versions, sorted(set(versions)), versions)

        if NETWORK:
            # The sample guest asks DHCP on its NIC: libvirt's lease shows.
            addrs = poll(lambda: get(inst["id"])["addresses"] or None, 120, interval=1,
                         what="an address on libvirt network %s" % NETWORK)
            self.assertRegex(addrs[0], r"^\d+\.\d+\.\d+\.\d+$", addrs)

        # exit_code=3 in the config: the guest writes {"exit":3}, powers off.
        st, _, cfg = request("PATCH", "/v1/services/%s/config" % name,
                             {"config": {"exit_code": "3"}})
        self.assertEqual(st, 200, cfg)
        done = wait_fields(inst["id"], 120, state="exited")
        self.assertEqual(done["exit_code"], 3, done)
        self.assertEqual(done["reason"], "guest reported exit code 3", done)
        self.assertIs(done["ready"], False, done)
        self.assertEqual(done["addresses"], [], done)
        self.assertIn("CLOUD-EXIT: 3", console(inst["id"]))

    def test_2_cmdline_exit_code(self):
        st, _, inst = request("POST", "/v1/instances", {
            "image": IMAGE, "name": unique_name("gchx"), "args": ["cloud.exit=3"],
            "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}})
        self.assertEqual(st, 201, inst)
        done = wait_fields(inst["id"], 240, state="exited")
        self.assertEqual((done["exit_code"], done["reason"]),
                         (3, "guest reported exit code 3"), done)
        self.assertIn("CLOUD-EXIT: 3", console(inst["id"]))


if __name__ == "__main__":
    e2elib.main()
