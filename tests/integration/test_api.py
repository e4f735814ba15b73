"""Every route of docs/api.md over HTTP against the real controller.

One PostgreSQL and one controller for the whole module (harness.start in
setUpModule); every test uses names of its own, so tests are independent of
each other and of their order. Hosts and images are inserted through SQL
because agents and image uploads come later.

Instances are created from a service's replicas by the reconciler, which is
a later issue: nothing here asserts that.
"""

import json
import re
import secrets
import time
import unittest
from urllib.parse import quote

import harness
from harness import request, unique_name

ID_RE = re.compile(r"^[0-9a-f]{16}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SSE_DEADLINE = 5.0

IMAGE = "hello:latest"  # inserted in setUpModule
IMAGE_V2 = "hello:v2"
IMAGE_DIGEST = None

DEFAULT_RESOURCES = {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}


def setUpModule():
    global IMAGE_DIGEST
    c = harness.start()
    _, IMAGE_DIGEST = c.add_image("hello", "latest")
    c.add_image("hello", "v2")


def tearDownModule():
    harness.stop()


# -- helpers ------------------------------------------------------------------

def create_service(tc, **fields):
    body = {"name": unique_name("svc"), "image": IMAGE}
    body.update(fields)
    st, _, svc = request("POST", "/v1/services", body)
    tc.assertEqual(st, 201, svc)
    return svc


def create_instance(tc, **fields):
    body = {"image": IMAGE}
    body.update(fields)
    st, _, inst = request("POST", "/v1/instances", body)
    tc.assertEqual(st, 201, inst)
    return inst


def walk(tc, path, limit, max_pages=1000):
    """Follows `next` cursors from the first page; returns (items, pages)."""
    items, pages, cursors = [], [], set()
    sep = "&" if "?" in path else "?"
    url = "%s%slimit=%d" % (path, sep, limit)
    for _ in range(max_pages):
        st, _, page = request("GET", url)
        tc.assertEqual(st, 200, page)
        tc.assertEqual(set(page), {"items", "next"}, page)
        tc.assertLessEqual(len(page["items"]), limit)
        pages.append(page)
        items.extend(page["items"])
        if page["next"] is None:
            return items, pages
        tc.assertIsInstance(page["next"], str)
        tc.assertNotIn(page["next"], cursors, "%s: cursor %r came back; `after` is ignored" % (url, page["next"]))
        cursors.add(page["next"])
        tc.assertEqual(len(page["items"]), limit, "a page before the last is not full")
        url = "%s%slimit=%d&after=%s" % (path, sep, limit, quote(page["next"], safe=""))
    tc.fail("more than %d pages at %s" % (max_pages, path))


def last_event_id(tc):
    items, _ = walk(tc, "/v1/events", 1000)
    return items[-1]["id"] if items else 0


def events_since(tc, since, **filters):
    q = "&".join(["since=%d" % since] + ["%s=%s" % kv for kv in filters.items()])
    items, _ = walk(tc, "/v1/events?" + q, 1000)
    return items


def sse_id(ev):
    """An event's id for ordering checks. The `id:` framing itself is asserted
    in test_watch_streams_new_events; other watch tests fall back to the id
    in the JSON so each failure is reported once, by the test about it."""
    if "id" in ev:
        return int(ev["id"])
    return int((ev.get("json") or {}).get("id", -1))


def etag_version(hdrs):
    tag = hdrs.get("ETag")
    m = re.fullmatch(r'"(\d+)"', tag or "")
    return int(m.group(1)) if m else None


def parse_metrics(text):
    """Prometheus text -> list of (name, {labels}, value)."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)', line)
        if not m:
            continue
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def metric_value(samples, name, **labels):
    for n, l, v in samples:
        if n == name and all(l.get(k) == val for k, val in labels.items()):
            return v
    return None


# -- health -------------------------------------------------------------------

class HealthTests(harness.TestCase):
    def test_healthz(self):
        st, hdrs, body = request("GET", "/healthz")
        self.assertEqual((st, body), (200, {"status": "ok"}))
        self.assertTrue(hdrs.get("Content-Type", "").startswith("application/json"))

    def test_readyz(self):
        st, _, body = request("GET", "/readyz")
        self.assertEqual((st, body), (200, {"status": "ready"}))

    def test_metrics(self):
        create_service(self)  # at least one POST /v1/services -> 201
        create_instance(self)  # at least one pending instance
        request("GET", "/v1/services/%s" % unique_name("nope"))  # a 404

        def scrape():
            st, hdrs, text = request("GET", "/metrics")
            self.assertEqual(st, 200)
            self.assertTrue(hdrs.get("Content-Type", "").startswith("text/plain"), hdrs.get("Content-Type"))
            samples = parse_metrics(text)
            pending = metric_value(samples, "cloud_instances", state="pending")
            return (text, samples) if pending is not None and pending >= 1 else None

        # Gauges may be refreshed on a timer: poll, do not sleep.
        text, samples = harness.poll(scrape, 15, what='cloud_instances{state="pending"} >= 1')
        created = metric_value(samples, "cloud_http_requests_total",
                               route="/v1/services", method="POST", status="201")
        self.assertIsNotNone(created, "no cloud_http_requests_total{route=\"/v1/services\",method=\"POST\",status=\"201\"}")
        self.assertGreaterEqual(created, 1)
        self.assertIn("# TYPE cloud_http_requests_total counter", text)
        buckets = [s for s in samples if s[0] == "cloud_http_request_duration_seconds_bucket"]
        self.assertTrue(buckets, "no cloud_http_request_duration_seconds_bucket")
        self.assertTrue(any(l.get("le") == "+Inf" for _, l, _ in buckets), "histogram without le=\"+Inf\"")
        self.assertIn("# TYPE cloud_http_request_duration_seconds histogram", text)
        self.assertIsNotNone(metric_value(samples, "cloud_db_pool_connections"), "no cloud_db_pool_connections")
        # Counters only grow.
        st, _, text2 = request("GET", "/metrics")
        self.assertEqual(st, 200)
        after = metric_value(parse_metrics(text2), "cloud_http_requests_total",
                             route="/v1/services", method="POST", status="201")
        self.assertGreaterEqual(after, created)


# -- protocol-level errors -----------------------------------------------------

class ProtocolTests(harness.TestCase):
    def test_unknown_route_is_json_404(self):
        for path in ("/v1/nothing", "/nope", "/v1/services/x/y/z", "/v2/services"):
            with self.subTest(path=path):
                self.assertError(request("GET", path), 404, "not_found")
        # Any method on an unknown route is 404, not 405.
        for method, path in (("POST", "/v1/nothing"), ("DELETE", "/nope"), ("PUT", "/v1/hosts/x/reboot")):
            with self.subTest(method=method, path=path):
                self.assertError(request(method, path), 404, "not_found")

    def test_wrong_method_is_405_with_allow(self):
        cases = [
            ("PUT", "/v1/services", {"GET", "POST"}),
            ("DELETE", "/v1/services", {"GET", "POST"}),
            ("POST", "/v1/services/web", {"GET", "PATCH", "DELETE"}),
            ("PUT", "/v1/instances", {"GET", "POST"}),
            ("PATCH", "/v1/instances/abcd1234", {"GET", "DELETE"}),
            ("GET", "/v1/instances/abcd1234/kill", {"POST"}),
            ("POST", "/v1/hosts", {"GET"}),
            ("DELETE", "/v1/hosts/hv1", {"GET"}),
            ("GET", "/v1/hosts/hv1/cordon", {"POST"}),
            ("GET", "/v1/hosts/hv1/uncordon", {"POST"}),
            ("GET", "/v1/hosts/hv1/drain", {"POST"}),
            ("POST", "/v1/events", {"GET"}),
            ("PUT", "/v1/images/hello", {"GET", "DELETE"}),
            ("GET", "/v1/blobs/uploads", {"POST"}),
            ("POST", "/healthz", {"GET"}),
            ("POST", "/readyz", {"GET"}),
            ("POST", "/metrics", {"GET"}),
        ]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                resp = request(method, path)
                self.assertError(resp, 405, "method_not_allowed")
                allow = resp[1].get("Allow")
                self.assertIsNotNone(allow, "405 without an Allow header")
                got = {m.strip() for m in allow.split(",") if m.strip()}
                # HEAD/OPTIONS may be listed in addition.
                self.assertTrue(allowed <= got, "Allow: %r, expected %r" % (allow, allowed))
                self.assertNotIn(method, got)

    def assert_bodies_400(self, raws):
        for raw in raws:
            with self.subTest(raw=raw):
                self.assertError(request("POST", "/v1/services", raw,
                                         headers={"Content-Type": "application/json"}),
                                 400, "bad_request")

    def test_malformed_json_is_400(self):
        self.assert_bodies_400((b"{", b'{"name": }', b"{'name': 'x'}", b'{"name":"a"} trailing',
                                b"\xff\xfe"))

    def test_non_object_body_is_400(self):
        self.assert_bodies_400((b"[]", b'"web"', b"42", b"null", b"true"))
        self.assertError(request("POST", "/v1/instances", b"[1]",
                                 headers={"Content-Type": "application/json"}), 400, "bad_request")

    def test_body_over_1mib_is_413(self):
        name = unique_name("big")
        pad = "x" * (1024 * 1024)
        body = json.dumps({"name": name, "image": IMAGE, "env": {"PAD": pad}}).encode()
        self.assertGreater(len(body), 1024 * 1024)
        self.assertError(request("POST", "/v1/services", body,
                                 headers={"Content-Type": "application/json"}), 413, "too_large")
        self.assertError(request("GET", "/v1/services/%s" % name), 404, "not_found")

    def test_headers_over_16kib_is_413(self):
        self.assertError(request("GET", "/v1/services", headers={"X-Pad": "y" * (17 * 1024)}),
                         413, "too_large")

    def test_non_json_content_type_is_415(self):
        name = unique_name("ctype")
        body = json.dumps({"name": name, "image": IMAGE}).encode()
        self.assertError(request("POST", "/v1/services", body, headers={"Content-Type": "text/plain"}),
                         415, "unsupported_media_type")
        self.assertError(request("GET", "/v1/services/%s" % name), 404, "not_found")

    def test_bad_query_parameters_are_400(self):
        for path in ("/v1/services?limit=0", "/v1/services?limit=1001", "/v1/services?limit=abc",
                     "/v1/services?limit=-1", "/v1/instances?limit=1001", "/v1/hosts?limit=0",
                     "/v1/events?limit=0", "/v1/images?limit=5000", "/v1/events?since=abc",
                     "/v1/services?state=bogus", "/v1/instances?state=bogus",
                     "/v1/instances?desired_state=bogus", "/v1/hosts?state=bogus"):
            with self.subTest(path=path):
                self.assertError(request("GET", path), 400, "bad_request")

    def test_limit_bounds_accepted(self):
        for path in ("/v1/services?limit=1", "/v1/services?limit=1000", "/v1/instances?limit=1000",
                     "/v1/hosts?limit=1", "/v1/events?limit=1000", "/v1/images?limit=1"):
            with self.subTest(path=path):
                st, _, body = request("GET", path)
                self.assertEqual(st, 200, body)
                self.assertEqual(set(body), {"items", "next"})


# -- services -----------------------------------------------------------------

class ServiceTests(harness.TestCase):
    def test_create_fills_defaults(self):
        name = unique_name("web")
        st, hdrs, svc = request("POST", "/v1/services", {"name": name, "image": IMAGE})
        self.assertEqual(st, 201, svc)
        self.assertTrue(hdrs.get("Content-Type", "").startswith("application/json"))
        self.assertRegex(svc["id"], ID_RE)
        expected = {
            "name": name, "image": IMAGE, "resources": DEFAULT_RESOURCES, "args": [], "env": {},
            "ports": [], "restart": "always",
            "placement": {"constraints": [], "strategy": "spread", "max_per_host": 0},
            "partition_policy": "keep", "links": [], "replicas": 1,
            "rollout": {"max_unavailable": 1, "max_surge": 1},
            "generation": 1, "state": "active", "version": 1,
        }
        for k, v in expected.items():
            self.assertEqual(svc.get(k), v, "field %s" % k)
        self.assertRegex(svc["created_at"], TS_RE)
        self.assertRegex(svc["updated_at"], TS_RE)

    def test_create_full_spec_round_trips(self):
        name = unique_name("full")
        spec = {
            "name": name, "image": IMAGE_V2,
            "resources": {"vcpus": 2, "memory_mib": 512, "disk_gib": 10},
            "args": ["--port", "8080"], "env": {"MODE": "prod", "_X1": ""},
            "ports": [{"name": "http", "port": 8080, "protocol": "tcp"},
                      {"name": "dns", "port": 53, "protocol": "udp"}],
            "restart": "on-failure:3",
            "placement": {"constraints": ["zone=a", "disk!=hdd", "rack in (r1,r2)"],
                          "strategy": "binpack", "max_per_host": 2},
            "partition_policy": "keep", "links": ["db", "cache"], "replicas": 3,
            "rollout": {"max_unavailable": 0, "max_surge": 2},
        }
        st, _, svc = request("POST", "/v1/services", spec)
        self.assertEqual(st, 201, svc)
        for k, v in spec.items():
            self.assertEqual(svc[k], v, "field %s" % k)
        st, _, got = request("GET", "/v1/services/%s" % name)
        self.assertEqual(st, 200)
        self.assertEqual(got, svc)
        # replicas=3 makes a service with replicas 3; its instances are the
        # reconciler's business (later issue), so no instance is asserted.
        self.assertEqual(got["replicas"], 3)

    def test_limits_accepted_at_bounds(self):
        svc = create_service(self, resources={"vcpus": 256, "memory_mib": 1048576, "disk_gib": 65536},
                             replicas=10000, restart="on-failure:1000",
                             placement={"max_per_host": 10000},
                             rollout={"max_unavailable": 10000, "max_surge": 10000},
                             args=["a"] * 256, env={"K%d" % i: "v" for i in range(256)})
        self.assertEqual(svc["resources"], {"vcpus": 256, "memory_mib": 1048576, "disk_gib": 65536})
        self.assertEqual(svc["replicas"], 10000)
        svc = create_service(self, resources={"vcpus": 1, "memory_mib": 16, "disk_gib": 0}, replicas=0,
                             restart="on-failure:1")
        self.assertEqual(svc["resources"], {"vcpus": 1, "memory_mib": 16, "disk_gib": 0})
        self.assertEqual(svc["replicas"], 0)
        for restart in ("never", "always", "on-failure"):
            with self.subTest(restart=restart):
                self.assertEqual(create_service(self, restart=restart)["restart"], restart)

    def test_image_references(self):
        # `name` means name:latest; a digest is a reference too.
        for ref in ("hello", IMAGE, IMAGE_V2, IMAGE_DIGEST):
            with self.subTest(ref=ref):
                st, _, svc = request("POST", "/v1/services", {"name": unique_name("ref"), "image": ref})
                self.assertEqual(st, 201, svc)
        for ref in ("nosuch:latest", "hello:nosuchtag", "nosuch",
                    "sha256:" + "0" * 64, "Hello:latest", "sha256:abc"):
            with self.subTest(ref=ref):
                self.assertError(request("POST", "/v1/services", {"name": unique_name("ref"), "image": ref}),
                                 422, "invalid", field="image")

    def test_get_sends_etag(self):
        svc = create_service(self)
        st, hdrs, got = request("GET", "/v1/services/%s" % svc["name"])
        self.assertEqual(st, 200)
        self.assertEqual(got, svc)
        self.assertEqual(hdrs.get("ETag"), '"1"')

    def test_get_unknown_is_404(self):
        self.assertError(request("GET", "/v1/services/%s" % unique_name("nope")), 404, "not_found")

    def test_duplicate_name_is_409(self):
        svc = create_service(self)
        self.assertError(request("POST", "/v1/services", {"name": svc["name"], "image": IMAGE_V2}),
                         409, "conflict")
        st, _, got = request("GET", "/v1/services/%s" % svc["name"])
        self.assertEqual((st, got["image"], got["version"]), (200, IMAGE, 1))

    def test_list_ordered_by_name_and_paginated(self):
        prefix = "ls-" + secrets.token_hex(3)
        names = ["%s-%d" % (prefix, i) for i in (3, 1, 4, 0, 2)]
        for n in names:
            create_service(self, name=n)
        items, pages = walk(self, "/v1/services", 2)
        got = [s["name"] for s in items]
        self.assertEqual(got, sorted(got), "services not ordered by name")
        self.assertEqual(len(got), len(set(got)), "a service appears twice across pages")
        self.assertEqual([n for n in got if n.startswith(prefix)], sorted(names))
        self.assertGreaterEqual(len(pages), 3)
        # Default page size is 100 and the envelope is {items, next}.
        st, _, page = request("GET", "/v1/services")
        self.assertEqual(st, 200)
        self.assertLessEqual(len(page["items"]), 100)

    def test_list_filter_state(self):
        svc = create_service(self)
        items, _ = walk(self, "/v1/services?state=active", 1000)
        self.assertIn(svc["name"], [s["name"] for s in items])
        self.assertTrue(all(s["state"] == "active" for s in items))
        items, _ = walk(self, "/v1/services?state=deleting", 1000)
        self.assertNotIn(svc["name"], [s["name"] for s in items])
        self.assertTrue(all(s["state"] == "deleting" for s in items))

    def test_patch_replicas_does_not_bump_generation(self):
        svc = create_service(self)
        st, _, p = request("PATCH", "/v1/services/%s" % svc["name"], {"replicas": 3})
        self.assertEqual(st, 200, p)
        self.assertEqual((p["replicas"], p["generation"], p["version"]), (3, 1, 2))
        self.assertEqual(p["id"], svc["id"])
        st, hdrs, got = request("GET", "/v1/services/%s" % svc["name"])
        self.assertEqual((got["replicas"], got["generation"], got["version"]), (3, 1, 2))
        self.assertEqual(hdrs.get("ETag"), '"2"')

    def test_patch_spec_fields_bump_generation(self):
        changes = {
            "image": IMAGE_V2,
            "resources": {"vcpus": 2, "memory_mib": 512, "disk_gib": 1},
            "args": ["--verbose"],
            "env": {"MODE": "test"},
            "ports": [{"name": "http", "port": 80, "protocol": "tcp"}],
        }
        self.patch_each(changes, 2, "%s must bump generation")

    def test_patch_other_fields_keep_generation(self):
        changes = {
            "replicas": 5,
            "restart": "never",
            "placement": {"constraints": ["zone=b"], "strategy": "binpack", "max_per_host": 1},
            "links": ["db"],
            "rollout": {"max_unavailable": 2, "max_surge": 0},
        }
        self.patch_each(changes, 1, "%s must not bump generation")

    def patch_each(self, changes, generation, why):
        """PATCHes each field of changes alone into a new service: the
        field as sent, version 2, and generation as given."""
        for field, value in changes.items():
            with self.subTest(field=field):
                svc = create_service(self)
                st, _, p = request("PATCH", "/v1/services/%s" % svc["name"], {field: value})
                self.assertEqual(st, 200, p)
                self.assertEqual(p[field], value)
                self.assertEqual(p["generation"], generation, why % field)
                self.assertEqual(p["version"], 2)

    def test_patch_several_then_generation_once(self):
        svc = create_service(self)
        st, _, p = request("PATCH", "/v1/services/%s" % svc["name"],
                           {"image": IMAGE_V2, "args": ["x"], "replicas": 2})
        self.assertEqual(st, 200, p)
        self.assertEqual((p["image"], p["args"], p["replicas"], p["generation"], p["version"]),
                         (IMAGE_V2, ["x"], 2, 2, 2))

    def test_empty_patch(self):
        # "any subset" includes the empty one; if the controller refuses it
        # anyway, it is a validation error and must say so like one.
        svc = create_service(self)
        resp = request("PATCH", "/v1/services/%s" % svc["name"], {})
        st, _, body = resp
        if st == 200:
            self.assertEqual((body["generation"], body["replicas"]), (1, 1))
        else:
            err = self.assertError(resp, 422, "invalid")
            self.assertIn("field", err, "a 422 without `field`: %r" % body)

    def test_patch_errors(self):
        svc = create_service(self)
        path = "/v1/services/%s" % svc["name"]
        self.assertError(request("PATCH", "/v1/services/%s" % unique_name("nope"), {"replicas": 2}),
                         404, "not_found")
        self.assertError(request("PATCH", path, {"name": "other"}), 422, "invalid", field="name")
        self.assertError(request("PATCH", path, {"state": "deleting"}), 422, "invalid", field="state")
        self.assertError(request("PATCH", path, {"generation": 7}), 422, "invalid", field="generation")
        self.assertError(request("PATCH", path, {"replicas": 10001}), 422, "invalid", field="replicas")
        self.assertError(request("PATCH", path, {"resources": {"vcpus": 0}}), 422, "invalid",
                         field="resources.vcpus")
        self.assertError(request("PATCH", path, {"image": "nosuch:latest"}), 422, "invalid", field="image")
        self.assertError(request("PATCH", path, b"{", headers={"Content-Type": "application/json"}),
                         400, "bad_request")
        self.assertError(request("PATCH", path, b"[]", headers={"Content-Type": "application/json"}),
                         400, "bad_request")
        st, _, got = request("GET", path)
        self.assertEqual((st, got["version"], got["generation"]), (200, 1, 1), "a failed PATCH changed it")

    def test_if_match(self):
        svc = create_service(self, replicas=0)
        path = "/v1/services/%s" % svc["name"]
        st, hdrs, _ = request("GET", path)
        self.assertEqual(etag_version(hdrs), 1)
        self.assertError(request("PATCH", path, {"replicas": 2}, headers={"If-Match": '"2"'}),
                         412, "precondition_failed")
        self.assertError(request("PATCH", path, {"replicas": 2}, headers={"If-Match": "7"}),
                         412, "precondition_failed")
        st, _, got = request("GET", path)
        self.assertEqual((got["replicas"], got["version"]), (0, 1), "a 412 PATCH changed the service")
        # Quotes are optional.
        st, _, p = request("PATCH", path, {"replicas": 2}, headers={"If-Match": "1"})
        self.assertEqual((st, p["version"]), (200, 2), p)
        st, _, p = request("PATCH", path, {"replicas": 3}, headers={"If-Match": '"2"'})
        self.assertEqual((st, p["version"]), (200, 3), p)
        # DELETE honours it too.
        self.assertError(request("DELETE", path, headers={"If-Match": '"1"'}), 412, "precondition_failed")
        st, _, _ = request("GET", path)
        self.assertEqual(st, 200)
        st, _, body = request("DELETE", path, headers={"If-Match": '"3"'})
        self.assertEqual(st, 200, body)

    def test_delete_without_instances_is_200_and_gone(self):
        svc = create_service(self, replicas=0)
        path = "/v1/services/%s" % svc["name"]
        st, _, body = request("DELETE", path)
        self.assertEqual(st, 200, body)
        self.assertIsInstance(body, dict)
        self.assertError(request("GET", path), 404, "not_found")
        self.assertError(request("DELETE", path), 404, "not_found")
        items, _ = walk(self, "/v1/services", 1000)
        self.assertNotIn(svc["name"], [s["name"] for s in items])
        # The name is free again.
        again = create_service(self, name=svc["name"])
        self.assertNotEqual(again["id"], svc["id"])

    def test_idempotency_key(self):
        key = "idem-" + secrets.token_hex(8)
        name = unique_name("idem")
        st, _, first = request("POST", "/v1/services", {"name": name, "image": IMAGE},
                               headers={"Idempotency-Key": key})
        self.assertEqual(st, 201, first)
        st, _, again = request("POST", "/v1/services", {"name": name, "image": IMAGE},
                               headers={"Idempotency-Key": key})
        self.assertEqual(st, 200, again)
        self.assertEqual(again["id"], first["id"])
        self.assertEqual(again, first)
        # A retry answers the first object even if the body changed.
        st, _, third = request("POST", "/v1/services", {"name": unique_name("idem"), "image": IMAGE},
                               headers={"Idempotency-Key": key})
        self.assertEqual((st, third["id"], third["name"]), (200, first["id"], name))
        items, _ = walk(self, "/v1/services", 1000)
        self.assertEqual([s["name"] for s in items].count(name), 1)
        self.assertNotIn(third["name"], [s["name"] for s in items if s["id"] != first["id"]])
        # Without the key, the same body is a duplicate.
        self.assertError(request("POST", "/v1/services", {"name": name, "image": IMAGE}), 409, "conflict")
        # The key names a service: it cannot create an instance.
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE},
                                 headers={"Idempotency-Key": key}), 409, "conflict")

    def test_idempotency_key_over_128_chars(self):
        st, _, body = request("POST", "/v1/services", {"name": unique_name("k"), "image": IMAGE},
                              headers={"Idempotency-Key": "k" * 128})
        self.assertEqual(st, 201, body)
        resp = request("POST", "/v1/services", {"name": unique_name("k"), "image": IMAGE},
                       headers={"Idempotency-Key": "k" * 129})
        self.assertIn(resp[0], (400, 422), resp)


class ServiceValidationTests(harness.TestCase):
    def post(self, **fields):
        body = {"name": unique_name("val"), "image": IMAGE}
        body.update(fields)
        return request("POST", "/v1/services", body)

    def check(self, field, **fields):
        resp = self.post(**fields)
        self.assertError(resp, 422, "invalid", field=field)
        name = fields.get("name")
        if isinstance(name, str) and NAME_RE.match(name or ""):
            self.assertEqual(request("GET", "/v1/services/%s" % name)[0], 404)

    def test_bad_names(self):
        for name in ("Bad_Name", "UPPER", "-lead", "trail-", "a" * 64, "", "a.b", "a b", "é"):
            with self.subTest(name=name):
                self.assertError(self.post(name=name), 422, "invalid", field="name")
        for name in (123, None, ["a"]):
            with self.subTest(name=name):
                self.assertError(self.post(name=name), 422, "invalid", field="name")
        ok = "a" + "b" * 61 + "c"
        st, _, body = self.post(name=ok)
        self.assertEqual(st, 201, body)

    def test_required_fields(self):
        self.assertError(request("POST", "/v1/services", {"image": IMAGE}), 422, "invalid", field="name")
        self.assertError(request("POST", "/v1/services", {"name": unique_name("noimg")}), 422, "invalid",
                         field="image")

    def test_unknown_fields_are_named(self):
        self.assertError(self.post(colour="blue"), 422, "invalid", field="colour")
        self.assertError(self.post(id="0123456789abcdef"), 422, "invalid", field="id")
        self.assertError(self.post(generation=3), 422, "invalid", field="generation")
        self.assertError(self.post(resources={"vcpus": 1, "gpus": 1}), 422, "invalid", field="resources.gpus")
        self.assertError(self.post(placement={"zone": "a"}), 422, "invalid", field="placement.zone")
        self.assertError(self.post(rollout={"surge": 1}), 422, "invalid", field="rollout.surge")

    def test_ranges(self):
        cases = [
            ("resources.vcpus", {"resources": {"vcpus": 0}}),
            ("resources.vcpus", {"resources": {"vcpus": 257}}),
            ("resources.vcpus", {"resources": {"vcpus": 1.5}}),
            ("resources.vcpus", {"resources": {"vcpus": "2"}}),
            ("resources.memory_mib", {"resources": {"memory_mib": 15}}),
            ("resources.memory_mib", {"resources": {"memory_mib": 1048577}}),
            ("resources.disk_gib", {"resources": {"disk_gib": -1}}),
            ("resources.disk_gib", {"resources": {"disk_gib": 65537}}),
            ("replicas", {"replicas": -1}),
            ("replicas", {"replicas": 10001}),
            ("replicas", {"replicas": "3"}),
            ("placement.max_per_host", {"placement": {"max_per_host": 10001}}),
            ("rollout.max_unavailable", {"rollout": {"max_unavailable": -1}}),
            ("rollout.max_surge", {"rollout": {"max_surge": 10001}}),
        ]
        for field, fields in cases:
            with self.subTest(fields=fields):
                self.check(field, **fields)

    def test_restart(self):
        for r in ("sometimes", "on-failure:0", "on-failure:1001", "on-failure:x", "on-failure:",
                  "Always", "", "on_failure"):
            with self.subTest(restart=r):
                self.check("restart", restart=r)
        self.check("restart", restart=3)

    def test_constraints(self):
        for c in ("zone", "zone=", "=a", "zone==a", "rack in r1", "rack in ()", "rack in (r1,",
                  "zone~a", "zone = a b"):
            with self.subTest(constraint=c):
                resp = self.post(placement={"constraints": [c]})
                err = self.assertError(resp, 422, "invalid")
                self.assertTrue(err.get("field", "").startswith("placement.constraints"), err)
        resp = self.post(placement={"constraints": ["zone=a"] * 33})
        err = self.assertError(resp, 422, "invalid")
        self.assertTrue(err.get("field", "").startswith("placement.constraints"), err)
        self.check("placement.strategy", placement={"strategy": "random"})

    def test_args_fit_the_kernel_command_line(self):
        """args go on the kernel command line, quoted where they hold a
        space (common/cmdline.h): a double quote or a control character
        cannot be carried, and together, quoted, they take at most 1022
        bytes (2047 for the kernel, 1024 for the image's own cmdline)."""
        for bad in ('say "hi"', "tab\there", "nl\n", "\x7f"):
            with self.subTest(arg=bad):
                err = self.assertError(self.post(args=["ok", bad]), 422, "invalid",
                                       field="args[1]")
                self.assertIn("args[1]", err["message"])
        # 1022 bytes on the command line: 2 quoted args, a space between.
        fits = ["a " + "x" * 507, "b " + "y" * 506]
        self.assertEqual(sum(len(a) + 2 for a in fits) + 1, 1022)
        st, _, svc = self.post(args=fits)
        self.assertEqual(st, 201, svc)
        self.assertEqual(svc["args"], fits)
        # One byte more (a third, empty arg is "" and a space: 3 more).
        err = self.assertError(self.post(args=["a " + "x" * 508, "b " + "y" * 506]), 422,
                               "invalid", field="args")
        self.assertIn("1022", err["message"])
        err = self.assertError(self.post(args=fits + [""]), 422, "invalid", field="args")
        self.assertIn("1025", err["message"])
        # Also on a patch and on a one-off instance.
        st, _, _ = request("PATCH", "/v1/services/" + svc["name"], {"args": ['"']})
        self.assertEqual(st, 422)
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "args": ["x" * 1023]}),
                         422, "invalid", field="args")

    def test_env_total_is_capped(self):
        """The env goes to the guest in one boot line with every desired
        set: 16 KiB of keys and values at most."""
        env = {"K%02d" % i: "v" * 4093 for i in range(4)}   # 4 * (3 + 4093) = 16384
        st, _, svc = self.post(env=env)
        self.assertEqual(st, 201, svc)
        env["K04"] = ""
        err = self.assertError(self.post(env=env), 422, "invalid", field="env")
        self.assertIn("16387", err["message"])
        self.assertIn("16384", err["message"])
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "env": env}),
                         422, "invalid", field="env")

    def test_collections(self):
        err = self.assertError(self.post(args=["a"] * 257), 422, "invalid")
        self.assertTrue(err.get("field", "").startswith("args"), err)
        err = self.assertError(self.post(args=["x" * 4097]), 422, "invalid")
        self.assertTrue(err.get("field", "").startswith("args"), err)
        err = self.assertError(self.post(args="--port 80"), 422, "invalid", field="args")
        err = self.assertError(self.post(env={"1BAD": "x"}), 422, "invalid")
        self.assertTrue(err.get("field", "").startswith("env"), err)
        err = self.assertError(self.post(env={"OK": 1}), 422, "invalid")
        self.assertTrue(err.get("field", "").startswith("env"), err)
        err = self.assertError(self.post(env={"K%d" % i: "v" for i in range(257)}), 422, "invalid")
        self.assertTrue(err.get("field", "").startswith("env"), err)
        for ports in ([{"name": "http", "port": 0}], [{"name": "http", "port": 65536}],
                      [{"name": "http", "port": 80, "protocol": "sctp"}],
                      [{"name": "Bad_Name", "port": 80}],
                      [{"name": "p%d" % i, "port": 1000 + i} for i in range(65)]):
            with self.subTest(ports=ports[:1]):
                err = self.assertError(self.post(ports=ports), 422, "invalid")
                self.assertTrue(err.get("field", "").startswith("ports"), err)
        for links in (["Bad_Name"], ["s%d" % i for i in range(65)]):
            with self.subTest(links=links[:1]):
                err = self.assertError(self.post(links=links), 422, "invalid")
                self.assertTrue(err.get("field", "").startswith("links"), err)
        self.check("partition_policy", partition_policy="maybe")
        # "stop" (agents fence themselves, docs/agent.md "Fencing") is
        # stored, on create and on PATCH.
        st, _, svc = self.post(partition_policy="stop")
        self.assertEqual((st, svc.get("partition_policy")), (201, "stop"), svc)
        svc = create_service(self)
        st, _, body = request("PATCH", "/v1/services/%s" % svc["name"],
                              {"partition_policy": "stop"})
        self.assertEqual(st, 200, body)
        self.assertEqual(request("GET", "/v1/services/%s" % svc["name"])[2]["partition_policy"],
                         "stop")


