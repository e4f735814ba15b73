"""Answers of the real controller against proto/openapi.yaml.

test_api asserts behaviour from docs/api.md; this module asserts that what
comes back (status, headers, body shape) is what the OpenAPI contract says,
for every operation, on its success and its error answers.
"""

import json
import unittest

import contract
import harness
from harness import request, unique_name

SPEC = None
IMAGE = "hello:latest"
IMAGE_ID = None
HOST = None


def setUpModule():
    global SPEC, IMAGE_ID, HOST
    SPEC = contract.load_spec()
    if SPEC is None:
        raise unittest.SkipTest("redocly missing (%s); run scripts/setup.sh" % contract.REDOCLY)
    c = harness.start()
    IMAGE_ID, _ = c.add_image("hello", "latest")
    HOST = unique_name("hv")
    c.add_host(HOST)


def tearDownModule():
    harness.stop()


class ContractTests(harness.TestCase):
    def conform(self, method, template, resp, status):
        self.assertEqual(resp[0], status, "%s %s: %r" % (method, template, resp[2]))
        problems = contract.check(SPEC, method, template, resp)
        self.assertEqual(problems, [], "%s %s %d does not match the spec" % (method, template, status))
        return resp[2]

    def call(self, method, path, template, status, body=None, headers=None):
        return self.conform(method, template, request(method, path, body, headers), status)

    def test_validator_can_fail(self):
        svc_schema = SPEC["paths"]["/v1/services/{name}"]["get"]["responses"]["200"]["content"][
            "application/json"]["schema"]
        self.assertTrue(contract.validate(svc_schema, {"id": "x"}))
        self.assertTrue(contract.validate({"type": ["string", "null"]}, 3))
        self.assertTrue(contract.validate({"oneOf": [{"type": "string"}, {"type": "null"}]}, 1))
        self.assertEqual(contract.validate({"type": "integer", "minimum": 1}, 1), [])
        self.assertTrue(contract.check(SPEC, "GET", "/healthz", (418, {}, None)))

    def test_health(self):
        self.call("GET", "/healthz", "/healthz", 200)
        self.call("GET", "/readyz", "/readyz", 200)
        resp = request("GET", "/metrics")
        self.conform("GET", "/metrics", resp, 200)
        resp = request("POST", "/healthz")
        self.assertEqual(resp[0], 405)
        # 405 is listed on every operation of the path with its Allow header.
        self.assertEqual(contract.check(SPEC, "GET", "/healthz", resp), [])

    def test_services(self):
        name = unique_name("c")
        self.call("POST", "/v1/services", "/v1/services", 201,
                  {"name": name, "image": IMAGE, "ports": [{"port": 80}, {"name": "dns", "port": 53,
                                                                          "protocol": "udp"}],
                   "placement": {"constraints": ["zone=a", "rack in (r1, r2)"]}, "replicas": 0})
        self.call("POST", "/v1/services", "/v1/services", 409, {"name": name, "image": IMAGE})
        self.call("POST", "/v1/services", "/v1/services", 422, {"name": name, "image": IMAGE, "x": 1})
        self.call("POST", "/v1/services", "/v1/services", 400, b"{", {"Content-Type": "application/json"})
        self.call("POST", "/v1/services", "/v1/services", 415, b"{}", {"Content-Type": "text/plain"})
        self.call("POST", "/v1/services", "/v1/services", 413,
                  json.dumps({"name": name, "args": ["x" * (1 << 20)]}).encode(),
                  {"Content-Type": "application/json"})
        key = unique_name("key")
        n2 = unique_name("c")
        self.call("POST", "/v1/services", "/v1/services", 201, {"name": n2, "image": IMAGE, "replicas": 0},
                  {"Idempotency-Key": key})
        self.call("POST", "/v1/services", "/v1/services", 200, {"name": n2, "image": IMAGE, "replicas": 0},
                  {"Idempotency-Key": key})
        self.call("GET", "/v1/services?limit=1", "/v1/services", 200)
        self.call("GET", "/v1/services?limit=0", "/v1/services", 400)
        p = "/v1/services/%s" % name
        t = "/v1/services/{name}"
        self.call("GET", p, t, 200)
        self.call("GET", "/v1/services/%s" % unique_name("no"), t, 404)
        self.call("PATCH", p, t, 200, {"replicas": 2, "image": "hello"})
        self.call("PATCH", p, t, 412, {"replicas": 3}, {"If-Match": '"1"'})
        self.call("PATCH", p, t, 422, {"replicas": -1})
        self.call("PATCH", p, t, 400, b"[]", {"Content-Type": "application/json"})
        resp = request("PUT", p)
        self.assertEqual(resp[0], 405)
        self.assertEqual(contract.check(SPEC, "GET", t, resp), [])
        self.call("DELETE", p, t, 412, headers={"If-Match": "99"})
        self.call("DELETE", p, t, 200)
        self.call("DELETE", p, t, 404)

    def test_instances(self):
        t = "/v1/instances/{id}"
        inst = self.call("POST", "/v1/instances", "/v1/instances", 201, {"image": IMAGE})
        self.call("POST", "/v1/instances", "/v1/instances", 422, {"image": "nosuch"})
        self.call("POST", "/v1/instances", "/v1/instances", 409, {"image": IMAGE, "name": inst["name"]})
        self.call("GET", "/v1/instances?limit=2&state=pending", "/v1/instances", 200)
        self.call("GET", "/v1/instances?state=nope", "/v1/instances", 400)
        self.call("GET", "/v1/instances/%s" % inst["id"][:8], t, 200)
        self.call("GET", "/v1/instances/%s" % unique_name("no"), t, 404)
        k = "/v1/instances/{id}/kill"
        self.call("POST", "/v1/instances/%s/kill" % inst["id"], k, 422, {"signal": "HUP"})
        self.call("POST", "/v1/instances/%s/kill" % inst["id"], k, 412, {}, {"If-Match": "5"})
        self.call("POST", "/v1/instances/%s/kill" % inst["id"], k, 202, {"signal": "KILL"})
        self.call("POST", "/v1/instances/%s/kill" % inst["id"], k, 409, {"signal": "KILL"})
        self.call("POST", "/v1/instances/%s/kill" % unique_name("no"), k, 404)
        self.call("DELETE", "/v1/instances/%s" % inst["id"], t, 412, headers={"If-Match": "1"})
        self.call("DELETE", "/v1/instances/%s" % inst["id"], t, 200)
        self.call("DELETE", "/v1/instances/%s" % inst["id"], t, 404)

    def test_placed_instance_answers(self):
        # The 202 answers need an instance on a host (see test_api.PlacedInstanceTests).
        c = harness.cluster()
        host = unique_name("hv")
        hid = c.add_host(host)
        svc = self.call("POST", "/v1/services", "/v1/services", 201,
                        {"name": unique_name("c"), "image": IMAGE, "replicas": 1})
        a = c.add_placed_instance(svc["name"] + "-1", hid, service_id=svc["id"], ordinal=1)
        b = c.add_placed_instance(unique_name("run"), hid)
        c.restart_controller()
        self.call("GET", "/v1/instances?host=%s" % host, "/v1/instances", 200)
        self.call("GET", "/v1/hosts/%s" % host, "/v1/hosts/{name}", 200)
        self.call("POST", "/v1/instances/%s/kill" % a, "/v1/instances/{id}/kill", 202)
        self.call("DELETE", "/v1/instances/%s" % b, "/v1/instances/{id}", 202)
        self.call("POST", "/v1/hosts/%s/drain" % host, "/v1/hosts/{name}/drain", 202)
        self.call("DELETE", "/v1/services/%s" % svc["name"], "/v1/services/{name}", 202)
        self.call("GET", "/v1/services?state=deleting", "/v1/services", 200)

    def test_hosts(self):
        self.call("GET", "/v1/hosts", "/v1/hosts", 200)
        self.call("GET", "/v1/hosts?state=cordoned", "/v1/hosts", 200)
        self.call("GET", "/v1/hosts?state=x", "/v1/hosts", 400)
        self.call("GET", "/v1/hosts/%s" % HOST, "/v1/hosts/{name}", 200)
        self.call("GET", "/v1/hosts/%s" % unique_name("no"), "/v1/hosts/{name}", 404)
        for action, status in (("cordon", 200), ("uncordon", 200), ("drain", 202)):
            t = "/v1/hosts/{name}/" + action
            self.call("POST", "/v1/hosts/%s/%s" % (HOST, action), t, 412, headers={"If-Match": "999"})
            self.call("POST", "/v1/hosts/%s/%s" % (HOST, action), t, status)
            self.call("POST", "/v1/hosts/%s/%s" % (unique_name("no"), action), t, 404)

    def test_events(self):
        request("POST", "/v1/services", {"name": unique_name("ev"), "image": IMAGE, "replicas": 0})
        self.call("GET", "/v1/events", "/v1/events", 200)
        self.call("GET", "/v1/events?since=0&limit=5&type=service.created&object=service", "/v1/events", 200)
        self.call("GET", "/v1/events?since=x", "/v1/events", 400)
        s = harness.cluster().sse("/v1/events?watch=true&since=0")
        try:
            self.assertEqual(s.status, 200)
            self.assertEqual(contract.check(SPEC, "GET", "/v1/events", (200, s.headers, None)), [])
            ev = s.next_event(5)
            self.assertIsNotNone(ev)
            schema = SPEC["paths"]["/v1/events"]["get"]["responses"]["200"]["content"][
                "application/json"]["schema"]["properties"]["items"]["items"]
            self.assertEqual(contract.validate(schema, ev["json"]), [])
        finally:
            s.close()

    def test_images(self):
        self.call("GET", "/v1/images", "/v1/images", 200)
        self.call("GET", "/v1/images?limit=0", "/v1/images", 400)
        for ref in ("hello", IMAGE, IMAGE_ID):
            self.call("GET", "/v1/images/%s" % ref, "/v1/images/{ref}", 200)
        self.call("GET", "/v1/images/%s" % unique_name("no"), "/v1/images/{ref}", 404)


if __name__ == "__main__":
    unittest.main()
