"""Image blobs fetched by agents over their link (BlobRequest/BlobChunk).

One cloud-agent on libvirt's test:///default driver WITHOUT --images and
with an explicit --cache-dir (on the test driver that is what turns
fetching on, docs/agent.md "Images and the cache") and a 1 MiB cache
limit. Blobs are uploaded through the API (chunked uploads), so the
controller holds real files. What a user relies on:

- an instance of an uploaded image runs once its blob is in the agent's
  cache, under its digest, with the right content (hash checked here);
- two instances started together, and a third later, cost one fetch;
- a blob whose content is in no cache and not in PostgreSQL -> instance
  failed, with a reason saying so; a blob whose bytes do not match its digest (the
  file damaged on the controller) -> failed, reason says corrupt, and
  nothing is left in the cache under that name;
- past --cache-max-mib, blobs no instance references are evicted, the
  referenced one stays;
- a disk image gets an overlay through the storage API (the test driver's
  in-memory pools), deleted with the instance; initrd/cmdline without a
  kernel are refused;
- the gateway, spoken to by hand: four streams at once, a fifth refused, a
  resumed offset, bad/unknown digests and offsets refused with eof, cancel.
"""

import hashlib
import os
import struct
import unittest

import agentlib
import harness
from harness import poll, request, unique_name

AGENT = None
CACHE = None
OCTET = {"Content-Type": "application/octet-stream"}
SIZE = 600 * 1024  # three 256 KiB pieces


def setUpModule():
    global AGENT, CACHE
    c = harness.start(reconcile=True)
    CACHE = os.path.join(c.tmp, "agents", "bf1", "cache")
    AGENT = agentlib.Agent(c, "bf1", cap_vcpus=16, cap_memory=16384,
                           extra=["--cache-dir", CACHE, "--cache-max-mib", "1"]).start()
    agentlib.wait_host_ready("bf1")


def tearDownModule():
    if AGENT:
        AGENT.stop()
    harness.stop()


def upload(tc, data, port=None, finish=True):
    """Uploads data in pieces (through the controller on port, default the
    cluster's); returns its digest. finish=False: returns (session path,
    digest) with every piece sent and the upload not finished."""
    st, _, body = request("POST", "/v1/blobs/uploads", port=port)
    tc.assertEqual(st, 202, body)
    path = "/v1/blobs/uploads/%s" % body["id"]
    off = 0
    while off < len(data):
        piece = data[off:off + 500000]
        st, _, b = request("PATCH", path, body=piece, port=port,
                           headers=dict(OCTET, **{"Upload-Offset": str(off)}))
        tc.assertEqual(st, 202, b)
        off += len(piece)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if not finish:
        return path, digest
    st, _, b = request("PUT", "%s?digest=%s" % (path, digest), port=port)
    tc.assertEqual(st, 201, b)
    return digest


def make_image(tc, digest):
    name = unique_name("bf").lower()
    st, _, img = request("POST", "/v1/images", {
        "name": name, "tag": "v1", "kind": "kernel", "kernel": digest,
        "cmdline": "console=ttyS0"})
    tc.assertEqual(st, 201, img)
    return "%s:v1" % name