# -- instances ----------------------------------------------------------------

class InstanceTests(harness.TestCase):
    def test_one_off_create_defaults(self):
        st, hdrs, inst = request("POST", "/v1/instances", {"image": IMAGE})
        self.assertEqual(st, 201, inst)
        self.assertRegex(inst["id"], ID_RE)
        expected = {
            "name": "run-" + inst["id"][:12], "service": None, "image": IMAGE,
            "resources": DEFAULT_RESOURCES, "args": [], "env": {}, "restart": "never",
            "desired_state": "running", "state": "pending", "host": None, "exit_code": None,
            "reason": None, "restart_count": 0, "addresses": [], "version": 1,
            "started_at": None, "finished_at": None,
        }
        for k, v in expected.items():
            self.assertEqual(inst.get(k, "<absent>"), v, "field %s" % k)
        self.assertIn("pending_reason", inst)
        self.assertIn("generation", inst)
        self.assertRegex(inst["created_at"], TS_RE)
        self.assertRegex(inst["updated_at"], TS_RE)

    def test_one_off_create_with_spec(self):
        name = unique_name("run")
        spec = {"image": IMAGE_V2, "name": name, "resources": {"vcpus": 2, "memory_mib": 128, "disk_gib": 1},
                "args": ["--once"], "env": {"A": "b"}, "restart": "on-failure:2",
                "placement": {"constraints": ["zone=a"], "strategy": "binpack", "max_per_host": 0}}
        st, _, inst = request("POST", "/v1/instances", spec)
        self.assertEqual(st, 201, inst)
        for k in ("image", "name", "resources", "args", "env", "restart"):
            self.assertEqual(inst[k], spec[k], "field %s" % k)
        self.assertIsNone(inst["service"])
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "name": name}), 409, "conflict")

    def test_create_validation(self):
        self.assertError(request("POST", "/v1/instances", {}), 422, "invalid", field="image")
        self.assertError(request("POST", "/v1/instances", {"image": "nosuch:latest"}), 422, "invalid",
                         field="image")
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "name": "Bad_Name"}), 422,
                         "invalid", field="name")
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "replicas": 2}), 422,
                         "invalid", field="replicas")
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "service": "web"}), 422,
                         "invalid", field="service")
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "restart": "sometimes"}), 422,
                         "invalid", field="restart")
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "resources": {"vcpus": 300}}),
                         422, "invalid", field="resources.vcpus")
        self.assertError(request("POST", "/v1/instances", b"{", headers={"Content-Type": "application/json"}),
                         400, "bad_request")

    def test_idempotency_key(self):
        key = "run-" + secrets.token_hex(8)
        st, _, first = request("POST", "/v1/instances", {"image": IMAGE}, headers={"Idempotency-Key": key})
        self.assertEqual(st, 201, first)
        st, _, again = request("POST", "/v1/instances", {"image": IMAGE}, headers={"Idempotency-Key": key})
        self.assertEqual(st, 200, again)
        self.assertEqual(again["id"], first["id"])
        items, _ = walk(self, "/v1/instances", 1000)
        self.assertEqual([i["id"] for i in items].count(first["id"]), 1)
        self.assertEqual([i["name"] for i in items].count(first["name"]), 1)
        # Once the instance is gone, a retry cannot answer it.
        st, _, body = request("DELETE", "/v1/instances/" + first["id"])
        self.assertEqual(st, 200, body)
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE},
                                 headers={"Idempotency-Key": key}), 409, "conflict")

    def test_get_by_id_prefix_and_name(self):
        inst = create_instance(self, name=unique_name("get"))
        for ref in (inst["id"], inst["id"][:12], inst["id"][:4] if self._prefix_unique(inst["id"][:4]) else
                    inst["id"][:10], inst["name"]):
            with self.subTest(ref=ref):
                st, hdrs, got = request("GET", "/v1/instances/%s" % ref)
                self.assertEqual(st, 200, got)
                self.assertEqual(got["id"], inst["id"])
                self.assertEqual(got, inst)
                self.assertEqual(hdrs.get("ETag"), '"1"')
        # Fewer than 4 characters is not a prefix.
        self.assertError(request("GET", "/v1/instances/%s" % inst["id"][:3]), 404, "not_found")
        self.assertError(request("GET", "/v1/instances/%s" % unique_name("nope")), 404, "not_found")
        self.assertError(request("GET", "/v1/instances/ffffffffffffffff"), 404, "not_found")

    def test_ambiguous_prefix_is_409(self):
        # Ids are random, so two instances are given a common prefix through
        # SQL, then the controller is restarted so that no cache of it holds
        # the old ids.
        a, b = create_instance(self), create_instance(self)
        prefix = secrets.token_hex(3)
        for inst in (a, b):
            harness.psql("UPDATE instances SET id = '%s' || substr(id, 7) WHERE id = '%s'"
                         % (prefix, inst["id"]))
            inst["id"] = prefix + inst["id"][6:]
        harness.cluster().restart_controller()
        for ref in (prefix[:4], prefix):
            with self.subTest(ref=ref):
                self.assertError(request("GET", "/v1/instances/%s" % ref), 409, "conflict")
                self.assertError(request("POST", "/v1/instances/%s/kill" % ref, {"signal": "TERM"}),
                                 409, "conflict")
                self.assertError(request("DELETE", "/v1/instances/%s" % ref), 409, "conflict")
        if a["id"][:7] != b["id"][:7]:
            st, _, got = request("GET", "/v1/instances/%s" % a["id"][:7])
            self.assertEqual((st, got["id"]), (200, a["id"]), got)
        for inst in (a, b):
            st, _, got = request("GET", "/v1/instances/%s" % inst["id"])
            self.assertEqual((st, got["state"]), (200, "pending"), "a 409 kill or delete changed it")

    def _prefix_unique(self, prefix):
        items, _ = walk(self, "/v1/instances", 1000)
        return sum(1 for i in items if i["id"].startswith(prefix)) == 1

    def test_kill_on_pending(self):
        # By id or by name; the exit code is 128 + the signal's number.
        for sig, code, ref in (("TERM", 143, "id"), ("KILL", 137, "name")):
            with self.subTest(signal=sig):
                inst = create_instance(self)
                st, _, k = request("POST", "/v1/instances/%s/kill" % inst[ref], {"signal": sig})
                self.assertEqual(st, 202, k)
                self.assertEqual((k["state"], k["exit_code"], k["desired_state"], k["stop_signal"]),
                                 ("exited", code, "stopped", sig))
                self.assertEqual(k["version"], 2)
                st, _, got = request("GET", "/v1/instances/%s" % inst["id"])
                self.assertEqual((got["state"], got["exit_code"]), ("exited", code))
                self.assertRegex(got["finished_at"] or "", TS_RE)
                # Killing an ended instance is a conflict, whatever the signal.
                for body in ({"signal": "TERM"}, {"signal": "KILL"}, None):
                    self.assertError(request("POST", "/v1/instances/%s/kill" % inst["id"], body),
                                     409, "conflict")

    def test_kill_default_signal_is_term(self):
        for body in (None, {}):
            with self.subTest(body=body):
                inst = create_instance(self)
                st, _, k = request("POST", "/v1/instances/%s/kill" % inst["id"][:12], body)
                self.assertEqual(st, 202, k)
                self.assertEqual((k["state"], k["exit_code"], k["stop_signal"]), ("exited", 143, "TERM"))

    def test_kill_errors(self):
        inst = create_instance(self)
        path = "/v1/instances/%s/kill" % inst["id"]
        self.assertError(request("POST", path, {"signal": "HUP"}), 422, "invalid", field="signal")
        self.assertError(request("POST", path, {"signal": "TERM", "force": True}), 422, "invalid",
                         field="force")
        self.assertError(request("POST", path, {"signal": "TERM"}, headers={"If-Match": '"9"'}),
                         412, "precondition_failed")
        st, _, got = request("GET", "/v1/instances/%s" % inst["id"])
        self.assertEqual((got["state"], got["version"]), ("pending", 1), "a failed kill changed it")
        self.assertError(request("POST", "/v1/instances/%s/kill" % unique_name("nope"), {"signal": "TERM"}),
                         404, "not_found")
        st, _, k = request("POST", path, {"signal": "TERM"}, headers={"If-Match": "1"})
        self.assertEqual(st, 202, k)

    def test_delete(self):
        for how in ("id", "name", "prefix"):
            with self.subTest(by=how):
                inst = create_instance(self)
                ref = {"id": inst["id"], "name": inst["name"], "prefix": inst["id"][:12]}[how]
                st, _, body = request("DELETE", "/v1/instances/%s" % ref)
                self.assertEqual(st, 200, body)
                self.assertEqual(body.get("deleted"), True, body)
                self.assertEqual(body.get("id"), inst["id"], body)
                self.assertError(request("GET", "/v1/instances/%s" % inst["id"]), 404, "not_found")
                self.assertError(request("DELETE", "/v1/instances/%s" % inst["id"]), 404, "not_found")
                items, _ = walk(self, "/v1/instances", 1000)
                self.assertNotIn(inst["id"], [i["id"] for i in items])

    def test_delete_exited_and_if_match(self):
        inst = create_instance(self)
        st, _, k = request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "KILL"})
        self.assertEqual(st, 202, k)
        self.assertError(request("DELETE", "/v1/instances/%s" % inst["id"], headers={"If-Match": '"1"'}),
                         412, "precondition_failed")
        st, _, body = request("DELETE", "/v1/instances/%s" % inst["id"], headers={"If-Match": '"2"'})
        self.assertEqual(st, 200, body)
        self.assertEqual((body.get("deleted"), body.get("id")), (True, inst["id"]))

    def test_list_filters(self):
        pending = create_instance(self)
        exited = create_instance(self)
        st, _, _ = request("POST", "/v1/instances/%s/kill" % exited["id"], {"signal": "TERM"})
        self.assertEqual(st, 202)

        def ids(q):
            items, _ = walk(self, "/v1/instances?" + q, 1000)
            return items, [i["id"] for i in items]

        items, got = ids("state=pending")
        self.assertIn(pending["id"], got)
        self.assertNotIn(exited["id"], got)
        self.assertTrue(all(i["state"] == "pending" for i in items))
        items, got = ids("state=exited")
        self.assertIn(exited["id"], got)
        self.assertNotIn(pending["id"], got)
        self.assertTrue(all(i["state"] == "exited" for i in items))
        items, got = ids("desired_state=stopped")
        self.assertIn(exited["id"], got)
        self.assertNotIn(pending["id"], got)
        items, got = ids("desired_state=running")
        self.assertIn(pending["id"], got)
        self.assertNotIn(exited["id"], got)
        # A fresh host has nothing on it; a service with 0 replicas has no
        # instances; one-off instances belong to no service.
        host = unique_name("hv")
        harness.cluster().add_host(host)
        self.assertEqual(ids("host=%s" % host)[1], [])
        svc = create_service(self, replicas=0)
        self.assertEqual(ids("service=%s" % svc["name"])[1], [])
        items, got = ids("state=pending&desired_state=running")
        self.assertIn(pending["id"], got)
        self.assertTrue(all(i["state"] == "pending" and i["desired_state"] == "running" for i in items))

    def test_cursor_pagination_has_no_gaps_or_duplicates(self):
        mine = {create_instance(self)["id"] for _ in range(7)}
        items, pages = walk(self, "/v1/instances", 3)
        got = [i["id"] for i in items]
        self.assertEqual(got, sorted(got), "instances not ordered by id")
        self.assertEqual(len(got), len(set(got)), "an instance appears twice across pages")
        self.assertTrue(mine <= set(got), "missing: %r" % (mine - set(got)))
        self.assertGreaterEqual(len(pages), 3)
        # Same walk through a filter.
        items, pages = walk(self, "/v1/instances?state=pending", 2)
        got = [i["id"] for i in items]
        self.assertEqual(got, sorted(got))
        self.assertEqual(len(got), len(set(got)))
        self.assertTrue(mine <= set(got))
        # The full list in one page equals the walk.
        st, _, one = request("GET", "/v1/instances?state=pending&limit=1000")
        self.assertEqual([i["id"] for i in one["items"]], got)


