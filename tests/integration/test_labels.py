"""Labels on services and instances (issue 5) against the real controller.

The controller runs the reconciler, so a service's instances are created by
it (pending: there are no hosts) and must inherit the service's labels.
Covered: labels in the JSON of create/get/list, validation (422 naming the
field), the label selector on both lists (?label=k=v, ?label=k, several
AND together, comma form, 400 on a bad term), PATCH of a service's labels
reaching its instances, and the bulk create path (concurrent one-off
creates travel through cloud_instance_create_many) keeping each labels.
"""

import json
import os
import re
import time
import unittest
from urllib.parse import quote

import harness
from harness import poll, request, unique_name

IMAGE = "hello:latest"


setUpModule, tearDownModule = harness.module_fixture(reconcile=True)


def names(items):
    return sorted(x["name"] for x in items)


def list_all(path):
    out, after = [], None
    while True:
        sep = "&" if "?" in path else "?"
        p = path + (sep + "after=" + quote(after) if after else "")
        st, _, body = request("GET", p)
        assert st == 200, (st, body)
        out.extend(body["items"])
        after = body["next"]
        if after is None:
            return out


def bulk_batches():
    st, _, text = request("GET", "/metrics")
    assert st == 200
    if isinstance(text, (bytes, bytearray)):
        text = text.decode()
    m = re.search(r"^cloud_write_bulk_batches_total (\d+)$", str(text), re.M)
    return int(m.group(1)) if m else 0