def run(tc, image):
    st, _, inst = request("POST", "/v1/instances", {
        "image": image, "name": unique_name("bfi"), "restart": "never",
        "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
    tc.assertEqual(st, 201, inst)
    return inst["id"]


def wait_state(inst_id, state, timeout=30):
    def ok():
        st, _, inst = request("GET", "/v1/instances/" + inst_id)
        return inst if st == 200 and inst["state"] == state else None
    try:
        return poll(ok, timeout, what="instance %s %s" % (inst_id, state))
    except Exception:
        print(AGENT.log_tail(60))
        raise


def agent_log():
    with open(AGENT.log, "rb") as f:
        return f.read().decode("utf-8", "replace")


def fetched_lines(digest):
    return [l for l in agent_log().splitlines()
            if "fetched %s into the cache" % digest in l]


def cached(digest):
    return os.path.join(CACHE, digest)


def delete(tc, inst_id):
    st, _, body = request("DELETE", "/v1/instances/" + inst_id)
    tc.assertIn(st, (200, 202), body)

    def gone():
        st, _, _ = request("GET", "/v1/instances/" + inst_id)
        return st == 404
    poll(gone, 30, what="instance %s deleted" % inst_id)


class BlobFetchTests(harness.TestCase):
    def test_1_fetch_share_reuse_evict(self):
        data = os.urandom(SIZE)
        digest = upload(self, data)
        image = make_image(self, digest)
        self.assertFalse(os.path.exists(cached(digest)))
        a = run(self, image)
        b = run(self, image)
        wait_state(a, "running")
        wait_state(b, "running")
        with open(cached(digest), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest[7:])
        self.assertEqual(len(fetched_lines(digest)), 1, agent_log())
        # A third instance later: the cache serves it, no new fetch.
        c = run(self, image)
        wait_state(c, "running")
        self.assertEqual(len(fetched_lines(digest)), 1)
        ctl = open(harness.cluster().ctl_log, "rb").read().decode("utf-8", "replace")
        self.assertEqual(ctl.count("blob %s sent" % digest), 1, ctl[-3000:])

        # Eviction: 600 KiB cached, limit 1 MiB. Nothing references the
        # first blob once its instances are gone; a second 600 KiB blob
        # pushes the cache over the limit and the first one goes.
        for i in (a, b, c):
            delete(self, i)
        data2 = os.urandom(SIZE)
        digest2 = upload(self, data2)
        d = run(self, make_image(self, digest2))
        wait_state(d, "running")
        self.assertTrue(os.path.exists(cached(digest2)))
        poll(lambda: not os.path.exists(cached(digest)), 10,
             what="%s evicted" % digest)
        self.assertIn("evicted %s from the cache" % digest, agent_log())
        delete(self, d)

    def test_2_unknown_digest_fails(self):
        # A blob row with no file here and no chunks in PostgreSQL (what
        # add_image writes by SQL): no controller can serve it.
        name = unique_name("bfu").lower()
        _, digest = harness.cluster().add_image(name, "v1")
        i = run(self, name + ":v1")
        inst = wait_state(i, "failed")
        self.assertIn("content is not in PostgreSQL", inst.get("reason", ""), inst)
        self.assertIn(digest, inst["reason"])
        self.assertFalse(os.path.exists(cached(digest)))
        delete(self, i)

    def test_3_corrupt_blob_fails(self):
        data = os.urandom(100000)
        digest = upload(self, data)
        # Damage the stored blob on the controller (same length).
        path = os.path.join(agentlib.ctl_data_dir(harness.cluster()), "blobs", "sha256",
                            digest[7:])
        with open(path, "r+b") as f:
            f.write(b"\0" * 100)
        i = run(self, make_image(self, digest))
        inst = wait_state(i, "failed")
        self.assertIn("corrupt", inst.get("reason", ""), inst)
        self.assertIn(digest, inst["reason"])
        self.assertFalse(os.path.exists(cached(digest)))
        self.assertEqual([n for n in os.listdir(CACHE) if n.startswith(".tmp-")], [])
        delete(self, i)

    def test_4_disk_image_fields(self):
        disk = upload(self, os.urandom(4096))
        kernel = upload(self, os.urandom(4096))
        name = unique_name("bfd").lower()
        st, _, body = request("POST", "/v1/images", {
            "name": name, "kind": "disk", "disk": disk, "initrd": kernel})
        self.assertEqual(st, 422, body)
        self.assertEqual(body["error"]["field"], "initrd", body)
        self.assertIn("need a kernel", body["error"]["message"])
        st, _, body = request("POST", "/v1/images", {
            "name": name, "kind": "disk", "disk": disk, "cmdline": "root=/dev/vda"})
        self.assertEqual(st, 422, body)
        self.assertEqual(body["error"]["field"], "cmdline", body)
        st, _, img = request("POST", "/v1/images", {
            "name": name, "kind": "disk", "disk": disk, "kernel": kernel,
            "cmdline": "root=/dev/vda"})
        self.assertEqual(st, 201, img)
        self.assertEqual((img["kind"], img["disk_digest"], img["kernel_digest"]),
                         ("disk", disk, kernel))

    def test_5_disk_image_overlay(self):
        # The test driver keeps its storage pools in memory: the overlay is
        # made and deleted through the storage API all the same.
        disk = upload(self, os.urandom(8192))
        name = unique_name("bfo").lower()
        st, _, img = request("POST", "/v1/images", {"name": name, "kind": "disk", "disk": disk})
        self.assertEqual(st, 201, img)
        st, _, inst = request("POST", "/v1/instances", {
            "image": name, "name": unique_name("bfo"), "restart": "never",
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 2}})
        self.assertEqual(st, 201, inst)
        wait_state(inst["id"], "running")
        self.assertTrue(os.path.exists(cached(disk)))
        vol = "overlay cloud-%s.qcow2" % inst["id"]
        self.assertIn("%s over %s (raw, %d bytes)" % (vol, cached(disk), 2 << 30), agent_log())
        delete(self, inst["id"])
        poll(lambda: "%s deleted" % vol in agent_log(), 10, what="the overlay deleted")


# ---- the gateway's side, at the protocol level ------------------------------

class RawAgent:
    """Hello over mTLS, then BlobRequests by hand (too small a host for the
    scheduler to place anything on it)."""

    def __init__(self, name):
        c = harness.cluster()
        self.sock = agentlib.tls_client(c, cert_dir=agentlib.issue_cert(c, name), timeout=30)
        msg = agentlib.pb_msg
        self.send(1, msg((1, name), (2, "raw"), (3, msg((1, 1), (2, 16), (3, 0))),
                         (4, msg((1, "x86_64"), (2, "test"), (4, "test"))), (7, 1)))
        while 2 not in self.recv():
            pass

    def send(self, kind, payload):
        env = agentlib.pb_msg((kind, payload))
        self.sock.sendall(struct.pack(">I", len(env)) + env)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            piece = self.sock.recv(n - len(buf))
            if not piece:
                raise ConnectionError("the gateway closed the connection")
            buf += piece
        return buf

    def recv(self):
        (n,) = struct.unpack(">I", self._exact(4))
        return agentlib.pb_parse(self._exact(n))

    def request(self, rid, digest, offset=0, cancel=False):
        self.send(10, agentlib.pb_msg((1, rid), (2, digest), (3, offset), (4, int(cancel))))

    def chunks(self, want_eofs):
        """Reads until want_eofs streams ended: ({id: (data, total, error)},
        the ids that ended). Checks each stream's offsets are contiguous."""
        got, first, ended = {}, {}, set()
        while len(ended) < want_eofs:
            env = self.recv()
            if 11 not in env:
                continue
            ch = agentlib.pb_parse(env[11][0])
            rid = ch.get(1, [0])[0]
            off = ch.get(2, [0])[0]
            data, total, err = got.get(rid, (b"", 0, ""))
            first.setdefault(rid, off)
            assert off == first[rid] + len(data), (rid, off, first[rid], len(data))
            got[rid] = (data + b"".join(ch.get(3, [])), ch.get(4, [total])[0],
                        err + b"".join(ch.get(6, [])).decode())
            if ch.get(5, [0])[0]:
                ended.add(rid)
        return got, ended

    def close(self):
        self.sock.close()


class GatewayBlobTests(harness.TestCase):
    def test_6_gateway_streams(self):
        # 24 MiB: more than the loopback socket buffers hold, so while this
        # client reads nothing no stream can finish before the gateway has
        # read all five requests (with 2 MiB, under load, stream 1 was done
        # before request 5 arrived and 5 was served).
        data = os.urandom(24 * 1024 * 1024 + 123)
        digest = upload(self, data)
        a = RawAgent("bfraw")
        try:
            # Four at once are served, interleaved; a fifth is refused.
            for rid in (1, 2, 3, 4, 5):
                a.request(rid, digest)
            got, _ = a.chunks(5)
            for rid in (1, 2, 3, 4):
                self.assertEqual(got[rid][2], "", got[rid][2])
                self.assertEqual(got[rid][1], len(data))
                self.assertEqual(hashlib.sha256(got[rid][0]).hexdigest(), digest[7:])
            self.assertIn("at most 4 at once", got[5][2])
            # A resumed fetch starts at its offset.
            a.request(6, digest, offset=1000000)
            got, _ = a.chunks(1)
            self.assertEqual(got[6][0], data[1000000:])
            # Refusals: bad digests never reach the file system, unknown
            # ones and offsets past the end are errors with eof.
            a.request(7, "sha256:../../etc/passwd")
            a.request(8, "sha256:" + "0" * 64)
            a.request(9, digest, offset=len(data) + 1)
            got, _ = a.chunks(3)
            self.assertIn("64 lower-case hex", got[7][2])
            self.assertIn("sha256:%s not found" % ("0" * 64), got[8][2])
            self.assertIn("past its end", got[9][2])
            # Cancel: the stream stops, the connection stays usable.
            a.request(10, digest)
            a.request(10, digest, cancel=True)
            a.request(11, digest, offset=len(data) - 10)
            got, ended = a.chunks(1)
            if ended == {10}:
                # Under load the whole blob can leave before the cancel is
                # read: then stream 10 is complete, and 11 still follows.
                self.assertEqual(got[10][0], data)
                more, ended = a.chunks(1)
                got.update(more)
            else:
                self.assertLess(len(got.get(10, (b"",))[0]), len(data))
            self.assertEqual(ended, {11})
            self.assertEqual(got[11][0], data[-10:])
        finally:
            a.close()


if __name__ == "__main__":
    unittest.main()