class PlacedInstanceTests(harness.TestCase):
    """Instances that run on a host: the 202 paths of kill and delete.

    Agents and the scheduler come later, so the running instances are
    inserted through SQL and the controller restarted to load them.
    """

    def setUp(self):
        c = harness.cluster()
        self.host = unique_name("hv")
        self.host_id = c.add_host(self.host)
        self.svc = create_service(self, replicas=1)
        self.member = c.add_placed_instance(self.svc["name"] + "-1", self.host_id,
                                            service_id=self.svc["id"], ordinal=1, vcpus=2, memory_mib=512)
        self.oneoff = c.add_placed_instance(unique_name("run"), self.host_id)
        c.restart_controller()

    def test_host_counts_and_filters(self):
        st, _, h = request("GET", "/v1/hosts/%s" % self.host)
        self.assertEqual(st, 200, h)
        self.assertEqual(h["instances"], 2)
        self.assertEqual(h["allocated"], {"vcpus": 3, "memory_mib": 768, "disk_gib": 0})
        items, _ = walk(self, "/v1/instances?host=%s" % self.host, 1)
        self.assertEqual([i["id"] for i in items], sorted([self.member, self.oneoff]))
        self.assertTrue(all(i["host"] == self.host for i in items))
        items, _ = walk(self, "/v1/instances?service=%s" % self.svc["name"], 1000)
        self.assertEqual([i["id"] for i in items], [self.member])
        self.assertEqual(items[0]["service"], self.svc["name"])
        items, _ = walk(self, "/v1/instances?service=%s&state=running" % self.svc["name"], 1000)
        self.assertEqual([i["id"] for i in items], [self.member])
        items, _ = walk(self, "/v1/instances?service=%s&state=pending" % self.svc["name"], 1000)
        self.assertEqual(items, [])

    def test_kill_running_is_202_and_keeps_running(self):
        st, _, k = request("POST", "/v1/instances/%s/kill" % self.oneoff, {"signal": "TERM"})
        self.assertEqual(st, 202, k)
        self.assertEqual((k["state"], k["desired_state"], k["stop_signal"], k["exit_code"]),
                         ("running", "stopped", "TERM", None))
        # Not ended yet, so a second kill (escalation) is accepted too.
        st, _, k = request("POST", "/v1/instances/%s/kill" % self.oneoff, {"signal": "KILL"})
        self.assertEqual(st, 202, k)
        self.assertEqual((k["state"], k["desired_state"], k["stop_signal"]), ("running", "stopped", "KILL"))

    def test_delete_running_instance_is_202(self):
        st, _, body = request("DELETE", "/v1/instances/%s" % self.oneoff)
        self.assertEqual(st, 202, body)
        self.assertEqual((body["id"], body["desired_state"], body["state"]), (self.oneoff, "deleted", "running"))
        st, _, got = request("GET", "/v1/instances/%s" % self.oneoff)
        self.assertEqual((st, got["desired_state"]), (200, "deleted"))

    def test_delete_service_with_instances_is_202_deleting(self):
        path = "/v1/services/%s" % self.svc["name"]
        st, _, body = request("DELETE", path)
        self.assertEqual(st, 202, body)
        self.assertEqual((body["id"], body["state"]), (self.svc["id"], "deleting"))
        st, _, got = request("GET", path)
        self.assertEqual((st, got["state"]), (200, "deleting"))
        items, _ = walk(self, "/v1/services?state=deleting", 1000)
        self.assertIn(self.svc["name"], [x["name"] for x in items])
        # Its instances get desired `deleted` (allow a moment for a cache).
        def member_deleted():
            st, _, inst = request("GET", "/v1/instances/%s" % self.member)
            self.assertEqual(st, 200, inst)
            return inst["desired_state"] == "deleted"
        harness.poll(member_deleted, 3, what="GET /v1/instances/%s to show desired_state deleted "
                     "(database: %s)" % (self.member, harness.psql(
                         "SELECT desired_state FROM instances WHERE id = '%s'" % self.member)))
        items, _ = walk(self, "/v1/instances?service=%s" % self.svc["name"], 1000)
        self.assertEqual([(i["id"], i["desired_state"]) for i in items], [(self.member, "deleted")])
        st, _, other = request("GET", "/v1/instances/%s" % self.oneoff)
        self.assertEqual(other["desired_state"], "running", "a one-off instance is no member of the service")

    def test_drain_with_service_instances_is_draining(self):
        st, _, h = request("POST", "/v1/hosts/%s/drain" % self.host)
        self.assertEqual((st, h["state"]), (202, "draining"), h)
        st, _, got = request("GET", "/v1/hosts/%s" % self.host)
        self.assertEqual(got["state"], "draining")


