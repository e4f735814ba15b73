"""PostgreSQL goes away under a running controller, then comes back.

DESIGN.md: a database outage never destroys anything; the API answers 503
`unavailable` (nothing committed) while the database is unreachable, and
recovers by itself: readiness, writes, and the event watch (LISTEN is
re-established and the watch resumes from the event table).
"""

import gzip
import http.client
import json
import os
import subprocess
import time
import unittest

import harness
from harness import request, unique_name

IMAGE = "hello:latest"
OUTAGE_DETECT = 10.0   # how long the controller may take to notice
RECOVER = 15.0         # docs/brief: ready and writable within 15 s
SSE_DEADLINE = 5.0


def event_id(ev):
    """The SSE id of an event; the framing itself is checked in test_api, so
    fall back to the id in its JSON here and keep this test about the outage."""
    if "id" in ev:
        return int(ev["id"])
    return int((ev.get("json") or {}).get("id", 0))


setUpModule, tearDownModule = harness.module_fixture()


class PgRestartTests(harness.TestCase):
    def create_service(self, **kw):
        body = {"name": unique_name("pre"), "image": IMAGE, "replicas": 0}
        body.update(kw)
        st, _, svc = request("POST", "/v1/services", body)
        self.assertEqual(st, 201, svc)
        return svc

    def create_instance(self):
        st, _, inst = request("POST", "/v1/instances", {"image": IMAGE})
        self.assertEqual(st, 201, inst)
        return inst

    def wait_ready(self, want, timeout):
        def check():
            resp = request("GET", "/readyz", timeout=3)
            return resp if resp[0] == want else None
        return harness.poll(check, timeout, what="/readyz %d" % want)

    def outage(self, before_services, before_instances):
        """Stops PostgreSQL and checks every answer while it is down."""
        harness.stop_pg()
        self.assertError(self.wait_ready(503, OUTAGE_DETECT), 503, "unavailable")
        # Liveness does not depend on the database.
        st, _, body = request("GET", "/healthz")
        self.assertEqual((st, body), (200, {"status": "ok"}))
        lost = unique_name("lost")
        self.assertError(request("POST", "/v1/services", {"name": lost, "image": IMAGE}), 503, "unavailable")
        self.assertError(request("POST", "/v1/instances", {"image": IMAGE, "name": lost}), 503, "unavailable")
        self.assertError(request("PATCH", "/v1/services/%s" % before_services[0]["name"], {"replicas": 2}),
                         503, "unavailable")
        self.assertError(request("POST", "/v1/instances/%s/kill" % before_instances[0]["id"],
                                 {"signal": "TERM"}), 503, "unavailable")
        self.assertError(request("DELETE", "/v1/services/%s" % before_services[0]["name"]), 503, "unavailable")
        # Reads may be answered from a cache, or be 503; never wrong, never
        # another error.
        resp = request("GET", "/v1/services/%s" % before_services[0]["name"])
        if resp[0] == 200:
            self.assertEqual(resp[2]["id"], before_services[0]["id"])
        else:
            self.assertError(resp, 503, "unavailable")
        resp = request("GET", "/v1/instances/%s" % before_instances[0]["id"])
        if resp[0] == 200:
            self.assertEqual(resp[2]["id"], before_instances[0]["id"])
        else:
            self.assertError(resp, 503, "unavailable")
        # Requests that do not need the database keep their usual answers.
        self.assertError(request("GET", "/v1/nothing"), 404, "not_found")
        self.assertError(request("POST", "/v1/services", b"{", headers={"Content-Type": "application/json"}),
                         400, "bad_request")
        st, _, _ = request("GET", "/metrics")
        self.assertEqual(st, 200)
        return lost

    def recover(self):
        """Starts PostgreSQL; ready and writable again within RECOVER seconds."""
        harness.start_pg()
        t0 = time.monotonic()
        self.wait_ready(200, RECOVER)
        # Writes work: retry the same create with one Idempotency-Key until it
        # goes through, so a retry cannot make a duplicate.
        key = "recover-" + unique_name("k")
        name = unique_name("post")

        def write():
            st, _, body = request("POST", "/v1/services", {"name": name, "image": IMAGE, "replicas": 0},
                                  headers={"Idempotency-Key": key})
            return body if st in (200, 201) else None
        left = max(0.5, RECOVER - (time.monotonic() - t0))
        svc = harness.poll(write, left, what="a write after PostgreSQL restarted")
        self.assertEqual(svc["name"], name)
        # From then on every write succeeds at once: no stale pooled connection.
        for _ in range(5):
            self.create_service()
        return svc

    def test_outage_and_recovery(self):
        services = [self.create_service() for _ in range(3)]
        instances = [self.create_instance() for _ in range(2)]
        st, _, patched = request("PATCH", "/v1/services/%s" % services[1]["name"], {"replicas": 4})
        self.assertEqual(st, 200, patched)

        stream = harness.cluster().sse("/v1/events?watch=true")
        self.assertEqual(stream.status, 200)
        # The watch delivers before the outage.
        probe = self.create_service()
        ev, seen = stream.wait_for(lambda e: (e.get("json") or {}).get("object_id") == probe["id"], SSE_DEADLINE)
        self.assertIsNotNone(ev, "watch silent before the outage; saw %r" % seen)
        last_id = event_id(ev)
        services.append(probe)

        try:
            lost = self.outage(services, instances)
            self.recover()

            # Nothing from before the outage is lost; nothing from during it was committed.
            for s in services:
                st, _, got = request("GET", "/v1/services/%s" % s["name"])
                self.assertEqual(st, 200, got)
                self.assertEqual(got["id"], s["id"])
            st, _, got = request("GET", "/v1/services/%s" % services[1]["name"])
            self.assertEqual((got["replicas"], got["version"]), (4, 2))
            for i in instances:
                st, _, got = request("GET", "/v1/instances/%s" % i["id"])
                self.assertEqual((st, got["state"]), (200, "pending"), got)
            self.assertError(request("GET", "/v1/services/%s" % lost), 404, "not_found")
            self.assertError(request("GET", "/v1/instances/%s" % lost), 404, "not_found")

            # The watch resumes: a change made after the restart arrives,
            # on the old stream if it survived, else on a reconnected one
            # (resumed with Last-Event-ID, as EventSource does).
            after = self.create_service()
            match = lambda e: (e.get("json") or {}).get("object_id") == after["id"]  # noqa: E731
            before_restart = last_id
            ev, seen = stream.wait_for(match, SSE_DEADLINE)
            for e in seen:
                last_id = max(last_id, event_id(e))
            if ev is None:
                stream.close()
                stream = harness.cluster().sse("/v1/events?watch=true",
                                               headers={"Last-Event-ID": str(last_id)})
                self.assertEqual(stream.status, 200)
                ev, seen2 = stream.wait_for(match, SSE_DEADLINE)
                self.assertIsNotNone(ev, "no event for %s after the restart, old stream saw %r, "
                                     "reconnected stream saw %r" % (after["name"], seen, seen2))
                got = [event_id(e) for e in seen2]
                self.assertTrue(all(i > last_id for i in got), "resume after %d sent %r" % (last_id, got))
            self.assertEqual(ev.get("event"), "service.created")
            self.assertGreater(event_id(ev), before_restart)
        finally:
            stream.close()

        # A client that reconnects after the outage resumes where it was.
        fresh = harness.cluster().sse("/v1/events?watch=true", headers={"Last-Event-ID": str(before_restart)})
        try:
            self.assertEqual(fresh.status, 200)
            ev, seen = fresh.wait_for(match, SSE_DEADLINE)
            self.assertIsNotNone(ev, "a stream resumed after %d did not replay %s; saw %r"
                                 % (before_restart, after["name"], seen))
            got = [event_id(e) for e in seen]
            self.assertTrue(all(i > before_restart for i in got), got)
            self.assertEqual(got, sorted(set(got)))
            # ... and follows what happens next.
            later = self.create_service()
            ev, seen = fresh.wait_for(lambda e: (e.get("json") or {}).get("object_id") == later["id"],
                                      SSE_DEADLINE)
            self.assertIsNotNone(ev, "no live event on a stream opened after the restart; saw %r" % seen)
        finally:
            fresh.close()

        # A second outage recovers the same way.
        lost2 = self.outage(services, instances)
        self.recover()
        self.assertError(request("GET", "/v1/services/%s" % lost2), 404, "not_found")
        st, _, page = request("GET", "/v1/services?limit=1000")
        self.assertEqual(st, 200)
        names = {s["name"] for s in page["items"]}
        self.assertTrue({s["name"] for s in services} <= names)


