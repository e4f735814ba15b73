"""Configuration as an API, links and endpoints (docs/config.md).

The API part runs on a controller without agents: versions, If-Match, merge
patch, history, rollback, validation, roles, the effective config of an
instance with its links. The delivery part runs the reconciler, a real
cloud-agent on libvirt's test driver with CLOUD_AGENT_TEST_CHANNELS=1 (its
domains get guest channel sockets, as with QEMU) and guestpeer.py as the
guest end of every channel: it records each config line the agent writes
and acks it, and reports the addresses and readiness the test gives it
(the test driver without --network knows no addresses, so the agent
reports the guest's). What the controller delivers is seen where a guest
sees it: the effective config version and config per instance as lines at
the guest end, at once after a change, again after the agent reconnects,
and for an instance placed later; the guest's ack as the instance's
config_version in the API. RealAgentTest: addresses from libvirt's test
network (--network default) instead.
"""

import json
import sys
import threading
import time
import unittest

import agentlib
import guestpeer
import harness
from harness import poll, request, unique_name

IMAGE = "hello:latest"


setUpModule, tearDownModule = harness.module_fixture(reconcile=True)


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

    def test_14_link_variables_are_capped_with_a_marker(self):
        """L_ENDPOINTS holds at most 16384 bytes (0020): past that the
        sorted list is cut after the last whole address that fits and
        L_ENDPOINTS_TRUNCATED gives how many endpoints there are; never a
        silent drop. The endpoints row is written by hand: 1,500 running
        instances are not needed to see the cut."""
        c = harness.cluster()
        db = unique_name("capdb")
        web = service(self, links=[db])
        lk = db.upper().replace("-", "_")
        eps = [{"addr": "10.%d.%d.%d:5432" % (i // 65536, (i // 256) % 256, i % 256)}
               for i in range(1500)]
        c.psql("INSERT INTO service_runtime (name, endpoints, endpoints_version) "
               "VALUES ('%s', '%s'::jsonb, 7)" % (db, json.dumps(eps)))
        cfg = json.loads(c.psql("SELECT config FROM cloud_effective_config('%s')" % web["id"]))
        val = cfg[lk + "_ENDPOINTS"]
        full = sorted(e["addr"] for e in eps)
        kept = val.split(",")
        self.assertLessEqual(len(val), 16384)
        self.assertEqual(kept, full[:len(kept)])
        self.assertGreater(len(val) + 1 + len(full[len(kept)]), 16384)
        self.assertEqual(cfg[lk + "_ENDPOINTS_TRUNCATED"], "1500")
        self.assertEqual(cfg[lk + "_ENDPOINTS_VERSION"], "7")
        # A list that fits is whole and has no marker.
        c.psql("UPDATE service_runtime SET endpoints = '%s'::jsonb WHERE name = '%s'"
               % (json.dumps(eps[:3]), db))
        cfg = json.loads(c.psql("SELECT config FROM cloud_effective_config('%s')" % web["id"]))
        self.assertEqual(cfg[lk + "_ENDPOINTS"], ",".join(full[:0] + sorted(
            e["addr"] for e in eps[:3])))
        self.assertNotIn(lk + "_ENDPOINTS_TRUNCATED", cfg)

    def test_15_endpoints_are_recomputed_once_per_transaction(self):
        """A row that can move an endpoint notes its service; the endpoints
        are recomputed once, at commit (0021, decisions §23), from the rows
        as the transaction leaves them. Three instances turned running in
        one statement and one of them stopping in the next make one
        endpoints.changed with the two left, where a recomputation per row
        made four (and cost a scan of the service per row: quadratic at
        10,000 instances). The rows are written by hand, on a host row with
        no agent: the instances are the reconciler's, held pending by a
        constraint no host meets until then."""
        c = harness.cluster()
        db = unique_name("oncedb")
        s = service(self, name=db, replicas=3, ports=[{"port": 5432}],
                    placement={"constraints": ["pool=%s" % db]})
        poll(lambda: c.psql("SELECT count(*) FROM instances WHERE service_id = '%s' "
                            "AND state = 'pending'" % s["id"]) == "3", 30,
             what="three pending instances of %s" % db)
        mark = c.psql("SELECT coalesce(max(id), 0) FROM events")
        host = unique_name("nohost")
        c.psql("BEGIN;"
               "INSERT INTO hosts (id, name, state, last_seen, session_epoch) "
               "VALUES (cloud_new_id(), '%s', 'ready', now(), 1);"
               "UPDATE instances SET state = 'running', ordinal = ordinal, "
               "       host_id = (SELECT id FROM hosts WHERE name = '%s'), "
               "       addresses = jsonb_build_array('10.9.0.' || (ordinal + 1)), "
               "       version = version + 1 "
               " WHERE service_id = '%s';"
               "UPDATE instances SET state = 'stopping', version = version + 1 "
               " WHERE service_id = '%s' AND ordinal = "
               "       (SELECT min(ordinal) FROM instances WHERE service_id = '%s');"
               "COMMIT;" % (host, host, s["id"], s["id"], s["id"]))
        first = int(c.psql("SELECT min(ordinal) FROM instances WHERE service_id = '%s'"
                           % s["id"]))
        try:
            changed = c.psql("SELECT message FROM events WHERE type = 'endpoints.changed' "
                             "AND name = '%s' AND id > %s ORDER BY id" % (db, mark))
            self.assertEqual(changed.splitlines(),
                             ["service %s endpoints version 1: 2 endpoints" % db])
            st, _, ep = request("GET", "/v1/services/%s/endpoints" % db)
            self.assertEqual(sorted(e["addr"] for e in ep["endpoints"]),
                             ["10.9.0.%d:5432" % (first + k) for k in (2, 3)])
        finally:
            c.psql("DELETE FROM instances WHERE service_id = '%s';"
                   "DELETE FROM hosts WHERE name = '%s'" % (s["id"], host))
            request("DELETE", "/v1/services/" + db)

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

    def test_14_endpoint_watch_gets_keepalives(self):
        # docs/api.md: an endpoint watch, like the event watch, gets a
        # comment line `: keepalive` every 15 s (watch.c's timer serves both).
        s = service(self)
        w = harness.cluster().sse("/v1/services/%s/endpoints?watch=true" % s["name"])
        try:
            self.assertEqual(w.status, 200)
            first = w.next_event(5)
            self.assertEqual((first["event"], first["id"]), ("endpoints", "0"))
            deadline = time.monotonic() + 20
            while ": keepalive" not in w.comments and time.monotonic() < deadline:
                w.next_event(0.25)
            self.assertIn(": keepalive", w.comments,
                          "no ': keepalive' on the endpoint watch within 20 s")
        finally:
            w.close()

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


# ---- delivery through the real agent ------------------------------------

def instances_of(svc):
    st, _, page = request("GET", "/v1/instances?service=%s&limit=1000" % svc)
    return [i for i in page["items"] if i["desired_state"] == "running"]


def agent_with_guests(name, **kw):
    """A cloud-agent on the test driver whose domains get guest channels
    (CLOUD_AGENT_TEST_CHANNELS=1), a GuestPeer serving them, and the host
    ready. Returns (agent, peer)."""
    c = harness.cluster()
    agent = agentlib.Agent(c, name, env={"CLOUD_AGENT_TEST_CHANNELS": "1"}, **kw).start()
    peer = guestpeer.GuestPeer().watch(agent)
    poll(lambda: c.psql("SELECT state FROM hosts WHERE name = '%s'" % name) == "ready", 30,
         what="host %s ready (agent log:\n%s)" % (name, agent.log_tail()))
    return agent, peer


class GuestAgentCase(harness.TestCase):
    """Tests that share one agent_with_guests per class (cls.agent,
    cls.guest), named after AGENT with room for VCPUS and MEMORY MiB. With
    GUEST_CLEAN each test also fails on errors at the guest end."""

    AGENT, VCPUS, MEMORY, GUEST_CLEAN = "ga", 64, 65536, True

    @classmethod
    def setUpClass(cls):
        cls.agent, cls.guest = agent_with_guests(unique_name(cls.AGENT), cap_vcpus=cls.VCPUS,
                                                 cap_memory=cls.MEMORY)

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()
        cls.guest.stop()

    def tearDown(self):
        if self.GUEST_CLEAN:
            errors, self.guest.errors[:] = list(self.guest.errors), []
            self.assertEqual(errors, [], "errors at the guest end")


def acked(iid, version, timeout=10):
    """The instance once the API shows config_version >= version: the
    guest's {"ack":N}, reported by the agent, stored by the controller."""
    def ok():
        st, _, inst = request("GET", "/v1/instances/" + iid)
        return inst if st == 200 and inst.get("config_version", 0) >= version else None
    inst = poll(ok, timeout, what="config_version %d of %s in the API" % (version, iid))
    # The API reads the controller's cache, which patches an ack into its
    # copy from the event read (cache.c guest_patch) instead of re-reading
    # the row: the copy must still be the row, field for field.
    c = harness.cluster()

    def same():
        st, _, got = request("GET", "/v1/instances/" + iid)
        row = json.loads(c.psql("SELECT cloud_instance_json(i) FROM instances i "
                                "WHERE id = '%s'" % iid))
        return got if st == 200 and got == row else None
    poll(same, 10, what="the API's copy of %s equal to its row" % iid)
    return inst


class LinksAndDeliveryTest(GuestAgentCase):
    """Delivery of the effective config through the real cloud-agent, to a
    guest end (guestpeer.py) on each instance's channel socket: a change is
    a line at the guest end, and the guest's ack is the instance's
    config_version in the API; the guest end reports the addresses
    (libvirt's test driver without --network knows none, so the agent
    reports the guest's) and readiness the test gives it."""

    AGENT, VCPUS = "ld", 256

    def sse_wait(self, watch, pred, timeout):
        ev, seen = watch.wait_for(lambda e: e.get("event") == "endpoints" and pred(e), timeout)
        self.assertIsNotNone(ev, "no matching endpoints event; saw %r" % seen)
        return ev

    def wait_running(self, svc, n, timeout=30):
        def ok():
            got = [i for i in instances_of(svc) if i["state"] == "running"]
            return got if len(got) == n else None
        return poll(ok, timeout, what="%d running instances of %s (agent log:\n%s)"
                    % (n, svc, self.agent.log_tail(10)))

    def restart_agent(self):
        self.agent.stop()
        self.agent.start()

    def test_01_endpoints_effective_config_and_delivery(self):
        g = self.guest
        db = unique_name("db")
        web = service(self, links=[db], replicas=1)
        wi = self.wait_running(web["name"], 1)[0]["id"]
        # Linked service missing: empty variables, version 0.
        st, _, ic = request("GET", "/v1/instances/%s/config" % wi)
        self.assertEqual(st, 200, ic)
        lk = db.upper().replace("-", "_")
        self.assertEqual(ic["config"], {lk + "_ENDPOINTS": "", lk + "_ENDPOINTS_VERSION": "0"})
        v0 = ic["version"]
        self.assertGreaterEqual(v0, 1)
        line = g.wait_line(wi, lambda l: l.version == v0, 10,
                           "the effective config version %d at the guest" % v0)
        self.assertEqual(line.config, ic["config"])
        acked(wi, v0)
        # A config change is pushed at once.
        t0 = time.monotonic()
        st, h, doc = request("PUT", cfg_path(web["name"]), {"config": {"GREETING": "hi"}})
        self.assertEqual(st, 200, doc)
        line = g.wait_line(wi, lambda l: l.version > v0, 5, "the pushed config")
        sys.stderr.write("\nconfig PUT sent -> line at the guest end: %.1f ms\n"
                         % ((line.t - t0) * 1000))
        self.assertEqual(line.config["GREETING"], "hi")
        self.assertEqual(line.config[lk + "_ENDPOINTS"], "")
        v1 = line.version
        acked(wi, v1)
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
        g.set_guest(dis[0]["id"], addresses=["10.0.0.5"])
        g.set_guest(dis[1]["id"], addresses=["10.0.0.6:6000"])
        ev = self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 2, 10)
        eps = json.loads(ev["data"])
        self.assertEqual(ev["id"], str(eps["version"]))
        self.assertEqual([e["addr"] for e in eps["endpoints"]],
                         ["10.0.0.5:5432", "10.0.0.6:6000"])
        e0 = eps["endpoints"][0]
        self.assertEqual((e0["instance"], e0["name"], e0["address"], e0["port"]),
                         (dis[0]["id"], dis[0]["name"], "10.0.0.5", 5432))
        # The web instance gets DB_ENDPOINTS, pushed.
        line = g.wait_line(wi, lambda l: l.config.get(lk + "_ENDPOINTS")
                           == "10.0.0.5:5432,10.0.0.6:6000", 10, "DB_ENDPOINTS pushed to web")
        self.assertGreater(line.version, v1)
        self.assertEqual(line.config[lk + "_ENDPOINTS_VERSION"], str(eps["version"]))
        self.assertEqual(line.config["GREETING"], "hi")
        st, _, ic = request("GET", "/v1/instances/%s/config" % wi)
        last = g.last(wi)
        self.assertEqual((ic["version"], ic["config"]), (last.version, last.config))
        acked(wi, last.version)
        # ready_when guest: only ready instances count.
        v_before = last.version
        st, _, _ = request("PATCH", "/v1/services/" + db, {"ready_when": "guest"})
        self.assertEqual(st, 200)
        ev = self.sse_wait(watch, lambda e: json.loads(e["data"])["endpoints"] == [], 10)
        g.set_guest(dis[1]["id"], ready=True)
        ev = self.sse_wait(watch, lambda e: [x["addr"] for x in json.loads(e["data"])["endpoints"]]
                            == ["10.0.0.6:6000"], 10)
        line = g.wait_line(wi, lambda l: l.version > v_before and l.config.get(
            lk + "_ENDPOINTS") == "10.0.0.6:6000", 10, "the ready endpoint only")
        # The API shows what the guest said (the read cache follows the
        # status event shortly after it commits).
        poll(lambda: [request("GET", "/v1/instances/" + d["id"])[2]["ready"] for d in dis]
             == [False, True], 10, what="ready false, true in the API")
        request("PATCH", "/v1/services/" + db, {"ready_when": "running"})
        self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 2, 10)
        # Scale up and down: the watch follows.
        request("PATCH", "/v1/services/" + db, {"replicas": 3})
        dis3 = self.wait_running(db, 3)
        new = [i for i in dis3 if i["id"] not in (dis[0]["id"], dis[1]["id"])][0]
        g.set_guest(new["id"], addresses=["10.0.0.7"])
        ev = self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 3, 15)
        request("PATCH", "/v1/services/" + db, {"replicas": 1})
        ev = self.sse_wait(watch, lambda e: len(json.loads(e["data"])["endpoints"]) == 1, 20)
        last = json.loads(ev["data"])
        watch.close()
        line = g.wait_line(wi, lambda l: l.config.get(lk + "_ENDPOINTS_VERSION")
                           == str(last["version"]), 10, "web to follow the scale-down")
        self.assertEqual(line.config[lk + "_ENDPOINTS"], last["endpoints"][0]["addr"])
        self.assertIsNotNone(dbs)

    def test_02_reconnect_and_late_instances_get_the_current_version(self):
        g = self.guest
        svc = service(self, replicas=1)
        request("PUT", cfg_path(svc["name"]), {"config": {"K": "1"}})
        request("PATCH", cfg_path(svc["name"]), {"config": {"K": "2"}})
        i1 = self.wait_running(svc["name"], 1)[0]["id"]
        st, _, ic = request("GET", "/v1/instances/%s/config" % i1)
        want = ic["version"]
        g.wait_line(i1, lambda l: l.version == want, 10, "config delivered")
        acked(i1, want)
        # Reconnect: the agent restarts (the test driver's domains go with
        # it), its new session's desired set starts the instance again and
        # carries the config: the first line on the new channel connection
        # is the current version.
        n = g.connects[i1]
        self.restart_agent()
        line = g.wait_line(i1, lambda l: l.conn > n, 30,
                           "a line after the agent's restart (agent log:\n%s)"
                           % self.agent.log_tail(10))
        self.assertEqual((line.version, line.config), (want, {"K": "2"}))
        # An instance started later gets the current version too.
        request("PATCH", "/v1/services/" + svc["name"], {"replicas": 2})
        both = self.wait_running(svc["name"], 2)
        i2 = [i["id"] for i in both if i["id"] != i1][0]
        line = g.wait_line(i2, lambda l: True, 10, "the late instance's config")
        self.assertEqual((line.version, line.config), (want, {"K": "2"}))
        acked(i2, want)
        # Versions seen by the guest never went back.
        seen = [l.version for l in g.lines_of(i1)]
        self.assertEqual(seen, sorted(seen))

    def test_03_big_configs_go_as_config_updates(self):
        """72 instances of a 60,000-byte config on one host: the desired set
        with every config inline would be some 4.4 MB, over the 4 MiB frame
        limit (proto/frame.h), so only the set without configs followed by
        one ConfigUpdate per instance (gateway_desired.c, GWCFG_INLINE_MAX) gets
        them there; one config line still fits the channel's 64 KiB.
        Checked for a change, and after a reconnect (the whole set of the
        new session); then a small config goes inline again."""
        g = self.guest
        n = 72
        svc = service(self, replicas=n)
        ids = [i["id"] for i in self.wait_running(svc["name"], n, 60)]
        big = {"K%02d" % k: ("%02d" % k) * 2500 for k in range(12)}
        st, _, doc = request("PUT", cfg_path(svc["name"]), {"config": big})
        self.assertEqual(st, 200, doc)
        st, _, ic = request("GET", "/v1/instances/%s/config" % ids[0])
        want = ic["version"]
        got = g.wait_all(ids, lambda i, l: l.version == want, 20,
                         "version %d at every guest" % want)
        self.assertTrue(all(l.config == big for l in got.values()))
        # Reconnect: the first set of the session holds all n big configs.
        conns = {i: g.connects[i] for i in ids}
        self.restart_agent()
        got = g.wait_all(ids, lambda i, l: l.conn > conns[i], 60,
                         "a line at every guest after the agent's restart")
        self.assertTrue(all((l.version, l.config) == (want, big) for l in got.values()))
        acked(ids[-1], want)
        # Back to small: inline again.
        st, _, doc = request("PUT", cfg_path(svc["name"]), {"config": {"K": "v"}})
        self.assertEqual(st, 200, doc)
        g.wait_all(ids, lambda i, l: l.version > want and l.config == {"K": "v"}, 10,
                   "the small config at every guest")
        request("PATCH", "/v1/services/" + svc["name"], {"replicas": 0})
        poll(lambda: not instances_of(svc["name"]), 30, what="%s scaled to 0" % svc["name"])

    def test_04_a_write_on_another_replica_is_pushed_by_the_agents_replica(self):
        """The agent is connected to the first controller; the config is
        written through a second one (no gateway): the commit's NOTIFY makes
        the first push at once."""
        import http.client
        g = self.guest
        c = harness.cluster()
        other = c.spawn_controller(unique_name("r2"), reconcile=False)
        self.addCleanup(other.stop)
        svc = service(self, replicas=2)
        ids = [i["id"] for i in self.wait_running(svc["name"], 2)]
        g.wait_connected(ids, 10)
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
        got = g.wait_all(ids, lambda i, l: l.config == {"FROM": "replica-2"}, 5,
                         "the push from the agent's replica")
        t1 = max(l.t for l in got.values())
        sys.stderr.write("\nconfig PUT on replica 2 -> line at both guests via replica 1: "
                         "%.1f ms\n" % ((t1 - t0) * 1000))
        for i in ids:
            acked(i, got[i].version)

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
        self.guest.set_guest(i["id"], addresses=["10.9.9.9"])
        ev = watch.next_event(10)
        while ev is not None and ev.get("event") == "endpoints":
            ev = watch.next_event(10)
        self.assertIsNone(ev, "the watch of a deleted service did not end")
        watch.close()
        st, _, doc = request("GET", "/v1/services/%s/endpoints?watch=true" % svc["name"])
        self.assertEqual(st, 404, doc)

    def test_06_one_change_reaches_100_instances(self):
        g = self.guest
        svc = service(self, replicas=100)
        ids = [i["id"] for i in self.wait_running(svc["name"], 100, 60)]
        g.wait_connected(ids, 30)
        times = []
        for n in range(5):
            want = {"ROUND": str(n)}
            t0 = time.monotonic()
            st, _, doc = request("PUT", cfg_path(svc["name"]), {"config": want})
            self.assertEqual(st, 200, doc)
            got = g.wait_all(ids, lambda i, l: l.config == want, 5,
                             "round %d at all 100 guests" % n)
            times.append((max(l.t for l in got.values()) - t0) * 1000)
        sys.stderr.write("\nconfig PUT -> the line at all 100 guests: %s ms\n"
                         % ", ".join("%.1f" % t for t in times))
        # Every guest's ack of the last round reaches the API.
        v = doc["version"]

        def all_acked():
            st, _, page = request("GET", "/v1/instances?service=%s&limit=1000" % svc["name"])
            return st == 200 and sum(1 for i in page["items"]
                                     if i["id"] in got and i["config_version"] >= v) == 100
        poll(all_acked, 20, what="config_version %d of all 100 instances in the API" % v)
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
        i2 = self.wait_running(name, 1)[0]["id"]
        st, _, ic = request("GET", "/v1/instances/%s/config" % i2)
        self.assertGreater(ic["version"], v1)
        line = self.guest.wait_line(i2, lambda l: True, 10, "the new instance's config")
        self.assertEqual((line.version, line.config), (ic["version"], ic["config"]))
        acked(i2, ic["version"])