# -- hosts --------------------------------------------------------------------

class HostTests(harness.TestCase):
    def add(self):
        name = unique_name("hv")
        hid = harness.cluster().add_host(name)
        return name, hid

    def test_list_and_get(self):
        names = []
        for _ in range(3):
            names.append(self.add()[0])
        items, _ = walk(self, "/v1/hosts", 2)
        got = [h["name"] for h in items]
        self.assertEqual(got, sorted(got), "hosts not ordered by name")
        self.assertEqual(len(got), len(set(got)))
        self.assertTrue(set(names) <= set(got))
        st, hdrs, h = request("GET", "/v1/hosts/%s" % names[0])
        self.assertEqual(st, 200, h)
        self.assertEqual(h, next(x for x in items if x["name"] == names[0]))
        expected = {"name": names[0], "address": "127.0.0.1", "state": "ready", "labels": {"zone": "a"},
                    "capacity": {"vcpus": 8, "memory_mib": 16384, "disk_gib": 100},
                    "allocated": {"vcpus": 0, "memory_mib": 0, "disk_gib": 0},
                    "hypervisor": "qemu", "arch": "x86_64", "instances": 0}
        for k, v in expected.items():
            self.assertEqual(h.get(k), v, "field %s" % k)
        for k in ("id", "session_epoch", "last_seen", "version", "created_at", "updated_at"):
            self.assertIn(k, h)
        self.assertRegex(h["last_seen"], TS_RE)
        self.assertEqual(etag_version(hdrs), h["version"])

    def test_get_unknown_is_404(self):
        self.assertError(request("GET", "/v1/hosts/%s" % unique_name("nohost")), 404, "not_found")

    def test_cordon_uncordon(self):
        name, _ = self.add()
        st, _, h0 = request("GET", "/v1/hosts/%s" % name)
        steps = (("cordon", "cordoned", "ready"), ("uncordon", "ready", "cordoned"))
        for n, (action, state, other) in enumerate(steps, 1):
            with self.subTest(action=action):
                st, _, h = request("POST", "/v1/hosts/%s/%s" % (name, action))
                self.assertEqual(st, 200, h)
                self.assertEqual(h["state"], state)
                self.assertEqual(h["version"], h0["version"] + n)
                st, _, got = request("GET", "/v1/hosts/%s" % name)
                self.assertEqual(got["state"], state)
                items, _ = walk(self, "/v1/hosts?state=" + state, 1000)
                self.assertIn(name, [x["name"] for x in items])
                self.assertTrue(all(x["state"] == state for x in items))
                items, _ = walk(self, "/v1/hosts?state=" + other, 1000)
                self.assertNotIn(name, [x["name"] for x in items])

    def test_drain(self):
        name, _ = self.add()
        st, _, h = request("POST", "/v1/hosts/%s/drain" % name)
        self.assertEqual(st, 202, h)
        # With nothing to move, the drain may finish at once.
        self.assertIn(h["state"], ("draining", "drained"))
        st, _, got = request("GET", "/v1/hosts/%s" % name)
        self.assertIn(got["state"], ("draining", "drained"))
        st, _, h = request("POST", "/v1/hosts/%s/uncordon" % name)
        self.assertEqual((st, h["state"]), (200, "ready"))

    def test_actions_on_unknown_host_are_404(self):
        for action in ("cordon", "uncordon", "drain"):
            with self.subTest(action=action):
                self.assertError(request("POST", "/v1/hosts/%s/%s" % (unique_name("nohost"), action)),
                                 404, "not_found")

    def test_actions_if_match(self):
        name, _ = self.add()
        st, hdrs, h = request("GET", "/v1/hosts/%s" % name)
        v = etag_version(hdrs)
        self.assertIsNotNone(v)
        self.assertError(request("POST", "/v1/hosts/%s/cordon" % name, headers={"If-Match": '"%d"' % (v + 5)}),
                         412, "precondition_failed")
        st, _, got = request("GET", "/v1/hosts/%s" % name)
        self.assertEqual(got["state"], "ready")
        st, _, h = request("POST", "/v1/hosts/%s/cordon" % name, headers={"If-Match": '"%d"' % v})
        self.assertEqual((st, h["state"]), (200, "cordoned"))


