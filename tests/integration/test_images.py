"""Image uploads: chunked blob sessions, digest checks, image refs.

The blob protocol (docs/api.md "Images and blobs"): POST /v1/blobs/uploads,
PATCH chunks with Upload-Offset, PUT ?digest= to finish; then POST
/v1/images names the blobs. Deleting an image in use is refused.
"""

import hashlib
import http.client
import os

import harness
from harness import request, unique_name

OCTET = {"Content-Type": "application/octet-stream"}


def setUpModule():
    harness.start()


def tearDownModule():
    harness.stop()


def upload(tc, data, chunk=400000, digest=None):
    st, hdrs, body = request("POST", "/v1/blobs/uploads")
    tc.assertEqual(st, 202, body)
    tc.assertEqual(body["offset"], 0)
    tc.assertEqual(hdrs.get("Location"), "/v1/blobs/uploads/%s" % body["id"])
    path = "/v1/blobs/uploads/%s" % body["id"]
    off = 0
    while off < len(data):
        piece = data[off:off + chunk]
        st, _, b = request("PATCH", path, body=piece,
                           headers=dict(OCTET, **{"Upload-Offset": str(off)}))
        tc.assertEqual(st, 202, b)
        off += len(piece)
        tc.assertEqual(b["offset"], off)
    d = digest or "sha256:" + hashlib.sha256(data).hexdigest()
    return path, request("PUT", "%s?digest=%s" % (path, d))


class BlobTests(harness.TestCase):
    def test_upload_and_download(self):
        data = os.urandom(1200000)
        _, (st, _, body) = upload(self, data)
        self.assertEqual(st, 201, body)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.assertEqual((body["digest"], body["size"]), (digest, len(data)))
        conn = http.client.HTTPConnection("127.0.0.1", harness.cluster().http_port, timeout=30)
        conn.request("GET", "/v1/blobs/%s" % digest,
                     headers={"Authorization": "Bearer " + harness.cluster().token})
        resp = conn.getresponse()
        got = resp.read()
        conn.close()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("X-Blob-Size"), str(len(data)))
        self.assertEqual(hashlib.sha256(got).hexdigest(), digest[7:])

    def test_wrong_digest_is_refused_and_discarded(self):
        data = os.urandom(5000)
        path, resp = upload(self, data, digest="sha256:" + "0" * 64)
        self.assertError(resp, 422, "invalid", field="digest")
        # the session is gone with its data
        self.assertError(request("PATCH", path, body=b"x", headers=OCTET), 404, "not_found")
        self.assertError(request("GET", "/v1/blobs/sha256:" + hashlib.sha256(data).hexdigest()),
                         404, "not_found")

    def test_offset_mismatch_is_409(self):
        st, _, body = request("POST", "/v1/blobs/uploads")
        path = "/v1/blobs/uploads/%s" % body["id"]
        self.assertEqual(request("PATCH", path, body=b"abc",
                                 headers=dict(OCTET, **{"Upload-Offset": "0"}))[0], 202)
        self.assertError(request("PATCH", path, body=b"def",
                                 headers=dict(OCTET, **{"Upload-Offset": "0"})),
                         409, "conflict")
        self.assertEqual(request("DELETE", path)[0], 200)
        self.assertError(request("DELETE", path), 404, "not_found")

    def test_chunk_over_1mib_is_413(self):
        st, _, body = request("POST", "/v1/blobs/uploads")
        path = "/v1/blobs/uploads/%s" % body["id"]
        self.assertError(request("PATCH", path, body=b"x" * (1024 * 1024 + 1), headers=OCTET),
                         413, "too_large")

    def test_bad_digest_names(self):
        self.assertError(request("GET", "/v1/blobs/sha256:xyz"), 400, "bad_request")
        self.assertError(request("PUT", "/v1/blobs/uploads/nope?digest=sha256:" + "a" * 64),
                         404, "not_found")


class ImageTests(harness.TestCase):
    def push(self, name, tag="v1"):
        data = os.urandom(3000)
        _, (st, _, b) = upload(self, data)
        self.assertEqual(st, 201, b)
        st, _, img = request("POST", "/v1/images", {
            "name": name, "tag": tag, "kind": "kernel", "kernel": b["digest"],
            "cmdline": "console=ttyS0 quiet"})
        self.assertEqual(st, 201, img)
        return img

    def test_create_get_list_delete(self):
        name = unique_name("img")
        img = self.push(name)
        self.assertEqual((img["ref"], img["kind"], img["size"]), ("%s:v1" % name, "kernel", 3000))
        st, _, got = request("GET", "/v1/images/%s:v1" % name)
        self.assertEqual((st, got["id"]), (200, img["id"]))
        st, _, page = request("GET", "/v1/images?limit=1000")
        self.assertIn(img["id"], [i["id"] for i in page["items"]])
        self.assertError(request("POST", "/v1/images", {
            "name": name, "tag": "v1", "kind": "kernel", "kernel": img["kernel_digest"]}),
            409, "conflict", field="tag")
        st, _, body = request("DELETE", "/v1/images/%s:v1" % name)
        self.assertEqual((st, body["deleted"]), (200, True))
        self.assertError(request("GET", "/v1/images/%s:v1" % name), 404, "not_found")

    def test_cmdline_leaves_room_for_args(self):
        """An image's cmdline is at most 1024 bytes: with a space and the
        args' 1022 it fits the kernel's 2047 (common/cmdline.h)."""
        _, (st, _, b) = upload(self, os.urandom(1000))
        self.assertEqual(st, 201, b)
        body = {"name": unique_name("img"), "kind": "kernel", "kernel": b["digest"],
                "cmdline": "c" * 1025}
        err = self.assertError(request("POST", "/v1/images", body), 422, "invalid",
                               field="cmdline")
        self.assertIn("1024", err["message"])
        body["cmdline"] = "c" * 1024
        st, _, img = request("POST", "/v1/images", body)
        self.assertEqual((st, img.get("cmdline")), (201, "c" * 1024), img)

    def test_validation(self):
        self.assertError(request("POST", "/v1/images", {"name": "x", "kind": "kernel"}),
                         422, "invalid", field="kernel")
        self.assertError(request("POST", "/v1/images", {
            "name": "x", "kind": "kernel", "kernel": "sha256:" + "c" * 64}),
            422, "invalid", field="kernel")
        self.assertError(request("POST", "/v1/images", {"name": "Bad Name", "kind": "disk"}),
                         422, "invalid", field="name")
        self.assertError(request("POST", "/v1/images", {"name": "x", "kind": "iso"}),
                         422, "invalid", field="kind")
        self.assertError(request("POST", "/v1/images", {"name": "x", "kind": "disk", "color": 1}),
                         422, "invalid", field="color")

    def test_delete_in_use_is_409(self):
        name = unique_name("img")
        self.push(name, "latest")
        st, _, svc = request("POST", "/v1/services", {"name": unique_name("s"), "image": name,
                                                      "replicas": 0})
        self.assertEqual(st, 201, svc)
        err = self.assertError(request("DELETE", "/v1/images/%s" % name), 409, "conflict")
        self.assertIn(svc["name"], err["message"])
        self.assertEqual(request("DELETE", "/v1/services/%s" % svc["name"])[0], 200)
        self.assertEqual(request("DELETE", "/v1/images/%s" % name)[0], 200)