class BootLineTest(GuestAgentCase):
    """env and args (issue 11): the agent writes the boot line
    {"env":{...},"args":[...]} first on every channel connection (before
    the config line), from InstanceSpec env and args; a change of env is a
    new generation, rolled out as new instances that boot with it. And a
    config of 1 MiB of control characters (about 6 MB as a JSON line)
    reaches the guest and is acknowledged."""

    AGENT, VCPUS = "bl", 64

    def boots(self, iid, pred, timeout, what):
        g = self.guest
        return g.wait(lambda: [b for b in g.boots.get(iid, []) if pred(b)], timeout,
                      "%s (agent log:\n%s)" % (what, self.agent.log_tail(10)))

    def running(self, name, n, timeout=30):
        def ok():
            got = [i for i in instances_of(name) if i["state"] == "running"]
            return got if len(got) == n else None
        return poll(ok, timeout, what="%d running instances of %s" % (n, name))

    def test_01_env_and_args_arrive_first_on_every_connection(self):
        g = self.guest
        env = {"GREETING": "hello world", "QUOTED": 'a "b" \\ c', "CTRL": "x\x01y", "EMPTY": ""}
        args = ["--", "two words", "", "plain"]
        svc = service(self, replicas=1, env=env, args=args)
        i1 = self.running(svc["name"], 1)[0]["id"]
        conn, msg = self.boots(i1, lambda b: True, 10, "the boot line")[0]
        self.assertEqual(msg, {"env": env, "args": args})
        # A config comes after it on the same connection; no second boot line.
        request("PUT", cfg_path(svc["name"]), {"config": {"A": "1"}})
        line = g.wait_line(i1, lambda l: l.config.get("A") == "1", 10, "the config")
        self.assertEqual(line.conn, conn)
        self.assertEqual([b for b in g.boots_of(i1) if b[0] == conn], [(conn, msg)])
        # A new connection (the agent restarts) starts with it again.
        n = g.connects[i1]
        self.agent.stop()
        self.agent.start()
        _, again = self.boots(i1, lambda b: b[0] > n, 30, "the boot line after a restart")[0]
        self.assertEqual(again, msg)
        # env changed: a new generation; the rollout replaces the instance
        # by one that boots with the new env (the old one never sees it).
        st, _, s2 = request("PATCH", "/v1/services/" + svc["name"],
                            {"env": {"GREETING": "bye"}})
        self.assertEqual((st, s2["generation"]), (200, svc["generation"] + 1), s2)

        def replaced():
            got = instances_of(svc["name"])
            return got[0] if len(got) == 1 and got[0]["id"] != i1 and \
                got[0]["state"] == "running" else None
        i2 = poll(replaced, 30, what="the rollout of %s" % svc["name"])
        self.assertEqual(i2["generation"], s2["generation"])
        _, b2 = self.boots(i2["id"], lambda b: True, 10, "the new instance's boot line")[0]
        self.assertEqual(b2, {"env": {"GREETING": "bye"}, "args": args})
        self.assertTrue(all(b[1]["env"] == env for b in g.boots_of(i1)))
        request("PATCH", "/v1/services/" + svc["name"], {"replicas": 0})

    def test_02_one_off_instance_gets_its_env_without_a_config(self):
        st, _, inst = request("POST", "/v1/instances", {
            "image": IMAGE, "name": unique_name("bl1"), "env": {"MODE": "once"},
            "args": ["cloud.x=1", "a b"],
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        self.assertEqual(st, 201, inst)
        _, b = self.boots(inst["id"], lambda b: True, 30, "the one-off's boot line")[0]
        self.assertEqual(b, {"env": {"MODE": "once"}, "args": ["cloud.x=1", "a b"]})
        self.assertEqual(self.guest.lines_of(inst["id"]), [])
        request("POST", "/v1/instances/%s/kill" % inst["id"], {"signal": "KILL"})

    def test_03_a_config_of_control_characters_reaches_the_guest(self):
        """1 MiB of keys and values is what the API accepts; escaped, a
        control character is 6 bytes: the line is some 5.5 MB, which the
        agent's 64 KiB line limit used to drop with a log line while the
        API showed nothing wrong. Written by PATCHes of 2 keys (each body
        under the API's 1 MiB)."""
        svc = service(self, replicas=1)
        i1 = self.running(svc["name"], 1)[0]["id"]
        big = {}
        for k in range(0, 14, 2):
            part = {"C%02d" % j: "\x01" * 65536 for j in (k, k + 1)}
            st, _, doc = request("PATCH", cfg_path(svc["name"]), {"config": part})
            self.assertEqual(st, 200, doc)
            big.update(part)
        st, _, ic = request("GET", "/v1/instances/%s/config" % i1)
        want = ic["version"]
        line = self.guest.wait_line(i1, lambda l: l.version == want, 30,
                                    "the 5.5 MB config line (agent log:\n%s)"
                                    % self.agent.log_tail(10))
        self.assertEqual(line.config, big)
        acked(i1, want, 20)
        request("PATCH", "/v1/services/" + svc["name"], {"replicas": 0})


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