# -- events -------------------------------------------------------------------

class EventTests(harness.TestCase):
    def test_list_since(self):
        since = last_event_id(self)
        svc = create_service(self)
        st, _, _ = request("PATCH", "/v1/services/%s" % svc["name"], {"replicas": 2})
        self.assertEqual(st, 200)
        st, _, _ = request("DELETE", "/v1/services/%s" % svc["name"])
        self.assertEqual(st, 200)
        items = events_since(self, since)
        self.assertTrue(all(e["id"] > since for e in items), "since=%d returned older events" % since)
        ids = [e["id"] for e in items]
        self.assertEqual(ids, sorted(set(ids)), "event ids not strictly increasing")
        mine = [e for e in items if e.get("object_id") == svc["id"]]
        self.assertEqual([e["type"] for e in mine], ["service.created", "service.updated", "service.deleted"])
        for e in mine:
            self.assertEqual((e["object"], e["name"]), ("service", svc["name"]))
            self.assertRegex(e["time"], TS_RE)
            self.assertIn(svc["name"], e["message"])
            self.assertIsInstance(e["actor"], str)
            self.assertEqual(set(e), {"id", "time", "type", "object", "object_id", "name", "message", "actor"})
        # Filters.
        only = events_since(self, since, type="service.created")
        self.assertTrue(only and all(e["type"] == "service.created" for e in only))
        self.assertIn(svc["id"], [e["object_id"] for e in only])
        self.assertEqual([e for e in events_since(self, since, object="host")
                          if e["object_id"] == svc["id"]], [])
        self.assertIn(svc["id"], [e["object_id"] for e in events_since(self, since, object="service")])
        # since = the last id -> nothing of ours.
        self.assertEqual([e for e in events_since(self, ids[-1]) if e["object_id"] == svc["id"]], [])

    def test_instance_and_host_events(self):
        since = last_event_id(self)
        inst = create_instance(self)
        request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "TERM"})
        request("DELETE", "/v1/instances/%s" % inst["id"])
        name = unique_name("hv")
        harness.cluster().add_host(name)
        request("POST", "/v1/hosts/%s/cordon" % name)
        request("POST", "/v1/hosts/%s/uncordon" % name)
        items = events_since(self, since)
        types = [e["type"] for e in items if e.get("object_id") == inst["id"]]
        self.assertEqual(types, ["instance.created", "instance.killed", "instance.deleted"])
        host_types = [e["type"] for e in items if e["object"] == "host" and e["name"] == name]
        # host.network: the new host's subnet (IPAM, docs/network.md)
        self.assertEqual(host_types, ["host.network", "host.cordoned", "host.uncordoned"])

    def test_list_pagination(self):
        since = last_event_id(self)
        for _ in range(5):
            create_service(self, replicas=0)
        items, pages = walk(self, "/v1/events?since=%d" % since, 2)
        ids = [e["id"] for e in items]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertGreaterEqual(len([e for e in items if e["type"] == "service.created"]), 5)
        self.assertGreaterEqual(len(pages), 3)

    def test_watch_streams_new_events(self):
        s = harness.cluster().sse("/v1/events?watch=true")
        try:
            self.assertEqual(s.status, 200, getattr(s, "body", None))
            self.assertTrue(s.headers.get("Content-Type", "").startswith("text/event-stream"),
                            s.headers.get("Content-Type"))
            svc = create_service(self)
            ev, seen = s.wait_for(lambda e: e.get("event") == "service.created" and
                                  (e.get("json") or {}).get("object_id") == svc["id"], SSE_DEADLINE)
            self.assertIsNotNone(ev, "no service.created for %s within %.0fs; saw %r"
                                 % (svc["name"], SSE_DEADLINE, seen))
            self.assertEqual(ev["json"]["type"], "service.created")
            self.assertEqual(ev["json"]["name"], svc["name"])
            ids = [sse_id(e) for e in seen]
            self.assertEqual(ids, sorted(set(ids)))
            # The stream stays open and follows further changes.
            request("PATCH", "/v1/services/%s" % svc["name"], {"replicas": 4})
            ev2, seen2 = s.wait_for(lambda e: e.get("event") == "service.updated" and
                                    (e.get("json") or {}).get("object_id") == svc["id"], SSE_DEADLINE)
            self.assertIsNotNone(ev2, "no service.updated within %.0fs; saw %r" % (SSE_DEADLINE, seen2))
            self.assertGreater(sse_id(ev2), sse_id(ev))
            # Framing: every event has `id:` (= its JSON id) and `event:`
            # (= its type) and no other field.
            for e in seen + seen2:
                self.assertIn("id", e, "event %s without an `id:` line; unknown lines %r"
                              % ((e.get("json") or {}).get("id"), e.get("unknown")))
                self.assertEqual(e["id"], str(e["json"]["id"]))
                self.assertEqual(e.get("event"), e["json"]["type"])
                self.assertNotIn("unknown", e)
        finally:
            s.close()

    def test_watch_keepalive(self):
        # docs/api.md: a comment line `: keepalive` every 15 s.
        s = harness.cluster().sse("/v1/events?watch=true")
        try:
            self.assertEqual(s.status, 200)
            deadline = time.monotonic() + 20
            seen = []
            while ": keepalive" not in s.comments and time.monotonic() < deadline:
                ev = s.next_event(0.25)
                if ev is not None:
                    seen.append(ev)
            self.assertIn(": keepalive", s.comments,
                          "no ': keepalive' comment within 20 s; comments %r, other lines %r"
                          % (s.comments, seen))
        finally:
            s.close()

    def _three_services(self):
        since = last_event_id(self)
        svcs = [create_service(self, replicas=0) for _ in range(3)]
        created = {e["object_id"]: e["id"] for e in events_since(self, since, type="service.created")}
        return svcs, [created[s["id"]] for s in svcs]

    def _check_resume(self, stream, svcs, ids):
        try:
            self.assertEqual(stream.status, 200, getattr(stream, "body", None))
            ev, seen = stream.wait_for(lambda e: (e.get("json") or {}).get("object_id") == svcs[2]["id"],
                                       SSE_DEADLINE)
            self.assertIsNotNone(ev, "resumed stream did not replay %s; saw %r" % (svcs[2]["name"], seen))
            got = [sse_id(e) for e in seen]
            self.assertTrue(all(i > ids[0] for i in got), "resume after %d sent %r" % (ids[0], got))
            self.assertEqual(got, sorted(set(got)))
            self.assertIn(ids[1], got)
            self.assertIn(ids[2], got)
        finally:
            stream.close()

    def test_watch_resumes_with_last_event_id(self):
        svcs, ids = self._three_services()
        s = harness.cluster().sse("/v1/events?watch=true", headers={"Last-Event-ID": str(ids[0])})
        self._check_resume(s, svcs, ids)

    def test_watch_resumes_with_since(self):
        svcs, ids = self._three_services()
        s = harness.cluster().sse("/v1/events?watch=true&since=%d" % ids[0])
        self._check_resume(s, svcs, ids)

    def test_watch_filter_type(self):
        since = last_event_id(self)
        s = harness.cluster().sse("/v1/events?watch=true&type=service.deleted&since=%d" % since)
        try:
            self.assertEqual(s.status, 200)
            svc = create_service(self, replicas=0)
            st, _, _ = request("DELETE", "/v1/services/%s" % svc["name"])
            self.assertEqual(st, 200)
            ev, seen = s.wait_for(lambda e: (e.get("json") or {}).get("object_id") == svc["id"], SSE_DEADLINE)
            self.assertIsNotNone(ev, "saw %r" % seen)
            self.assertTrue(all(e.get("event") == "service.deleted" for e in seen), seen)
        finally:
            s.close()