class LabelsTest(harness.TestCase):

    def test_service_labels_inherited_and_patched(self):
        team = unique_name("team")
        st, _, svc = request("POST", "/v1/services", {
            "name": unique_name("lbl"), "image": IMAGE, "replicas": 2,
            "labels": {"app": "web", "example.com/team": team, "empty": ""}})
        self.assertEqual(st, 201, svc)
        self.assertEqual(svc["labels"], {"app": "web", "example.com/team": team, "empty": ""})
        st, _, got = request("GET", "/v1/services/" + svc["name"])
        self.assertEqual(got["labels"], svc["labels"])

        sel = "/v1/instances?label=" + quote("example.com/team=" + team)
        insts = poll(lambda: (lambda l: l if len(l) == 2 else None)(list_all(sel)),
                     20, what="two instances of %s labelled" % svc["name"])
        for i in insts:
            self.assertEqual(i["service"], svc["name"])
            self.assertEqual(i["labels"], svc["labels"])

        # Services filter the same way.
        st, _, sl = request("GET", "/v1/services?label=" + quote("example.com/team=" + team))
        self.assertEqual(st, 200, sl)
        self.assertEqual([s["name"] for s in sl["items"]], [svc["name"]])

        # PATCH replaces the set; the live instances follow at once.
        new = {"app": "web", "example.com/team": team, "tier": "front"}
        st, _, p = request("PATCH", "/v1/services/" + svc["name"], {"labels": new})
        self.assertEqual(st, 200, p)
        self.assertEqual(p["labels"], new)
        self.assertEqual(p["version"], svc["version"] + 1)
        self.assertEqual(p["generation"], svc["generation"])  # no rollout
        got = poll(lambda: (lambda l: l if len(l) == 2 and all(
            i["labels"] == new for i in l) else None)(list_all(sel)),
            10, what="instances relabelled")
        self.assertEqual(len(got), 2)
        st, _, none = request("GET", sel + "&label=empty")
        self.assertEqual(none["items"], [])
        st, _, front = request("GET", sel + "&label=tier=front")
        self.assertEqual(len(front["items"]), 2)

        # A scale-up after the PATCH gets the new labels too.
        st, _, p = request("PATCH", "/v1/services/" + svc["name"], {"replicas": 3})
        self.assertEqual(st, 200, p)
        self.assertEqual(p["labels"], new)
        got = poll(lambda: (lambda l: l if len(l) == 3 else None)(
            list_all(sel + "&label=tier=front")), 20, what="third instance labelled")
        self.assertEqual(len(got), 3)

        # An empty object removes every label.
        st, _, p = request("PATCH", "/v1/services/" + svc["name"], {"labels": {}})
        self.assertEqual(p["labels"], {})
        poll(lambda: list_all(sel) == [], 10, what="labels removed from instances")

    def test_instance_selectors(self):
        run = unique_name("run")
        made = {}
        for n, labels in (("a", {"run": run, "env": "prod", "tier": "db"}),
                          ("b", {"run": run, "env": "prod"}),
                          ("c", {"run": run, "env": "dev", "tier": "db"}),
                          ("d", {})):
            st, _, inst = request("POST", "/v1/instances", {
                "image": IMAGE, "name": unique_name(n), "labels": labels})
            self.assertEqual(st, 201, inst)
            self.assertEqual(inst["labels"], labels)
            made[n] = inst["name"]
        st, _, got = request("GET", "/v1/instances/" + made["a"])
        self.assertEqual(got["labels"], {"run": run, "env": "prod", "tier": "db"})

        def sel(*terms):
            q = "&".join("label=" + quote(t) for t in terms)
            st, _, body = request("GET", "/v1/instances?" + q + "&limit=1000")
            self.assertEqual(st, 200, body)
            return names(body["items"])

        r = "run=" + run
        self.assertEqual(sel(r), sorted([made["a"], made["b"], made["c"]]))
        self.assertEqual(sel(r, "env=prod"), sorted([made["a"], made["b"]]))
        self.assertEqual(sel(r, "env=prod", "tier=db"), [made["a"]])
        self.assertEqual(sel(r + ",tier=db"), sorted([made["a"], made["c"]]))
        self.assertEqual(sel(r, "tier"), sorted([made["a"], made["c"]]))
        self.assertEqual(sel(r, "env=prod", "env=dev"), [])
        self.assertEqual(sel(r, "env=staging"), [])
        # A value that is a prefix of another does not match it.
        self.assertEqual(sel(r, "env=pro"), [])
        self.assertEqual(sel(r, "en"), [])
        # Combined with the other filters and pages.
        st, _, body = request("GET", "/v1/instances?label=%s&limit=1" % quote(r))
        self.assertEqual(len(body["items"]), 1)
        self.assertIsNotNone(body["next"])
        self.assertEqual(names(list_all("/v1/instances?limit=1&label=" + quote(r))),
                         sorted([made["a"], made["b"], made["c"]]))

    def test_selector_errors(self):
        for bad in ["", "=x", "k=v=w", "-bad=x", "k=" + "v" * 64, "UPPER.Prefix/x=1",
                    ",", "a=1,,b=2"]:
            resp = request("GET", "/v1/instances?label=" + quote(bad))
            self.assertError(resp, 400, "bad_request", "label")
            resp = request("GET", "/v1/services?label=" + quote(bad))
            self.assertError(resp, 400, "bad_request", "label")
        many = "&".join("label=k%d" % i for i in range(17))
        self.assertError(request("GET", "/v1/instances?" + many), 400, "bad_request", "label")

    def test_validation(self):
        cases = [
            ("x", "labels"),
            (["a"], "labels"),
            ({"ok": 1}, "labels.ok"),
            ({"ok": None}, "labels.ok"),
            ({"bad key": "x"}, "labels"),
            ({"-a": "x"}, "labels"),
            ({"a" * 64: "x"}, "labels"),
            ({"Example.com/a": "x"}, "labels"),
            ({"a/": "x"}, "labels"),
            ({"/a": "x"}, "labels"),
            ({"a": "v" * 64}, "labels.a"),
            ({"a": "-v"}, "labels.a"),
            ({"a": "v w"}, "labels.a"),
            ({"k%d" % i: "v" for i in range(65)}, "labels"),
        ]
        for labels, field in cases:
            resp = request("POST", "/v1/instances", {"image": IMAGE, "labels": labels})
            self.assertError(resp, 422, "invalid", field)
            resp = request("POST", "/v1/services", {"name": unique_name("v"), "image": IMAGE,
                                                    "labels": labels})
            self.assertError(resp, 422, "invalid", field)
        st, _, svc = request("POST", "/v1/services", {"name": unique_name("v"), "image": IMAGE,
                                                      "replicas": 0})
        self.assertEqual(st, 201, svc)
        self.assertEqual(svc["labels"], {})
        resp = request("PATCH", "/v1/services/" + svc["name"], {"labels": {"a": "v w"}})
        self.assertError(resp, 422, "invalid", "labels.a")
        # Limits that pass: 64 labels, 63-character names and values, a
        # 253-character prefix.
        prefix = ".".join(["p" * 63] * 4)[:253].rstrip(".")
        ok = {"k%d" % i: "v" for i in range(63)}
        ok[prefix + "/" + "n" * 63] = "v" * 63
        st, _, inst = request("POST", "/v1/instances", {"image": IMAGE, "labels": ok})
        self.assertEqual(st, 201, inst)
        self.assertEqual(inst["labels"], ok)
        # Nothing was written by the refused requests.
        st, _, body = request("GET", "/v1/instances?label=" + quote("bad key"))
        self.assertEqual(st, 400)

    def test_bulk_path_keeps_labels(self):
        run = unique_name("bulk")
        before = bulk_batches()
        for attempt in range(5):
            n = 24
            bodies = [{"image": IMAGE, "labels": {"bulk": run, "k": "v%d" % k}}
                      for k in range(n)]
            out = harness.post_at_once("/v1/instances", bodies)
            for k, (st, _, inst) in enumerate(out):
                self.assertEqual(st, 201, inst)
                self.assertEqual(inst["labels"], bodies[k]["labels"])
            if bulk_batches() > before:
                break
            time.sleep(0.2)
        self.assertGreater(bulk_batches(), before, "no batch took the bulk path")
        got = list_all("/v1/instances?label=" + quote("bulk=" + run))
        self.assertEqual(len(got) % 24, 0)
        self.assertGreaterEqual(len(got), 24)
        for i in got:
            st, _, one = request("GET", "/v1/instances/" + i["id"])
            self.assertEqual(one["labels"], i["labels"])
        st, _, body = request("GET", "/v1/instances?label=" + quote("bulk=" + run) +
                              "&label=k=v7&limit=1000")
        self.assertTrue(all(i["labels"]["k"] == "v7" for i in body["items"]))
        self.assertEqual(len(body["items"]), len(got) // 24)

    def test_sql_fallback_statements(self):
        # While the read cache loads, selector lists run ST_INSTANCE_LIST_SEL
        # and ST_SERVICE_LIST_SEL. No test can hold the cache unloaded on
        # demand, so run those statements, as controller/store.c spells
        # them, with the parameters in the order api.c passes them.
        src = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "controller", "store.c")).read()

        # SERVICE_JSON_RUNNING, a macro of string pieces, stands in some.
        mac = re.search(r'#define SERVICE_JSON_RUNNING((?:[^\n]*\\\n)*[^\n]*)\n', src)
        self.assertIsNotNone(mac, "SERVICE_JSON_RUNNING")
        mac_text = "".join('"%s"' % p for p in re.findall(r'"((?:[^"\\]|\\.)*)"', mac.group(1)))

        def stmt(name):
            m = re.search(r'\{"%s",\s*((?:(?:"(?:[^"\\]|\\.)*"|SERVICE_JSON_RUNNING)\s*)+),'
                          r'\s*(\d+),\s*\w+\}' % name, src)
            self.assertIsNotNone(m, name)
            text = m.group(1).replace("SERVICE_JSON_RUNNING", mac_text)
            sql = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', text))
            return sql.replace('\\"', '"'), int(m.group(2))
        run = unique_name("fb")
        for n, labels in (("a", {"fb": run, "t": "1"}), ("b", {"fb": run}), ("c", {})):
            st, _, _ = request("POST", "/v1/instances", {"image": IMAGE, "name": "%s-%s" % (run, n),
                                                        "labels": labels})
            self.assertEqual(st, 201)
            st, _, _ = request("POST", "/v1/services", {"name": "%s-%s" % (run, n), "image": IMAGE,
                                                       "replicas": 0, "labels": labels})
            self.assertEqual(st, 201)
        isql, ni = stmt("instance_list_sel")
        ssql, ns = stmt("service_list_sel")
        self.assertEqual((ni, ns), (8, 5))

        def names(sql, args, services=False):
            out = harness.psql("PREPARE x AS %s; EXECUTE x(%s); DEALLOCATE x;"
                               % (sql, ",".join(args)))
            objs = [json.loads(l.split("|", 1)[1]) for l in out.splitlines() if "|" in l]
            # services carry their running count (0 here: replicas 0)
            if services:
                self.assertTrue(all(o["running"] == 0 for o in objs), objs)
            return sorted(o["name"] for o in objs)

        def inst(eq, keys):
            # after, service, state, host, desired_state, limit, eq, keys
            return names(isql, ["NULL"] * 5 + ["'101'", "'%s'" % json.dumps(eq),
                                                "'%s'" % json.dumps(keys)])

        def svc(eq, keys):
            # after, state, limit, eq, keys
            return names(ssql, ["NULL", "NULL", "'101'", "'%s'" % json.dumps(eq),
                                "'%s'" % json.dumps(keys)], services=True)
        a, b = run + "-a", run + "-b"
        for fn in (inst, svc):
            self.assertEqual(fn({"fb": run}, []), [a, b])
            self.assertEqual(fn({"fb": run}, ["t"]), [a])
            self.assertEqual(fn({"fb": run, "t": "2"}, []), [])
            self.assertEqual(fn({"fb": "\n"}, []), [])  # what two values of one key send

    def test_labels_survive_a_restart(self):
        # The cache loads labels from the table at start-up as well as
        # from write answers.
        run = unique_name("rs")
        st, _, inst = request("POST", "/v1/instances", {"image": IMAGE, "labels": {"rs": run}})
        self.assertEqual(st, 201, inst)
        harness.cluster().restart_controller()
        st, _, body = request("GET", "/v1/instances?label=" + quote("rs=" + run))
        self.assertEqual(st, 200, body)
        self.assertEqual([i["id"] for i in body["items"]], [inst["id"]])
        self.assertEqual(body["items"][0]["labels"], {"rs": run})


if __name__ == "__main__":
    unittest.main()
