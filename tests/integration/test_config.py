"""Configuration as an API, links and endpoints (docs/config.md).

The API part runs on a controller without agents: versions, If-Match, merge
patch, history, rollback, validation, roles, the effective config of an
instance with its links. The delivery part runs the reconciler and a
protocol-level agent (FakeAgent below: the real gateway, real TLS client
certificate, real frames) that registers a host, runs what the controller
places on it, reports addresses and readiness the way cloud-agent does in
InstanceStatus, and records every DesiredState it is sent. That is how
endpoints get addresses on a machine without guests (libvirt's test driver
reports none), and how the test sees exactly what the controller pushes:
the effective config version and config per instance, at once after a
change, again after a reconnect, and for an instance placed later.
"""

import json
import socket
import struct
import sys
import threading
import time
import unittest

import agentlib
import harness
from harness import poll, request, unique_name

IMAGE = "hello:latest"


def setUpModule():
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")


def tearDownModule():
    harness.stop()


def service(tc, name=None, replicas=0, **extra):
    body = {"name": name or unique_name("svc"), "image": IMAGE, "replicas": replicas,
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}}
    body.update(extra)
    st, _, s = request("POST", "/v1/services", body)
    tc.assertEqual(st, 201, s)
    return s


def cfg_path(name, rest=""):
    return "/v1/services/%s/config%s" % (name, rest)