# -- images -------------------------------------------------------------------

class ImageTests(harness.TestCase):
    def test_list_and_get(self):
        name = unique_name("img")
        c = harness.cluster()
        latest_id, digest = c.add_image(name, "latest", size=4321)
        v1_id, _ = c.add_image(name, "v1")
        items, _ = walk(self, "/v1/images", 1000)
        refs = {i["ref"]: i for i in items}
        self.assertIn("%s:latest" % name, refs)
        self.assertIn("%s:v1" % name, refs)
        img = refs["%s:latest" % name]
        expected = {"id": latest_id, "name": name, "tag": "latest", "ref": "%s:latest" % name,
                    "kind": "kernel", "kernel_digest": digest, "initrd_digest": None, "disk_digest": None,
                    "cmdline": "console=ttyS0", "size": 4321}
        for k, v in expected.items():
            self.assertEqual(img.get(k, "<absent>"), v, "field %s" % k)
        self.assertRegex(img["created_at"], TS_RE)
        for ref, want in ((name, latest_id), ("%s:latest" % name, latest_id), ("%s:v1" % name, v1_id),
                          (latest_id, latest_id), (v1_id, v1_id)):
            with self.subTest(ref=ref):
                st, _, got = request("GET", "/v1/images/%s" % ref)
                self.assertEqual(st, 200, got)
                self.assertEqual(got["id"], want)
        st, _, got = request("GET", "/v1/images/%s" % name)
        self.assertEqual(got, img)

    def test_get_unknown_is_404(self):
        for ref in (unique_name("noimg"), unique_name("noimg") + ":latest", "hello:nosuchtag",
                    "0123456789abcdef"):
            with self.subTest(ref=ref):
                self.assertError(request("GET", "/v1/images/%s" % ref), 404, "not_found")

    def test_list_pagination(self):
        c = harness.cluster()
        for _ in range(3):
            c.add_image(unique_name("pg"))
        items, pages = walk(self, "/v1/images", 2)
        ids = [i["id"] for i in items]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertGreaterEqual(len(pages), 2)


if __name__ == "__main__":
    unittest.main()
