"""End to end: image blobs fetched over the agent link, kernel and disk images
booted on real libvirtd + QEMU (TCG).

The agent runs WITHOUT --images: every blob is uploaded through the REST
API (chunked uploads) into the controller's blob store and reaches the
agent's cache over its mTLS link (BlobRequest/BlobChunk).
  - a kernel image (the sample: kernel + initramfs + cmdline) boots: the
    marker is on its console, both blobs are in the cache;
  - a disk image (images/build-disk.sh: a FAT disk with SYSLINUX that the
    BIOS boots, as qcow2) boots from a qcow2 overlay that libvirt's storage
    API made over the cached base, sized to disk_gib: the console shows
    the disk's own command line (cloud.disk=1), the overlay's backing file
    is the cached blob; deleting the instance deletes the overlay. Its args
    and env, which no command line can carry on a BIOS boot, reach the
    guest in the boot line (fw_cfg): "CLOUD-BOOTARGS: [two words]".

Run under `flock /tmp/cloud-libvirt.lock` (ctest does). Exit code 77 (ctest
skip) when QEMU or libvirtd is missing (a failure under CI; e2elib.main).
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import e2elib  # noqa: E402
import harness  # noqa: E402
from e2elib import virsh  # noqa: E402
from harness import poll, request, unique_name  # noqa: E402

AGENT = None
OCTET = {"Content-Type": "application/octet-stream"}
DIGESTS = {}


def upload(path):
    with open(path, "rb") as f:
        data = f.read()
    st, _, body = request("POST", "/v1/blobs/uploads")
    assert st == 202, body
    up = "/v1/blobs/uploads/%s" % body["id"]
    off = 0
    while off < len(data):
        piece = data[off:off + 1024 * 1024]
        st, _, b = request("PATCH", up, body=piece,
                           headers=dict(OCTET, **{"Upload-Offset": str(off)}), timeout=60)
        assert st == 202, b
        off += len(piece)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    st, _, b = request("PUT", "%s?digest=%s" % (up, digest), timeout=60)
    assert st == 201, b
    return digest


def setUpModule():
    global AGENT
    e2elib.ensure_libvirtd()
    c = harness.start(reconcile=True)
    out = os.path.join(c.tmp, "disk")
    subprocess.run(["bash", os.path.join(HERE, "..", "..", "images", "build-disk.sh"), out],
                   check=True, stdout=subprocess.DEVNULL)
    sample = os.path.join(out, "sample")
    DIGESTS["kernel"] = upload(os.path.join(sample, "vmlinuz"))
    DIGESTS["initrd"] = upload(os.path.join(sample, "initrd.img"))
    DIGESTS["disk"] = upload(os.path.join(out, "disk.qcow2"))
    with open(os.path.join(sample, "cmdline")) as f:
        cmdline = f.read().strip()
    st, _, img = request("POST", "/v1/images", {
        "name": "fetched", "tag": "kernel", "kind": "kernel", "kernel": DIGESTS["kernel"],
        "initrd": DIGESTS["initrd"], "cmdline": cmdline})
    assert st == 201, img
    st, _, img = request("POST", "/v1/images", {
        "name": "fetched", "tag": "disk", "kind": "disk", "disk": DIGESTS["disk"]})
    assert st == 201, img
    AGENT = e2elib.start_agent(c, "e2e-fetch")


def tearDownModule():
    c = e2elib.stop_agent_and_guests(AGENT)
    # The agent's storage pool lives in this run's temporary directory.
    for line in virsh("pool-list", "--all", "--name").stdout.splitlines():
        name = line.strip()
        if name.startswith("cloud-disks-"):
            xml = virsh("pool-dumpxml", name).stdout
            if c is not None and c.tmp in xml:
                virsh("pool-destroy", name)
                virsh("pool-undefine", name)
    harness.stop()
    e2elib.stop_started()


def run(image, disk_gib=0, **extra):
    body = {"image": image, "name": unique_name("fetch"), "restart": "never",
            "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": disk_gib}}
    body.update(extra)
    st, _, inst = request("POST", "/v1/instances", body)
    assert st == 201, inst
    return inst


def wait_state(ref, state, timeout):
    def ok():
        st, _, inst = request("GET", "/v1/instances/" + ref)
        return inst if st == 200 and inst["state"] == state else None
    try:
        return poll(ok, timeout, interval=0.5, what="instance %s %s" % (ref, state))
    except AssertionError:
        print(AGENT.log_tail(40))
        raise


def console(inst_id):
    return e2elib.console(AGENT, inst_id)


def cache(digest):
    return os.path.join(AGENT.dir, "state", "cache", digest)


class FetchQemuTest(harness.TestCase):

    def test_1_kernel_image_fetched_and_booted(self):
        inst = run("fetched:kernel")
        wait_state(inst["id"], "running", 120)
        for d in (DIGESTS["kernel"], DIGESTS["initrd"]):
            self.assertTrue(os.path.exists(cache(d)), d)
        poll(lambda: "CLOUD-SAMPLE-BOOTED" in console(inst["id"]), 120, interval=1,
             what="the boot marker on the console")
        self.assertNotIn("cloud.disk=1", console(inst["id"]))
        st, _, body = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "KILL"})
        self.assertEqual(st, 202, body)
        wait_state(inst["id"], "exited", 60)

    def test_2_disk_image_boots_from_overlay(self):
        inst = run("fetched:disk", disk_gib=1, args=["two words", "x"], env={"ON": "disk"})
        wait_state(inst["id"], "running", 120)
        self.assertTrue(os.path.exists(cache(DIGESTS["disk"])))
        poll(lambda: "CLOUD-CMDLINE: cloud.disk=1" in console(inst["id"]), 180, interval=1,
             what="the disk's own boot on the console")
        self.assertIn("CLOUD-SAMPLE-BOOTED", console(inst["id"]))
        # No command line of ours on a BIOS boot: the args come in the boot
        # line, whole, never dropped.
        poll(lambda: "CLOUD-ENV: ON=disk" in console(inst["id"]), 60, interval=1,
             what="the disk guest's env from its boot line")
        out = console(inst["id"])
        self.assertEqual(re.findall(r"^CLOUD-BOOTARGS: \[(.*)\]\s*$", out, re.M),
                         ["two words", "x"], out[-2000:])
        self.assertNotIn("CLOUD-ARGS:", out)
        overlay = os.path.join(AGENT.dir, "state", "disks", "cloud-%s.qcow2" % inst["id"])
        self.assertTrue(os.path.exists(overlay))
        info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", overlay],
                                         check=True, capture_output=True, text=True).stdout)
        self.assertEqual(info["format"], "qcow2")
        self.assertEqual(info["virtual-size"], 1 << 30)
        self.assertEqual(info["backing-filename"], cache(DIGESTS["disk"]))
        self.assertEqual(info.get("backing-filename-format"), "qcow2")
        self.assertIn(overlay, virsh("domblklist", "cloud-" + inst["id"]).stdout)
        st, _, body = request("DELETE", "/v1/instances/" + inst["id"])
        self.assertEqual(st, 202, body)
        poll(lambda: request("GET", "/v1/instances/" + inst["id"])[0] == 404, 90,
             interval=0.5, what="the disk instance to go")
        poll(lambda: not os.path.exists(overlay), 30, what="the overlay to be deleted")
        # The base stays cached for the next instance.
        self.assertTrue(os.path.exists(cache(DIGESTS["disk"])))


if __name__ == "__main__":
    e2elib.main()