class ConfigApiTest(harness.TestCase):
    def test_01_new_service_has_version_0_and_put_makes_version_1(self):
        s = service(self)
        st, h, doc = request("GET", cfg_path(s["name"]))
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc, {"service": s["name"], "version": 0, "config": {},
                               "updated_at": None})
        self.assertEqual(h.get("ETag"), '"0"')
        st, h, doc = request("PUT", cfg_path(s["name"]), {"config": {"A": "1", "B": "two"}})
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["version"], 1)
        self.assertEqual(doc["config"], {"A": "1", "B": "two"})
        self.assertEqual(h.get("ETag"), '"1"')
        self.assertTrue(doc["updated_at"])
        st, h, doc = request("GET", cfg_path(s["name"]))
        self.assertEqual((doc["version"], doc["config"]), (1, {"A": "1", "B": "two"}))
        # The same config again makes no version.
        st, h, doc = request("PUT", cfg_path(s["name"]), {"config": {"B": "two", "A": "1"}})
        self.assertEqual((st, doc["version"]), (200, 1))
        # An audit event per change, naming the changed keys, not values.
        st, _, ev = request("GET", "/v1/events?object=config&type=config.updated")
        mine = [e for e in ev["items"] if e["name"] == s["name"]]
        self.assertEqual(len(mine), 1, ev)
        self.assertIn("A, B", mine[0]["message"])
        self.assertNotIn("two", mine[0]["message"])
        self.assertEqual(mine[0]["actor"], "itest-admin")

    def test_02_merge_patch_sets_and_removes(self):
        s = service(self)
        request("PUT", cfg_path(s["name"]), {"config": {"A": "1", "B": "2", "C": "3"}})
        st, h, doc = request("PATCH", cfg_path(s["name"]),
                             {"config": {"B": "20", "C": None, "D": "4"}})
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["version"], 2)
        self.assertEqual(doc["config"], {"A": "1", "B": "20", "D": "4"})
        # Removing a key that is not there changes nothing.
        st, h, doc = request("PATCH", cfg_path(s["name"]), {"config": {"ZZ": None}})
        self.assertEqual((st, doc["version"]), (200, 2))

    def test_03_if_match(self):
        s = service(self)
        # "0": only if never configured.
        st, h, doc = request("PUT", cfg_path(s["name"]), {"config": {"A": "1"}},
                             headers={"If-Match": '"0"'})
        self.assertEqual((st, doc.get("version")), (200, 1), doc)
        st, h, doc = request("PUT", cfg_path(s["name"]), {"config": {"A": "2"}},
                             headers={"If-Match": '"0"'})
        self.assertError((st, h, doc), 412, "precondition_failed")
        st, h, doc = request("PATCH", cfg_path(s["name"]), {"config": {"A": "2"}},
                             headers={"If-Match": "1"})
        self.assertEqual((st, doc.get("version")), (200, 2), doc)
        st, h, doc = request("PATCH", cfg_path(s["name"]), {"config": {"A": "3"}},
                             headers={"If-Match": '"1"'})
        self.assertEqual(st, 412, doc)
        st, h, doc = request("GET", cfg_path(s["name"]))
        self.assertEqual(doc["config"], {"A": "2"})
        st, h, doc = request("PUT", cfg_path(s["name"]), {"config": {}},
                             headers={"If-Match": "abc"})
        self.assertEqual(st, 400, doc)

    def test_04_history_newest_first_with_cursor_and_old_versions(self):
        s = service(self)
        for i in range(1, 6):
            st, h, doc = request("PUT", cfg_path(s["name"]), {"config": {"N": str(i)}})
            self.assertEqual(doc["version"], i)
        st, _, page = request("GET", cfg_path(s["name"], "/history?limit=2"))
        self.assertEqual(st, 200, page)
        self.assertEqual([x["version"] for x in page["items"]], [5, 4])
        self.assertEqual(page["items"][0]["config"], {"N": "5"})
        self.assertTrue(page["items"][0]["created_at"])
        seen = [x["version"] for x in page["items"]]
        while page["next"] is not None:
            st, _, page = request("GET", cfg_path(s["name"], "/history?limit=2&after=%s"
                                                  % page["next"]))
            self.assertEqual(st, 200, page)
            seen += [x["version"] for x in page["items"]]
        self.assertEqual(seen, [5, 4, 3, 2, 1])
        st, h, doc = request("GET", cfg_path(s["name"], "?version=2"))
        self.assertEqual((st, doc["version"], doc["config"]), (200, 2, {"N": "2"}))
        st, h, doc = request("GET", cfg_path(s["name"], "?version=9"))
        self.assertError((st, h, doc), 404, "not_found")
        st, h, doc = request("GET", cfg_path(s["name"], "?version=x"))
        self.assertEqual(st, 400, doc)

    def test_05_rollback_makes_a_new_version(self):
        s = service(self)
        request("PUT", cfg_path(s["name"]), {"config": {"A": "1"}})
        request("PUT", cfg_path(s["name"]), {"config": {"A": "2", "B": "x"}})
        st, h, doc = request("POST", cfg_path(s["name"], "/rollback"), {"version": 1})
        self.assertEqual(st, 200, doc)
        self.assertEqual((doc["version"], doc["config"]), (3, {"A": "1"}))
        st, _, ev = request("GET", "/v1/events?object=config&type=config.rolled_back")
        self.assertTrue(any(e["name"] == s["name"] for e in ev["items"]), ev)
        st, h, doc = request("POST", cfg_path(s["name"], "/rollback"), {"version": 0})
        self.assertEqual((st, doc["version"], doc["config"]), (200, 4, {}))
        st, h, doc = request("POST", cfg_path(s["name"], "/rollback"), {"version": 77})
        self.assertError((st, h, doc), 404, "not_found")
        st, h, doc = request("POST", cfg_path(s["name"], "/rollback"), {"version": "1"})
        self.assertError((st, h, doc), 422, "invalid", "version")
        st, h, doc = request("POST", cfg_path(s["name"], "/rollback"), {"v": 1})
        self.assertError((st, h, doc), 422, "invalid", "v")
        st, h, doc = request("GET", cfg_path(s["name"]))
        self.assertEqual(doc["version"], 4)

    def test_06_validation_names_the_key(self):
        s = service(self)
        bad = [
            ({"config": {"1BAD": "x"}}, "config.1BAD"),
            ({"config": {"A B": "x"}}, "config.A B"),
            ({"config": {"K" * 129: "x"}}, "config." + "K" * 128),
            ({"config": {"A": 1}}, "config.A"),
            ({"config": {"A": None}}, "config.A"),  # null only in a patch
            ({"config": {"A": "x" * (64 * 1024 + 1)}}, "config.A"),
            ({"config": {"K%d" % i: "v" for i in range(1001)}}, "config"),
            ({"config": ["A"]}, "config"),
            ({"cfg": {}}, "cfg"),
        ]
        for body, field in bad:
            st, h, doc = request("PUT", cfg_path(s["name"]), body)
            self.assertError((st, h, doc), 422, "invalid", field)
        # Keys may carry dots and dashes; values may be empty.
        st, h, doc = request("PUT", cfg_path(s["name"]),
                             {"config": {"a.b-c_D": "", "_X": "y"}})
        self.assertEqual((st, doc["version"]), (200, 1), doc)
        # 1 MiB in total, counted on the merged result of a patch.
        big = "v" * (60 * 1024)
        st, h, doc = request("PUT", cfg_path(s["name"]),
                             {"config": {"K%02d" % i: big for i in range(15)}})
        self.assertEqual(st, 200, doc)
        st, h, doc = request("PATCH", cfg_path(s["name"]),
                             {"config": {"L%02d" % i: big for i in range(5)}})
        self.assertError((st, h, doc), 422, "invalid", "config")
        st, h, doc = request("GET", cfg_path(s["name"]))
        self.assertEqual(doc["version"], 2)
        st, h, doc = request("PUT", cfg_path(s["name"]), "{not json",
                             headers={"Content-Type": "application/json"})
        self.assertEqual(st, 400, doc)

    def test_07_unknown_service_is_404(self):
        for m, p, b in [("GET", "", None), ("PUT", "", {"config": {}}),
                        ("PATCH", "", {"config": {}}), ("GET", "/history", None),
                        ("POST", "/rollback", {"version": 0})]:
            st, h, doc = request(m, cfg_path("no-such-svc", p), b)
            self.assertError((st, h, doc), 404, "not_found")
        st, h, doc = request("GET", "/v1/services/no-such-svc/endpoints")
        self.assertError((st, h, doc), 404, "not_found")
        st, h, doc = request("GET", "/v1/instances/ffffffffffffffff/config")
        self.assertError((st, h, doc), 404, "not_found")

    def test_08_roles(self):
        c = harness.cluster()
        s = service(self)
        viewer = c.create_token(unique_name("v"), "viewer")
        oper = c.create_token(unique_name("o"), "operator")

        def as_(tok, m, p, b=None):
            return request(m, p, b, headers={"Authorization": "Bearer " + tok})
        poll(lambda: as_(viewer, "GET", cfg_path(s["name"]))[0] == 200, 10,
             what="viewer token loaded")
        st, h, doc = as_(viewer, "PUT", cfg_path(s["name"]), {"config": {"A": "1"}})
        self.assertError((st, h, doc), 403, "forbidden")
        st, h, doc = as_(viewer, "POST", cfg_path(s["name"], "/rollback"), {"version": 0})
        self.assertEqual(st, 403, doc)
        poll(lambda: as_(oper, "GET", cfg_path(s["name"]))[0] == 200, 10,
             what="operator token loaded")
        st, h, doc = as_(oper, "PUT", cfg_path(s["name"]), {"config": {"A": "1"}})
        self.assertEqual((st, doc["version"]), (200, 1), doc)
        st, h, doc = as_(viewer, "GET", cfg_path(s["name"], "/history"))
        self.assertEqual(st, 200, doc)
        st, h, doc = request("GET", cfg_path(s["name"]), auth=False)
        self.assertEqual(st, 401, doc)

    def test_09_ready_when_is_validated_and_shown(self):
        s = service(self)
        self.assertEqual(s["ready_when"], "running")
        s2 = service(self, ready_when="guest")
        self.assertEqual(s2["ready_when"], "guest")
        st, h, doc = request("PATCH", "/v1/services/" + s["name"], {"ready_when": "guest"})
        self.assertEqual((st, doc.get("ready_when")), (200, "guest"), doc)
        self.assertEqual(doc["version"], s["version"] + 1)
        st, h, doc = request("GET", "/v1/services/" + s["name"])
        self.assertEqual(doc["ready_when"], "guest")
        st, h, doc = request("PATCH", "/v1/services/" + s["name"], {"ready_when": "always"})
        self.assertError((st, h, doc), 422, "invalid", "ready_when")

    def test_10_links_to_missing_services_are_empty_endpoints(self):
        db = unique_name("db")
        web = service(self, links=[db, "cache-x"])
        st, h, doc = request("GET", "/v1/services/%s/endpoints" % web["name"])
        self.assertEqual(doc, {"service": web["name"], "version": 0, "endpoints": []})
        # A service born with links has an effective config version at once.
        request("PUT", cfg_path(web["name"]), {"config": {"MODE": "a"}})
        st, _, ev = request("GET", "/v1/events?object=config")
        self.assertEqual(st, 200)

    def test_12_concurrent_edits(self):
        """If-Match on the same version: exactly one writer wins. Merge
        patches without it: each lands, versions are distinct and dense."""
        s = service(self)
        request("PUT", cfg_path(s["name"]), {"config": {"BASE": "0"}})
        results = []

        def writer(i, hdrs):
            results.append(request("PATCH", cfg_path(s["name"]), {"config": {"W%d" % i: "x"}},
                                   headers=hdrs))
        ts = [threading.Thread(target=writer, args=(i, {"If-Match": '"1"'})) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        codes = sorted(r[0] for r in results)
        self.assertEqual(codes, [200] + [412] * 7, [r[2] for r in results])
        results.clear()
        ts = [threading.Thread(target=writer, args=(10 + i, None)) for i in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual([r[0] for r in results], [200] * 8)
        self.assertEqual(sorted(r[2]["version"] for r in results), list(range(3, 11)))
        st, _, doc = request("GET", cfg_path(s["name"]))
        self.assertEqual(doc["version"], 10)
        self.assertEqual(len(doc["config"]), 1 + 1 + 8)

    def test_13_the_newest_100_versions_are_kept(self):
        s = service(self)
        for i in range(1, 103):
            st, _, doc = request("PUT", cfg_path(s["name"]), {"config": {"N": str(i)}})
            self.assertEqual(st, 200, doc)
        st, _, doc = request("GET", cfg_path(s["name"], "?version=2"))
        self.assertEqual(st, 404, doc)
        st, _, doc = request("GET", cfg_path(s["name"], "?version=3"))
        self.assertEqual((st, doc["config"]), (200, {"N": "3"}))
        st, _, doc = request("POST", cfg_path(s["name"], "/rollback"), {"version": 1})
        self.assertEqual(st, 404, doc)
        versions, after = [], None
        while True:
            st, _, page = request("GET", cfg_path(s["name"], "/history?limit=100"
                                                  + ("&after=%s" % after if after else "")))
            versions += [x["version"] for x in page["items"]]
            after = page["next"]
            if after is None:
                break
        self.assertEqual(versions, list(range(102, 2, -1)))

    def test_11_answers_match_the_openapi_contract(self):
        import contract
        spec = contract.load_spec()
        if spec is None:
            self.skipTest("redocly missing (%s); run scripts/setup.sh" % contract.REDOCLY)
        db = unique_name("db")
        s = service(self, links=[db])
        n = s["name"]

        def call(method, path, template, status, body=None, headers=None):
            resp = request(method, path, body, headers)
            self.assertEqual(resp[0], status, "%s %s: %r" % (method, path, resp[2]))
            self.assertEqual(contract.check(spec, method, template, resp), [],
                             "%s %s %d does not match the spec" % (method, template, status))
            return resp[2]
        t = "/v1/services/{name}/config"
        call("GET", cfg_path(n), t, 200)
        call("PUT", cfg_path(n), t, 200, {"config": {"A": "1"}})
        call("PATCH", cfg_path(n), t, 200, {"config": {"A": None, "B": "2"}})
        call("PUT", cfg_path(n), t, 412, {"config": {}}, {"If-Match": '"7"'})
        call("PUT", cfg_path(n), t, 422, {"config": {"-": "x"}})
        call("PUT", cfg_path(n), t, 400, b"{", {"Content-Type": "application/json"})
        call("GET", cfg_path(n, "?version=1"), t, 200)
        call("GET", cfg_path(n, "?version=0"), t, 200)
        call("GET", cfg_path(n, "?version=99"), t, 404)
        call("GET", cfg_path(unique_name("no")), t, 404)
        call("GET", cfg_path(n, "/history?limit=1"), t + "/history", 200)
        call("GET", cfg_path(n, "/history?limit=0"), t + "/history", 400)
        call("POST", cfg_path(n, "/rollback"), t + "/rollback", 200, {"version": 1})
        call("POST", cfg_path(n, "/rollback"), t + "/rollback", 404, {"version": 99})
        call("POST", cfg_path(n, "/rollback"), t + "/rollback", 422, {"version": -1})
        call("GET", "/v1/services/%s/endpoints" % n, "/v1/services/{name}/endpoints", 200)
        call("GET", "/v1/services/%s/endpoints?watch=maybe" % n,
             "/v1/services/{name}/endpoints", 400)
        st, _, inst = request("POST", "/v1/instances", {
            "image": IMAGE, "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        self.assertEqual(st, 201, inst)
        doc = call("GET", "/v1/instances/%s/config" % inst["id"], "/v1/instances/{id}/config", 200)
        self.assertEqual((doc["version"], doc["config"], doc["service"]), (0, {}, None))
        call("GET", "/v1/instances/ffffffffffffffff/config", "/v1/instances/{id}/config", 404)
        call("GET", "/v1/services/" + n, "/v1/services/{name}", 200)


# ---- a protocol-level agent ---------------------------------------------

def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    key = _varint((num << 3) | wire)
    if wire == 0:
        return key + _varint(payload)
    return key + _varint(len(payload)) + payload


def _msg(*fields):
    """fields: (num, value) with int -> varint, str/bytes -> length-delimited."""
    out = b""
    for num, v in fields:
        if v is None:
            continue
        if isinstance(v, bool):
            out += _field(num, 0, int(v))
        elif isinstance(v, int):
            out += _field(num, 0, v)
        else:
            out += _field(num, 2, v.encode() if isinstance(v, str) else v)
    return out


def _parse(buf):
    """{field number: [values]}: varints as int, length-delimited as bytes."""
    out, i = {}, 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
        elif wire == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        out.setdefault(num, []).append(v)
    return out


def _read_varint(buf, i):
    n = shift = 0
    while True:
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


ENV_HELLO, ENV_WELCOME, ENV_HEARTBEAT, ENV_DESIRED, ENV_STATUS = 1, 2, 3, 4, 5
ENV_CONFIG_UPDATE, ENV_ERROR = 8, 9
RUNNING, REMOVED = 4, 9


class FakeAgent:
    """Speaks the agent protocol for host `name`: Hello, heartbeats, and an
    InstanceStatus per instance it is given (running, with the addresses
    and readiness the test sets). Records each DesiredState."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name
        self.cert = agentlib.issue_cert(cluster, name)
        self.lock = threading.Lock()
        self.sets = []          # (time, {id: spec dict}) per DesiredState
        self.updates = []       # ConfigUpdate frames: (time, id, version, config)
        self.addresses = {}     # instance id -> [str]
        self.ready = {}         # instance id -> bool
        self.sock = None
        self.stop_ev = threading.Event()
        self.reporter = None

    def start(self):
        self.stop_ev.clear()
        self.sock = agentlib.tls_client(self.cluster, cert_dir=self.cert, timeout=30)
        hello = _msg((1, self.name), (2, "fake-agent-test"),
                     (3, _msg((1, 256), (2, 65536), (3, 1000))),
                     (4, _msg((1, "x86_64"), (2, "test"), (4, "test"))), (7, 1))
        self._send(ENV_HELLO, hello)
        env = self._recv()
        welcome = _parse(env[ENV_WELCOME][0])
        self.epoch = welcome[2][0]
        self.hb_ms = welcome.get(3, [1000])[0]
        self.seq = 0
        self.reporter = threading.Thread(target=self._loop, daemon=True)
        self.reporter.start()
        return self

    def stop(self):
        self.stop_ev.set()
        if self.reporter:
            self.reporter.join(10)
            self.reporter = None
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _send(self, kind, payload):
        env = _field(kind, 2, payload)
        self.sock.sendall(struct.pack(">I", len(env)) + env)

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("the gateway closed the connection")
            buf += chunk
        return buf

    def _recv(self):
        (n,) = struct.unpack(">I", self._recv_exact(4))
        return _parse(self._recv_exact(n))

    def _on_desired(self, raw, arrived):
        d = _parse(raw)
        specs = {}
        for s in d.get(3, []):
            f = _parse(s)
            cfg = {}
            for e in f.get(11, []):
                kv = _parse(e)
                cfg[kv.get(1, [b""])[0].decode()] = kv.get(2, [b""])[0].decode()
            specs[f[1][0].decode()] = {
                "generation": f.get(3, [0])[0], "desired": f.get(4, [0])[0],
                "restart_count": f.get(13, [0])[0],
                "config_version": f.get(10, [0])[0], "config": cfg}
        with self.lock:
            self.sets.append((arrived, specs))
        self.revision = d.get(2, [0])[0]

    def _status(self, iid, spec):
        state = RUNNING if spec["desired"] == 1 else REMOVED
        if spec["desired"] == 2:
            state = 6  # stopped: exited
        with self.lock:
            addrs = list(self.addresses.get(iid, []))
            ready = self.ready.get(iid, False)
        fields = [(1, self.epoch), (2, iid), (3, spec["generation"]), (4, state),
                  (8, int(time.time() * 1000)), (10, int(time.time() * 1000))]
        fields += [(7, a) for a in addrs]
        fields += [(12, ready and state == RUNNING)]
        self._send(ENV_STATUS, _msg(*fields))

    def _loop(self):
        self.sock.settimeout(0.2)
        last_hb = 0.0
        self.revision = 0
        while not self.stop_ev.is_set():
            try:
                env = self._recv()
                arrived = time.monotonic()
            except socket.timeout:
                env = None
            except (OSError, ConnectionError, ValueError):
                return
            if env and ENV_DESIRED in env:
                self._on_desired(env[ENV_DESIRED][0], arrived)
            if env and ENV_CONFIG_UPDATE in env:
                f = _parse(env[ENV_CONFIG_UPDATE][0])
                with self.lock:
                    self.updates.append((time.monotonic(), f[1][0].decode(),
                                         f.get(2, [0])[0], len(f.get(3, []))))
            now = time.monotonic()
            if now - last_hb >= self.hb_ms / 1000.0 or env:
                self.seq += 1
                try:
                    self._send(ENV_HEARTBEAT, _msg((1, self.epoch), (2, self.seq),
                                                   (4, self.revision)))
                    for iid, spec in self.latest().items():
                        self._status(iid, spec)
                except OSError:
                    return
                last_hb = now

    def latest(self):
        with self.lock:
            return dict(self.sets[-1][1]) if self.sets else {}

    def set_guest(self, iid, addresses=None, ready=None):
        with self.lock:
            if addresses is not None:
                self.addresses[iid] = list(addresses)
            if ready is not None:
                self.ready[iid] = ready

    def spec_of(self, iid):
        return self.latest().get(iid)


def instances_of(svc):
    st, _, page = request("GET", "/v1/instances?service=%s&limit=1000" % svc)
    return [i for i in page["items"] if i["desired_state"] == "running"]


class LinksAndDeliveryTest(harness.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.agent = FakeAgent(harness.cluster(), unique_name("fa")).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def sse_wait(self, watch, pred, timeout):
        ev, seen = watch.wait_for(lambda e: e.get("event") == "endpoints" and pred(e), timeout)
        self.assertIsNotNone(ev, "no matching endpoints event; saw %r" % seen)
        return ev

    def wait_running(self, svc, n):
        def ok():
            got = [i for i in instances_of(svc) if i["state"] == "running"]
            return got if len(got) == n else None
        return poll(ok, 30, what="%d running instances of %s" % (n, svc))

    def test_01_endpoints_effective_config_and_delivery(self):
        a = self.agent
        db = unique_name("db")
        web = service(self, links=[db], replicas=1)
        wi = self.wait_running(web["name"], 1)[0]
        # Linked service missing: empty variables, version 0.
        st, _, ic = request("GET", "/v1/instances/%s/config" % wi["id"])
        self.assertEqual(st, 200, ic)
        lk = db.upper().replace("-", "_")
        self.assertEqual(ic["config"], {lk + "_ENDPOINTS": "", lk + "_ENDPOINTS_VERSION": "0"})
        v0 = ic["version"]
        self.assertGreaterEqual(v0, 1)
        poll(lambda: (a.spec_of(wi["id"]) or {}).get("config_version") == v0, 10,
             what="the agent to get the effective config version %d" % v0)
        # A config change is pushed at once.
        t0 = time.monotonic()
        st, h, doc = request("PUT", cfg_path(web["name"]), {"config": {"GREETING": "hi"}})
        self.assertEqual(st, 200, doc)
        spec = poll(lambda: (a.spec_of(wi["id"]) or {}).get("config_version", 0) > v0
                    and a.spec_of(wi["id"]), 5, what="the pushed config")
        with a.lock:
            t1 = min(t for t, specs in a.sets
                     if specs.get(wi["id"], {}).get("config_version", 0) > v0)
        sys.stderr.write("\nconfig PUT sent -> DesiredState read by the agent: %.1f ms\n"
                         % ((t1 - t0) * 1000))
        self.assertEqual(spec["config"]["GREETING"], "hi")
        self.assertEqual(spec["config"][lk + "_ENDPOINTS"], "")
        v1 = spec["config_version"]
        # The linked service appears with ports; its instances become
        # endpoints once running with an address.
        dbs = service(self, name=db, replicas=2,
                      ports=[{"name": "pg", "port": 5432}])
        dis = self.wait_running(db, 2)
        st, _, ep = request("GET", "/v1/services/%s/endpoints" % db)
        self.assertEqual((st, ep["endpoints"]), (200, []), ep)
        watch = harness.cluster().sse("/v1/services/%s/endpoints?watch=true" % db)
        first = watch.next_event(5)
        self.assertEqual(first["event"], "endpoints")
        self.assertEqual(json.loads(first["data"])["endpoints"], [])
        a.set_guest(dis[0]["id"], addresses=["10.0.0.5"])
        a.set_guest(dis[1]["id"], addresses=["10.0.0.6:6000"])
        ev = self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 2, 10)
        eps = json.loads(ev["data"])
        self.assertEqual(ev["id"], str(eps["version"]))
        self.assertEqual([e["addr"] for e in eps["endpoints"]],
                         ["10.0.0.5:5432", "10.0.0.6:6000"])
        e0 = eps["endpoints"][0]
        self.assertEqual((e0["instance"], e0["name"], e0["address"], e0["port"]),
                         (dis[0]["id"], dis[0]["name"], "10.0.0.5", 5432))
        # The web instance gets DB_ENDPOINTS, pushed.
        spec = poll(lambda: (a.spec_of(wi["id"]) or {}).get("config", {}).get(
            lk + "_ENDPOINTS") == "10.0.0.5:5432,10.0.0.6:6000" and a.spec_of(wi["id"]),
            10, what="DB_ENDPOINTS pushed to web")
        self.assertGreater(spec["config_version"], v1)
        self.assertEqual(spec["config"][lk + "_ENDPOINTS_VERSION"], str(eps["version"]))
        self.assertEqual(spec["config"]["GREETING"], "hi")
        st, _, ic = request("GET", "/v1/instances/%s/config" % wi["id"])
        self.assertEqual(ic["version"], spec["config_version"])
        self.assertEqual(ic["config"], spec["config"])
        # ready_when guest: only ready instances count.
        v_before = spec["config_version"]
        st, _, _ = request("PATCH", "/v1/services/" + db, {"ready_when": "guest"})
        self.assertEqual(st, 200)
        ev = self.sse_wait(watch, lambda e: json.loads(e["data"])["endpoints"] == [], 10)
        a.set_guest(dis[1]["id"], ready=True)
        ev = self.sse_wait(watch, lambda e: [x["addr"] for x in json.loads(e["data"])["endpoints"]]
                            == ["10.0.0.6:6000"], 10)
        spec = poll(lambda: (a.spec_of(wi["id"]) or {}).get("config", {}).get(
            lk + "_ENDPOINTS") == "10.0.0.6:6000" and a.spec_of(wi["id"]), 10,
            what="the ready endpoint only")
        self.assertGreater(spec["config_version"], v_before)
        request("PATCH", "/v1/services/" + db, {"ready_when": "running"})
        self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 2, 10)
        # Scale up and down: the watch follows.
        request("PATCH", "/v1/services/" + db, {"replicas": 3})
        dis3 = self.wait_running(db, 3)
        new = [i for i in dis3 if i["id"] not in (dis[0]["id"], dis[1]["id"])][0]
        a.set_guest(new["id"], addresses=["10.0.0.7"])
        ev = self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 3, 15)
        request("PATCH", "/v1/services/" + db, {"replicas": 1})
        ev = self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 1, 20)
        last = json.loads(ev["data"])
        watch.close()
        spec = poll(lambda: (a.spec_of(wi["id"]) or {}).get("config", {}).get(
            lk + "_ENDPOINTS") == last["endpoints"][0]["addr"] and a.spec_of(wi["id"]), 10,
            what="web to follow the scale-down")
        self.assertEqual(spec["config"][lk + "_ENDPOINTS_VERSION"], str(last["version"]))
        self.assertIsNotNone(dbs)

    def test_02_reconnect_and_late_instances_get_the_current_version(self):
        a = self.agent
        svc = service(self, replicas=1)
        request("PUT", cfg_path(svc["name"]), {"config": {"K": "1"}})
        request("PATCH", cfg_path(svc["name"]), {"config": {"K": "2"}})
        i1 = self.wait_running(svc["name"], 1)[0]
        st, _, ic = request("GET", "/v1/instances/%s/config" % i1["id"])
        want = ic["version"]
        poll(lambda: (a.spec_of(i1["id"]) or {}).get("config_version") == want, 10,
             what="config delivered")
        # Reconnect: the first set of the new session carries the version.
        a.stop()
        n_before = len(a.sets)
        a.start()
        poll(lambda: len(a.sets) > n_before, 10, what="a set after the reconnect")
        with a.lock:
            first = a.sets[n_before][1]
        self.assertEqual(first[i1["id"]]["config_version"], want)
        self.assertEqual(first[i1["id"]]["config"], {"K": "2"})
        # An instance started later gets the current version too.
        request("PATCH", "/v1/services/" + svc["name"], {"replicas": 2})
        both = self.wait_running(svc["name"], 2)
        i2 = [i for i in both if i["id"] != i1["id"]][0]
        spec = poll(lambda: a.spec_of(i2["id"]), 10, what="the late instance")
        self.assertEqual((spec["config_version"], spec["config"]), (want, {"K": "2"}))
        # Versions seen by the agent never went back.
        with a.lock:
            seen = [s[1][i1["id"]]["config_version"] for s in a.sets if i1["id"] in s[1]]
        self.assertEqual(seen, sorted(seen))

    def test_03_big_configs_go_as_config_updates(self):
        """Three instances of a ~900 KiB config do not fit one frame inline:
        the set goes without configs, then one ConfigUpdate per instance."""
        a = self.agent
        svc = service(self, replicas=3)
        ids = [i["id"] for i in self.wait_running(svc["name"], 3)]
        big = {"K%02d" % i: "v" * (60 * 1024) for i in range(15)}
        st, _, doc = request("PUT", cfg_path(svc["name"]), {"config": big})
        self.assertEqual(st, 200, doc)
        st, _, ic = request("GET", "/v1/instances/%s/config" % ids[0])
        want = ic["version"]

        def got():
            with a.lock:
                return {u[1] for u in a.updates if u[2] == want} >= set(ids)
        poll(got, 10, what="a ConfigUpdate of version %d for each instance" % want)
        with a.lock:
            last = a.sets[-1][1]
        for i in ids:
            self.assertEqual(last[i]["config_version"], 0, "inline config in a big set")
        # Back to small: inline again.
        st, _, doc = request("PUT", cfg_path(svc["name"]), {"config": {"K": "v"}})
        poll(lambda: all((a.spec_of(i) or {}).get("config") == {"K": "v"} for i in ids), 10,
             what="the small config inline")

    def test_04_a_write_on_another_replica_is_pushed_by_the_agents_replica(self):
        """The agent is connected to the first controller; the config is
        written through a second one (no gateway): the commit's NOTIFY makes
        the first push at once."""
        import http.client
        a = self.agent
        c = harness.cluster()
        other = c.spawn_controller(unique_name("r2"), reconcile=False)
        svc = service(self, replicas=2)
        ids = [i["id"] for i in self.wait_running(svc["name"], 2)]
        poll(lambda: all(a.spec_of(i) for i in ids), 10, what="both instances in the set")
        body = json.dumps({"config": {"FROM": "replica-2"}}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", other.http_port, timeout=10)
        t0 = time.monotonic()
        conn.request("PUT", cfg_path(svc["name"]), body,
                     {"Authorization": "Bearer " + c.token,
                      "Content-Type": "application/json"})
        resp = conn.getresponse()
        doc = json.loads(resp.read())
        conn.close()
        self.assertEqual(resp.status, 200, doc)
        poll(lambda: all((a.spec_of(i) or {}).get("config") == {"FROM": "replica-2"}
                         for i in ids), 5, what="the push from the agent's replica")
        with a.lock:
            t1 = min(t for t, specs in a.sets
                     if all(specs.get(i, {}).get("config") == {"FROM": "replica-2"}
                            for i in ids))
        sys.stderr.write("\nconfig PUT on replica 2 -> DesiredState from replica 1: %.1f ms\n"
                         % ((t1 - t0) * 1000))
        other.stop()

    def test_05_endpoint_watch_of_a_deleted_service_ends(self):
        svc = service(self, replicas=0)
        watch = harness.cluster().sse("/v1/services/%s/endpoints?watch=true" % svc["name"])
        self.assertEqual(watch.status, 200)
        first = watch.next_event(5)
        self.assertEqual((first["event"], first["id"]), ("endpoints", "0"))
        st, _, _ = request("DELETE", "/v1/services/" + svc["name"])
        self.assertEqual(st, 200)
        # A later change of another service's endpoints wakes the watchers;
        # without one, a watcher of a deleted service notices on its next
        # read. Either way it must not linger forever: make a change.
        db = service(self, replicas=1, ports=[{"port": 80}])
        i = self.wait_running(db["name"], 1)[0]
        self.agent.set_guest(i["id"], addresses=["10.9.9.9"])
        ev = watch.next_event(10)
        while ev is not None and ev.get("event") == "endpoints":
            ev = watch.next_event(10)
        self.assertIsNone(ev, "the watch of a deleted service did not end")
        watch.close()
        st, _, doc = request("GET", "/v1/services/%s/endpoints?watch=true" % svc["name"])
        self.assertEqual(st, 404, doc)

    def test_06_one_change_reaches_100_instances_in_one_set(self):
        a = self.agent
        svc = service(self, replicas=100)
        ids = [i["id"] for i in self.wait_running(svc["name"], 100)]
        poll(lambda: all(a.spec_of(i) for i in ids), 20, what="100 instances in the set")
        times = []
        for n in range(5):
            want = {"ROUND": str(n)}
            t0 = time.monotonic()
            st, _, doc = request("PUT", cfg_path(svc["name"]), {"config": want})
            self.assertEqual(st, 200, doc)
            poll(lambda: all((a.spec_of(i) or {}).get("config") == want for i in ids), 5,
                 what="round %d at all 100 instances" % n)
            with a.lock:
                t1 = min(t for t, specs in a.sets
                         if all(specs.get(i, {}).get("config") == want for i in ids))
            times.append((t1 - t0) * 1000)
        sys.stderr.write("\nconfig PUT -> all 100 instances' new version at the agent: "
                         "%s ms\n" % ", ".join("%.1f" % t for t in times))
        request("PATCH", "/v1/services/" + svc["name"], {"replicas": 0})

    def test_07_a_recreated_service_continues_the_effective_version(self):
        name = unique_name("re")
        service(self, name=name, replicas=1, links=[unique_name("x")])
        request("PUT", cfg_path(name), {"config": {"A": "1"}})
        i1 = self.wait_running(name, 1)[0]
        st, _, ic = request("GET", "/v1/instances/%s/config" % i1["id"])
        v1 = ic["version"]
        request("PATCH", "/v1/services/" + name, {"replicas": 0})
        poll(lambda: not instances_of(name), 20, what="%s scaled to 0" % name)
        st, _, doc = request("DELETE", "/v1/services/" + name)
        self.assertIn(st, (200, 202), doc)
        poll(lambda: request("GET", "/v1/services/" + name)[0] == 404, 30,
             what="%s gone" % name)
        service(self, name=name, replicas=1, links=[unique_name("y")])
        st, _, doc = request("GET", cfg_path(name))
        self.assertEqual((doc["version"], doc["config"]), (0, {}))
        i2 = self.wait_running(name, 1)[0]
        st, _, ic = request("GET", "/v1/instances/%s/config" % i2["id"])
        self.assertGreater(ic["version"], v1)
        spec = poll(lambda: self.agent.spec_of(i2["id"]), 10, what="the new instance's spec")
        self.assertEqual(spec["config_version"], ic["version"])


class RealAgentTest(harness.TestCase):
    """cloud-agent itself on libvirt's test driver with --network default:
    the test driver's network gives each domain an address, which the agent
    reports; endpoints and a linking service's effective config follow."""

    @classmethod
    def setUpClass(cls):
        cls.agent = agentlib.Agent(harness.cluster(), unique_name("ra"), cap_vcpus=16,
                                   cap_memory=16384, labels={"pool": "real"},
                                   extra=("--network", "default")).start()

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def test_01_addresses_from_the_agent_make_endpoints_and_link_variables(self):
        db = unique_name("rdb")
        web = service(self, links=[db], replicas=0)
        service(self, name=db, replicas=2, ports=[{"port": 5432}],
                placement={"constraints": ["pool=real"]})

        def two():
            st, _, ep = request("GET", "/v1/services/%s/endpoints" % db)
            return ep if st == 200 and len(ep["endpoints"]) == 2 else None
        ep = poll(two, 60, what="two endpoints of %s (agent log:\n%s)"
                  % (db, self.agent.log_tail()))
        for e in ep["endpoints"]:
            self.assertTrue(e["addr"].endswith(":5432"), e)
            self.assertEqual(e["port"], 5432)
        request("PATCH", "/v1/services/" + web["name"], {"replicas": 1})
        wi = poll(lambda: (instances_of(web["name"]) or [None])[0], 30, what="web instance")
        st, _, ic = request("GET", "/v1/instances/%s/config" % wi["id"])
        lk = db.upper().replace("-", "_")
        self.assertEqual(ic["config"][lk + "_ENDPOINTS"],
                         ",".join(sorted(e["addr"] for e in ep["endpoints"])))
        self.assertEqual(ic["config"][lk + "_ENDPOINTS_VERSION"], str(ep["version"]))


if __name__ == "__main__":
    unittest.main()