class MigrationChecksumTests(harness.TestCase):
    """Each applied migration's SHA-256 is kept (controller/migrate.c): a
    database migrated from other SQL than this build's is refused by name,
    and a row from before checksums were kept takes this build's."""

    def migrate(self):
        return migrate(harness.cluster().db_url)

    def test_checksums(self):
        c = harness.cluster()
        sums = c.psql("SELECT count(*) FROM schema_migrations WHERE checksum ~ '^[0-9a-f]{64}$'")
        self.assertEqual(sums, c.psql("SELECT count(*) FROM schema_migrations"))
        good = c.psql("SELECT checksum FROM schema_migrations WHERE version = 20")
        try:
            c.psql("UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 20")
            rc, out = self.migrate()
            self.assertNotEqual(rc, 0, out)
            self.assertIn("0020_baseline", out)
            self.assertIn("different build", out)
            # From before checksums: adopted, and migrating works again.
            c.psql("UPDATE schema_migrations SET checksum = NULL WHERE version = 20")
            rc, out = self.migrate()
            self.assertEqual(rc, 0, out)
            self.assertEqual(c.psql("SELECT checksum FROM schema_migrations WHERE version = 20"),
                             good)
        finally:
            c.psql("UPDATE schema_migrations SET checksum = '%s' WHERE version = 20" % good)


def migrate(db_url):
    c = harness.cluster()
    r = subprocess.run([c.controller_bin, "migrate", "--db", db_url],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=60)
    return r.returncode, r.stdout


# A database as the build before the squash of 0001-0020 left it
# (pg_dump of `cloud-controller migrate` plus two services, one of them
# with labels, a stop grace, ready_when and an idempotency key, a service
# linking it, and a one-off instance), made with that build's own
# functions. Gzipped: it holds the old layered functions, and this tree
# should define each function in one place only (migrations/functions/).
LEGACY_DUMP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                           "legacy_0020.sql.gz")

# The parts of a schema two databases must share: columns, constraints,
# indexes, triggers, functions (signature and body).
SCHEMA_SQL = """
SELECT string_agg(x, E'\\n' ORDER BY x) FROM (
  SELECT format('column %s.%s %s %s %s', c.relname, a.attname,
                format_type(a.atttypid, a.atttypmod), a.attnotnull,
                pg_get_expr(d.adbin, d.adrelid)) AS x
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
     AND a.attnum > 0 AND NOT a.attisdropped
     AND c.relname NOT IN ('schema_migrations', 'schema_functions')
  UNION ALL
  SELECT format('constraint %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid))
    FROM pg_constraint WHERE connamespace = 'public'::regnamespace
     AND conrelid::regclass::text NOT IN ('schema_migrations', 'schema_functions')
  UNION ALL
  SELECT format('index %s', pg_get_indexdef(indexrelid)) FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid
   WHERE c.relnamespace = 'public'::regnamespace
     AND c.relname NOT IN ('schema_migrations', 'schema_functions')
  UNION ALL
  SELECT format('trigger %s %s %s %s', tgrelid::regclass, tgname, tgtype, tgfoid::regprocedure)
    FROM pg_trigger WHERE NOT tgisinternal
  UNION ALL
  SELECT format('function %s %s', oid::regprocedure, md5(prosrc))
    FROM pg_proc WHERE pronamespace = 'public'::regnamespace) s
"""


class LegacyLayoutTests(harness.TestCase):
    """Migrations 0001-0020 are one baseline migration now, and every SQL
    function has one file (docs/decisions.md §18): a database migrated by
    an earlier build through 0020 is carried forward (its function layers
    replaced, its rows kept), one migrated part of the way is refused."""

    def load_legacy(self):
        c = harness.cluster()
        db = "legacy_" + harness.hex_id(4)
        c.psql("CREATE DATABASE %s" % db, db="postgres")
        with gzip.open(LEGACY_DUMP, "rt") as f:
            sql = f.read()
        # pg_dump empties search_path, but the services' labels CHECK
        # calls cloud_labels_ok, which names cloud_label_key_ok unqualified.
        sql = sql.replace("SELECT pg_catalog.set_config('search_path', '', false);", "")
        r = subprocess.run([os.path.join(harness.PG_BINDIR, "psql"), "-X", "-q",
                            "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                            "-p", str(c.pg_port), "-U", harness.PG_USER, "-d", db],
                           input=sql, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout)
        return db, c.db_url.rsplit("/", 1)[0] + "/" + db

    def test_carry_forward(self):
        c = harness.cluster()
        db, url = self.load_legacy()
        self.assertEqual(c.psql("SELECT count(*) FROM schema_migrations", db=db), "19")
        rc, out = migrate(url)
        self.assertEqual(rc, 0, out)
        self.assertIn("carried forward", out)
        self.assertEqual(c.psql("SELECT version, name, checksum FROM schema_migrations "
                                "WHERE version <= 20", db=db),
                         c.psql("SELECT version, name, checksum FROM schema_migrations "
                                "WHERE version <= 20"))
        self.assertEqual(c.psql("SELECT count(*) FROM pg_proc WHERE pronamespace = "
                                "'public'::regnamespace AND proname ~ '_(pre[0-9]{4}|unlocked)$'",
                                db=db), "0")
        # The same schema and functions as a database this build made.
        self.assertEqual(c.psql(SCHEMA_SQL, db=db), c.psql(SCHEMA_SQL))
        # Its rows are kept ...
        self.assertEqual(c.psql("SELECT name, labels, stop_grace_seconds, ready_when, links "
                                "FROM services ORDER BY name", db=db),
                         'api|{}|10|running|["web"]\nweb|{"tier": "front"}|30|guest|[]')
        self.assertEqual(c.psql("SELECT labels, stop_grace_seconds FROM instances", db=db),
                         '{"k": "v"}|7')
        self.assertEqual(c.psql("SELECT string_agg(kind || '=' || used, ',' ORDER BY kind) "
                                "FROM quota_usage", db=db),
                         "blob_bytes=1,images=1,instances=1,services=2,tokens=0")
        # ... and the collapsed functions work on them: a replayed
        # idempotency key answers the fixture's service, a patch relabels.
        web = c.psql("SELECT id FROM services WHERE name = 'web'", db=db)
        self.assertEqual(c.psql("SELECT status, body->>'id' FROM cloud_service_create("
                                "'{}'::jsonb, 'legacy-key-1', 't')", db=db), "200|" + web)
        self.assertEqual(c.psql("SELECT status, body->'labels', body->'stop_grace_seconds' "
                                "FROM cloud_service_patch('web', "
                                "'{\"labels\": {\"tier\": \"back\"}, \"stop_grace_seconds\": 5}', "
                                "NULL, 't')", db=db),
                         '200|{"tier": "back"}|5')
        self.assertEqual(c.psql("SELECT version FROM services WHERE name = 'web'", db=db), "2")
        # Migrating again changes nothing.
        rc, out = migrate(url)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("applied", out)
        self.assertNotIn("carried", out)
        # A controller serves it, through the collapsed functions.
        tok = subprocess.run([c.controller_bin, "token", "create", "--db", url, "--name",
                              "legacy-admin", "--role", "admin"], capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(tok.returncode, 0, tok.stderr)
        extra = c.spawn_controller("legacy", ["--db", url], reconcile=False)

        def call(method, path, body=None):
            conn = http.client.HTTPConnection("127.0.0.1", extra.http_port, timeout=10)
            try:
                conn.request(method, path, body=None if body is None else json.dumps(body),
                             headers={"Authorization": "Bearer " + tok.stdout.strip(),
                                      "Content-Type": "application/json"})
                resp = conn.getresponse()
                return resp.status, json.loads(resp.read() or b"null")
            finally:
                conn.close()
        try:
            st, web_json = call("GET", "/v1/services/web")
            self.assertEqual(st, 200, web_json)
            self.assertEqual((web_json["labels"], web_json["stop_grace_seconds"],
                              web_json["ready_when"], web_json["version"]),
                             ({"tier": "back"}, 5, "guest", 2))
            st, made = call("POST", "/v1/services", {"name": "late", "image": "legacy",
                                                     "labels": {"a": "b"},
                                                     "stop_grace_seconds": 60})
            self.assertEqual(st, 201, made)
            self.assertEqual((made["labels"], made["stop_grace_seconds"]), ({"a": "b"}, 60))
        finally:
            extra.stop()

    def test_partial_refused(self):
        c = harness.cluster()
        db, url = self.load_legacy()
        # As if the earlier build had stopped after 0019.
        c.psql("DELETE FROM schema_migrations WHERE version = 20", db=db)
        rc, out = migrate(url)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("0020_guest_limits", out)
        self.assertIn("new database", out)
        # Nothing was changed (one transaction).
        self.assertEqual(c.psql("SELECT count(*) FROM schema_migrations", db=db), "18")
        self.assertEqual(c.psql("SELECT count(*) FROM pg_proc WHERE proname = "
                                "'cloud_service_create_pre0018'", db=db), "1")
        self.assertEqual(c.psql("SELECT to_regclass('schema_functions') IS NULL OR "
                                "(SELECT count(*) = 0 FROM schema_functions)", db=db), "t")


class FunctionFileTests(harness.TestCase):
    """A function file is applied when its checksum differs from the one
    recorded in schema_functions; a function no file defines is dropped."""

    def test_applied_on_change_and_swept(self):
        c = harness.cluster()
        n = c.psql("SELECT count(*) FROM schema_functions")
        self.assertEqual(n, c.psql("SELECT count(DISTINCT proname) FROM pg_proc "
                                   "WHERE pronamespace = 'public'::regnamespace"))
        good = c.psql("SELECT checksum FROM schema_functions WHERE name = 'cloud_ms'")
        self.assertRegex(good, "^[0-9a-f]{64}$")
        try:
            c.psql("CREATE FUNCTION cloud_stray_pre0001() RETURNS integer LANGUAGE sql AS 'SELECT 1'")
            # Drift without a checksum change is not looked at ...
            c.psql("CREATE OR REPLACE FUNCTION cloud_ms(t timestamptz) RETURNS bigint "
                   "LANGUAGE sql IMMUTABLE AS 'SELECT 42::bigint'")
            rc, out = migrate(c.db_url)
            self.assertEqual(rc, 0, out)
            self.assertEqual(c.psql("SELECT cloud_ms(now())"), "42")
            self.assertEqual(c.psql("SELECT count(*) FROM pg_proc WHERE proname = 'cloud_stray_pre0001'"),
                             "0")
            # ... a changed checksum applies the file.
            c.psql("UPDATE schema_functions SET checksum = repeat('0', 64) WHERE name = 'cloud_ms'")
            rc, out = migrate(c.db_url)
            self.assertEqual(rc, 0, out)
            self.assertIn("applied 1 function file", out)
            self.assertEqual(c.psql("SELECT cloud_ms('1970-01-01 00:00:01+00')"), "1000")
            self.assertEqual(c.psql("SELECT checksum FROM schema_functions WHERE name = 'cloud_ms'"),
                             good)
        finally:
            c.psql("DROP FUNCTION IF EXISTS cloud_stray_pre0001()")
            c.psql("UPDATE schema_functions SET checksum = repeat('0', 64) WHERE name = 'cloud_ms'")
            migrate(c.db_url)


if __name__ == "__main__":
    unittest.main()
