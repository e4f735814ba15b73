"""Event retention, quotas, free space and blob GC (issue 11, items 5-6).

The settings (GET/PATCH /v1/cluster/settings: events_retention, quotas,
blobs) are lowered through the API to make pruning, GC and quotas fast to
test; each test puts back what it changed. The main controller runs the
reconciler, so it leads and runs the retention timer (pruning and the
rows' GC are the leader's); see docs/decisions.md "Event retention and
the low-water mark" and "Quotas and blob GC".
"""

import hashlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time

import harness
from harness import poll, request, unique_name

OCTET = {"Content-Type": "application/octet-stream"}
CLOUDCTL = os.environ.get("CLOUDCTL")

IMAGE = "hello:latest"


def setUpModule():
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")
    poll(lambda: harness.psql("SELECT holder FROM leader_lease WHERE expires_at > now()"),
         30, what="a leader")


def tearDownModule():
    harness.stop()


def settings():
    st, _, s = request("GET", "/v1/cluster/settings")
    assert st == 200, s
    return s


def patch(body):
    st, _, s = request("PATCH", "/v1/cluster/settings", body)
    assert st == 200, (st, s)
    return s


def low_water():
    return int(harness.psql("SELECT low_water FROM events_pruned").strip())


def max_event():
    return int(harness.psql("SELECT max(id) FROM events").strip())


def make_events(n):
    """n events through the API (token create + revoke), returns the last id."""
    for _ in range(n):
        st, _, t = request("POST", "/v1/tokens", {"name": unique_name("ev"), "role": "viewer"})
        assert st == 201, t
        request("DELETE", "/v1/tokens/%s" % t["name"])
    return max_event()


def upload(tc, data):
    st, _, body = request("POST", "/v1/blobs/uploads")
    tc.assertEqual(st, 202, body)
    path = "/v1/blobs/uploads/%s" % body["id"]
    st, _, b = request("PATCH", path, body=data, headers=dict(OCTET, **{"Upload-Offset": "0"}))
    tc.assertEqual(st, 202, b)
    return request("PUT", "%s?digest=sha256:%s" % (path, hashlib.sha256(data).hexdigest()))


def cli_env(port):
    return dict(os.environ, CLOUD_URL="http://127.0.0.1:%d" % port,
                CLOUD_TOKEN=harness.cluster().token, NO_COLOR="1",
                XDG_CONFIG_HOME=tempfile.mkdtemp(prefix="cloudctl-cfg-"))


def read_log(path):
    with open(path, "rb") as f:
        return f.read()


def blob_file(digest):
    return os.path.join(harness.cluster().tmp, "ctl", "blobs", "sha256", digest[7:])


class SettingsTests(harness.TestCase):
    def test_defaults_and_validation(self):
        s = settings()
        self.assertEqual(s["events_retention"], {"max_age_seconds": 604800, "max_events": 1000000})
        self.assertEqual(set(s["quotas"]), {"services", "instances", "images", "tokens",
                                            "upload_sessions", "blob_bytes"})
        self.assertEqual(s["quotas"]["upload_sessions"], 64)
        self.assertEqual(set(s["blobs"]), {"gc_grace_seconds", "min_free_bytes"})
        self.assertError(request("PATCH", "/v1/cluster/settings", {"quotas": {"cpus": 1}}),
                         422, "invalid", "quotas")
        self.assertError(request("PATCH", "/v1/cluster/settings",
                                 {"events_retention": {"max_age_seconds": 5}}),
                         422, "invalid", "events_retention.max_age_seconds")
        self.assertError(request("PATCH", "/v1/cluster/settings", {"quotas": {"services": -1}}),
                         422, "invalid", "quotas.services")
        self.assertError(request("PATCH", "/v1/cluster/settings", {"blobs": 3}),
                         422, "invalid", "blobs")
        self.assertError(request("PATCH", "/v1/cluster/settings", {"retention": {}}),
                         422, "invalid", "retention")
        self.assertError(request("PATCH", "/v1/cluster/settings", {"quotas": {"tokens": 5}},
                                 {"If-Match": "999999"}), 412, "precondition_failed")
        self.assertEqual(settings()["quotas"]["tokens"], s["quotas"]["tokens"])
        # A merge patch: one key changes, the others stay; one version step.
        v = s["version"]
        n = patch({"quotas": {"tokens": 12345}, "down_after_seconds": s["down_after_seconds"] + 1})
        self.assertEqual(n["quotas"]["tokens"], 12345)
        self.assertEqual(n["quotas"]["services"], s["quotas"]["services"])
        self.assertEqual(n["down_after_seconds"], s["down_after_seconds"] + 1)
        self.assertEqual(n["version"], v + 1)
        st, _, page = request("GET", "/v1/events?type=controller.settings&limit=1000")
        self.assertIn("quotas.tokens %d -> 12345" % s["quotas"]["tokens"],
                      page["items"][-1]["message"])
        patch({"quotas": {"tokens": s["quotas"]["tokens"]},
               "down_after_seconds": s["down_after_seconds"]})


class RetentionTests(harness.TestCase):
    def prune_to(self, keep):
        """Lowers max_events to keep and waits until the leader pruned."""
        top = make_events(3)
        patch({"events_retention": {"max_events": keep}})
        try:
            poll(lambda: low_water() >= top - keep, 20, what="events pruned to %d" % keep)
        finally:
            patch({"events_retention": {"max_events": 1000000}})
        return low_water()

    def test_list_and_watch_from_pruned_id_is_410(self):
        first = make_events(2)
        lw = self.prune_to(2)
        self.assertGreater(lw, first)
        # The newest event is always kept.
        self.assertEqual(int(harness.psql("SELECT count(*) FROM events WHERE id = %d" % max_event())), 1)
        err = self.assertError(request("GET", "/v1/events?since=%d" % first), 410, "expired", "since")
        self.assertIn("pruned", err["message"])
        self.assertError(request("GET", "/v1/events?since=%d" % (lw - 1)), 410, "expired")
        self.assertError(request("GET", "/v1/events?after=%d&limit=5" % (lw - 1)), 410, "expired")
        # From the mark itself, or later, nothing is missing: 200.
        st, _, page = request("GET", "/v1/events?since=%d" % lw)
        self.assertEqual(st, 200, page)
        self.assertTrue(all(e["id"] > lw for e in page["items"]))
        self.assertTrue(page["items"], "the events above the mark are kept")
        st, _, page = request("GET", "/v1/events?since=%d" % max_event())
        self.assertEqual((st, page["items"]), (200, []))
        # Without since: from the oldest kept event.
        st, _, page = request("GET", "/v1/events?limit=1")
        self.assertEqual(st, 200, page)
        self.assertGreater(page["items"][0]["id"], lw)
        # A filtered list from the mark is not 410 even when no event of
        # that type follows.
        st, _, page = request("GET", "/v1/events?since=%d&type=host.down" % lw)
        self.assertEqual((st, page["items"]), (200, []))
        # The watch: 410 with the JSON error, no stream.
        c = harness.cluster()
        s = c.sse("/v1/events?watch=true&since=%d" % first)
        self.assertEqual(s.status, 410, getattr(s, "body", ""))
        self.assertEqual(json.loads(s.body)["error"]["code"], "expired")
        s.close()
        s = c.sse("/v1/events?watch=true", headers={"Last-Event-ID": str(lw - 1)})
        self.assertEqual(s.status, 410)
        s.close()
        # From a current id: a stream, and the next event arrives.
        s = c.sse("/v1/events?watch=true&since=%d" % max_event())
        try:
            self.assertEqual(s.status, 200)
            top = make_events(1)
            ev, seen = s.wait_for(lambda e: e.get("id") and int(e["id"]) >= top, 10)
            self.assertIsNotNone(ev, seen)
        finally:
            s.close()
        # From the mark (older than the oldest kept one if ids were skipped):
        s = c.sse("/v1/events?watch=true&since=%d" % lw)
        try:
            self.assertEqual(s.status, 200)
            ev = s.next_event(10)
            self.assertIsNotNone(ev)
            self.assertGreater(int(ev["id"]), lw)
        finally:
            s.close()

    def test_pruning_goes_in_batches(self):
        # 12,000 old events: three statements of at most 5,000 rows each.
        harness.psql("INSERT INTO events (type, object, message) "
                     "SELECT 'controller.filler', 'controller', 'filler ' || g "
                     "FROM generate_series(1, 12000) g")
        top = max_event()
        log = harness.cluster().ctl_log
        before = read_log(log).count(b"pruned 5000 events")
        patch({"events_retention": {"max_events": 100}})
        try:
            poll(lambda: low_water() >= top - 100, 30, what="12,000 events pruned")
        finally:
            patch({"events_retention": {"max_events": 1000000}})
        self.assertGreaterEqual(read_log(log).count(b"pruned 5000 events") - before, 2)
        self.assertLessEqual(int(harness.psql("SELECT count(*) FROM events WHERE id > %d" % (top - 200))), 200)

    def test_age_retention(self):
        harness.psql("UPDATE events SET time = now() - interval '2 hours' "
                     "WHERE id <= (SELECT max(id) - 1 FROM events)")
        top = max_event()
        patch({"events_retention": {"max_age_seconds": 3600}})
        try:
            poll(lambda: low_water() >= top - 1, 20, what="old events pruned by age")
        finally:
            patch({"events_retention": {"max_age_seconds": 604800}})
        self.assertEqual(int(harness.psql("SELECT count(*) FROM events WHERE id = %d" % top)), 1)

    def test_a_controller_behind_the_mark_rereads(self):
        """A controller that did not read events before they were pruned
        re-reads its state (its cache would miss the service otherwise) and
        ends its live watches with an expired error event."""
        c = harness.cluster()
        other = c.spawn_controller(unique_name("behind"), reconcile=False)
        port = other.http_port

        def get(path):
            saved = c.http_port
            c.http_port = port
            try:
                return c.request("GET", path)
            finally:
                c.http_port = saved

        saved = c.http_port
        c.http_port = port
        watch = c.sse("/v1/events?watch=true")
        c.http_port = saved
        self.assertEqual(watch.status, 200)
        # cloudctl events -f on that controller: told in the stream.
        follower = None
        if CLOUDCTL:
            follower = subprocess.Popen(
                [CLOUDCTL, "events", "-f", "-o", "json"],
                env=cli_env(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.5)
        name = unique_name("hidden")
        os.kill(other.proc.pid, signal.SIGSTOP)
        try:
            # A service made while the controller sleeps, its event pruned
            # before it wakes up, and a newer event after it.
            harness.psql(
                "BEGIN; "
                "INSERT INTO services (id, name, image, vcpus, memory_mib, disk_gib, replicas) "
                "VALUES (cloud_new_id(), '%s', '%s', 1, 64, 0, 0); "
                "SELECT cloud_event('service.created', 'service', "
                "(SELECT id FROM services WHERE name = '%s'), '%s', 'made behind its back', 'test'); "
                "COMMIT;" % (name, IMAGE, name, name))
            make_events(2)
            harness.psql("UPDATE cluster_settings SET events_max_events = 1")
            try:
                harness.psql("SELECT cloud_events_prune(5000)")
            finally:
                harness.psql("UPDATE cluster_settings SET events_max_events = 1000000")
            make_events(1)
        finally:
            os.kill(other.proc.pid, signal.SIGCONT)
        try:
            poll(lambda: get("/v1/services/%s" % name)[0] == 200, 10,
                 what="the controller behind the mark to re-read its state")
            ev, seen = watch.wait_for(lambda e: e.get("event") == "error", 10)
            self.assertIsNotNone(ev, seen)
            self.assertEqual(ev["json"]["error"]["code"], "expired")
            self.assertIsNone(watch.next_event(5), "the stream ends after the error event")
            if follower:
                # Re-listed from now: the next event is printed.
                tok = unique_name("afterexp")
                self.assertEqual(request("POST", "/v1/tokens", {"name": tok, "role": "viewer"})[0], 201)
                line, deadline = "", time.monotonic() + 10
                while time.monotonic() < deadline and tok not in line:
                    line = follower.stdout.readline()
                self.assertIn(tok, line)
        finally:
            watch.close()
            if follower:
                follower.terminate()
                _, err = follower.communicate(timeout=10)
                self.assertIn("pruned by the controller (410 expired); re-listing from now", err)
            other.stop()
        request("DELETE", "/v1/services/%s" % name)

    def test_cloudctl_follow_relists_after_410(self):
        if not CLOUDCTL:
            self.skipTest("CLOUDCTL is not set")
        first = make_events(1)
        self.prune_to(1)
        p = subprocess.Popen([CLOUDCTL, "events", "-f", "--since", str(first), "-o", "json"],
                             env=cli_env(harness.cluster().http_port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)
            name = unique_name("after410")
            st, _, t = request("POST", "/v1/tokens", {"name": name, "role": "viewer"})
            self.assertEqual(st, 201, t)
            line = ""
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                line = p.stdout.readline()
                if name in line:
                    break
            self.assertIn(name, line, "cloudctl events -f did not go on after the 410")
            self.assertEqual(json.loads(line)["name"], name)
        finally:
            p.terminate()
            _, err = p.communicate(timeout=10)
        self.assertIn("pruned", err)
        self.assertIn("from now", err)


class QuotaTests(harness.TestCase):
    def with_quota(self, key, extra, fn):
        """Sets quotas.key to what exists now plus extra, runs fn, restores it."""
        used = int(harness.psql("SELECT used FROM quota_usage WHERE kind = '%s'" % key).strip())
        old = settings()["quotas"][key]
        patch({"quotas": {key: used + extra}})
        try:
            return fn()
        finally:
            patch({"quotas": {key: old}})

    def test_services_quota_and_race(self):
        def run():
            st, _, s = request("POST", "/v1/services", {"name": unique_name("q"), "image": IMAGE,
                                                       "replicas": 0})
            self.assertEqual(st, 201, s)
            err = self.assertError(request("POST", "/v1/services", {
                "name": unique_name("q"), "image": IMAGE, "replicas": 0}), 409, "quota",
                "quotas.services")
            self.assertIn("quotas.services", err["message"])
            request("DELETE", "/v1/services/%s" % s["name"])
        self.with_quota("services", 1, run)

    def test_race_for_the_last_slot(self):
        for _ in range(3):
            bodies = [{"name": unique_name("race"), "image": IMAGE, "replicas": 0}
                      for _ in range(2)]
            results = self.with_quota(
                "services", 1, lambda: harness.post_at_once("/v1/services", bodies))
            codes = sorted(r[0] for r in results)
            self.assertEqual(codes, [201, 409], [r[2] for r in results])
            for r in results:
                if r[0] == 201:
                    request("DELETE", "/v1/services/%s" % r[2]["name"])
                else:
                    self.assertEqual(r[2]["error"]["code"], "quota")

    def test_instances_race_through_the_bulk_path(self):
        # Eight creates at once are batched into one bulk INSERT by the
        # writer; with three slots left exactly three get in.
        results = self.with_quota("instances", 3, lambda: harness.post_at_once(
            "/v1/instances", [{"image": IMAGE}] * 8))
        codes = sorted(r[0] for r in results)
        self.assertEqual(codes, [201] * 3 + [409] * 5, [r[2] for r in results])
        for r in results:
            if r[0] == 201:
                request("DELETE", "/v1/instances/%s" % r[2]["id"])
            else:
                self.assertEqual((r[2]["error"]["code"], r[2]["error"]["field"]),
                                 ("quota", "quotas.instances"))

    def test_instances_quota(self):
        def run():
            st, _, i = request("POST", "/v1/instances", {"image": IMAGE})
            self.assertEqual(st, 201, i)
            self.assertError(request("POST", "/v1/instances", {"image": IMAGE}),
                             409, "quota", "quotas.instances")
            # Deleting frees the slot.
            st, _, _ = request("DELETE", "/v1/instances/%s" % i["id"])
            self.assertIn(st, (200, 202))
            st, _, j = request("POST", "/v1/instances", {"image": IMAGE})
            self.assertEqual(st, 201, j)
            request("DELETE", "/v1/instances/%s" % j["id"])
        self.with_quota("instances", 1, run)

    def test_tokens_quota(self):
        def run():
            st, _, t = request("POST", "/v1/tokens", {"name": unique_name("qt"), "role": "viewer"})
            self.assertEqual(st, 201, t)
            self.assertError(request("POST", "/v1/tokens", {"name": unique_name("qt"), "role": "viewer"}),
                             409, "quota", "quotas.tokens")
            request("DELETE", "/v1/tokens/%s" % t["name"])
            st, _, t = request("POST", "/v1/tokens", {"name": unique_name("qt"), "role": "viewer"})
            self.assertEqual(st, 201, t)
            request("DELETE", "/v1/tokens/%s" % t["name"])
        self.with_quota("tokens", 1, run)

    def test_images_quota(self):
        st, _, b = upload(self, os.urandom(2000))
        self.assertEqual(st, 201, b)

        def run():
            body = {"name": unique_name("qi"), "kind": "kernel", "kernel": b["digest"]}
            st, _, img = request("POST", "/v1/images", body)
            self.assertEqual(st, 201, img)
            self.assertError(request("POST", "/v1/images", dict(body, name=unique_name("qi"))),
                             409, "quota", "quotas.images")
            request("DELETE", "/v1/images/%s" % img["ref"])
        self.with_quota("images", 1, run)

    def test_blob_bytes_quota(self):
        def run():
            self.assertError(upload(self, os.urandom(5000)), 409, "quota", "quotas.blob_bytes")
            st, _, b = upload(self, os.urandom(900))
            self.assertEqual(st, 201, b)
        self.with_quota("blob_bytes", 1000, run)

    def test_upload_sessions_quota(self):
        old = settings()["quotas"]["upload_sessions"]
        patch({"quotas": {"upload_sessions": 1}})
        try:
            st, _, u = request("POST", "/v1/blobs/uploads")
            self.assertEqual(st, 202, u)
            self.assertError(request("POST", "/v1/blobs/uploads"), 409, "quota",
                             "quotas.upload_sessions")
            request("DELETE", "/v1/blobs/uploads/%s" % u["id"])
            st, _, u = request("POST", "/v1/blobs/uploads")
            self.assertEqual(st, 202, u)
            request("DELETE", "/v1/blobs/uploads/%s" % u["id"])
        finally:
            patch({"quotas": {"upload_sessions": old}})


class StorageTests(harness.TestCase):
    def test_507_when_the_reserve_is_not_free(self):
        # The reserve guards this replica's blob directory: a session's
        # chunks go to PostgreSQL, the blob's file is written by the PUT.
        old = settings()["blobs"]["min_free_bytes"]
        st, _, u = request("POST", "/v1/blobs/uploads")
        self.assertEqual(st, 202, u)
        data = os.urandom(100)
        path = "/v1/blobs/uploads/%s" % u["id"]
        finish = "%s?digest=sha256:%s" % (path, hashlib.sha256(data).hexdigest())
        patch({"blobs": {"min_free_bytes": 1 << 60}})
        try:
            err = self.assertError(request("POST", "/v1/blobs/uploads"), 507, "insufficient_storage")
            self.assertIn("min_free_bytes", err["message"])
            st, _, b = request("PATCH", path, body=data,
                               headers=dict(OCTET, **{"Upload-Offset": "0"}))
            self.assertEqual(st, 202, b)
            err = self.assertError(request("PUT", finish), 507, "insufficient_storage")
            self.assertIn("min_free_bytes", err["message"])
        finally:
            patch({"blobs": {"min_free_bytes": old}})
        # The session was kept: finished once the reserve is lowered.
        st, _, b = request("PUT", finish)
        self.assertEqual(st, 201, b)
        self.assertEqual(b["size"], 100)

    def test_gc_deletes_unreferenced_blobs_after_the_grace(self):
        st, _, kept = upload(self, os.urandom(3000))
        self.assertEqual(st, 201, kept)
        img = unique_name("gc")
        st, _, _ = request("POST", "/v1/images", {"name": img, "kind": "kernel", "kernel": kept["digest"]})
        self.assertEqual(st, 201)
        st, _, gone = upload(self, os.urandom(3000))
        self.assertEqual(st, 201, gone)
        # A file with no row (its upload refused, or collected elsewhere).
        orphan = "sha256:" + hashlib.sha256(b"orphan").hexdigest()
        with open(blob_file(orphan), "wb") as f:
            f.write(b"orphan")
        for d in (kept["digest"], gone["digest"]):
            self.assertTrue(os.path.exists(blob_file(d)))
        old = settings()["blobs"]["gc_grace_seconds"]
        patch({"blobs": {"gc_grace_seconds": 3}})
        try:
            def collected():
                row = harness.psql("SELECT count(*) FROM blobs WHERE digest = '%s'" % gone["digest"])
                return int(row) == 0 and not os.path.exists(blob_file(gone["digest"])) \
                    and not os.path.exists(blob_file(orphan))
            poll(collected, 30, what="the unreferenced blob collected")
        finally:
            patch({"blobs": {"gc_grace_seconds": old}})
        self.assertEqual(int(harness.psql("SELECT count(*) FROM blobs WHERE digest = '%s'"
                                          % kept["digest"])), 1)
        self.assertTrue(os.path.exists(blob_file(kept["digest"])))
        # An image naming the collected blob is refused; the kept one works.
        self.assertError(request("POST", "/v1/images", {"name": unique_name("gc"), "kind": "kernel",
                                                       "kernel": gone["digest"]}), 422, "invalid")
        request("DELETE", "/v1/images/%s:latest" % img)

    def test_gc_waits_for_an_image_create_in_flight(self):
        """An image create that holds the event lock and references an old
        unreferenced blob: GC waits for it and keeps the blob and its file."""
        st, _, b = upload(self, os.urandom(2500))
        self.assertEqual(st, 201, b)
        st, _, other = upload(self, os.urandom(2500))
        self.assertEqual(st, 201, other)
        for d in (b["digest"], other["digest"]):
            harness.psql("UPDATE blobs SET created_at = now() - interval '1 hour' "
                         "WHERE digest = '%s'" % d)
            past = time.time() - 3600
            os.utime(blob_file(d), (past, past))
        name = unique_name("inflight")
        done = []

        def create_slowly():
            harness.psql(
                "BEGIN; SELECT pg_advisory_xact_lock(726200101); "
                "INSERT INTO images (id, name, tag, kind, kernel_digest, size) "
                "VALUES (cloud_new_id(), '%s', 'latest', 'kernel', '%s', 2500); "
                "SELECT pg_sleep(5); COMMIT;" % (name, b["digest"]))
            done.append(True)
        t = threading.Thread(target=create_slowly)
        t.start()
        time.sleep(0.5)
        old = settings()["blobs"]["gc_grace_seconds"]
        patch({"blobs": {"gc_grace_seconds": 2}})
        try:
            t.join(30)
            self.assertEqual(done, [True])
            poll(lambda: int(harness.psql("SELECT count(*) FROM blobs WHERE digest = '%s'"
                                          % other["digest"])) == 0, 20,
                 what="GC to run after the create committed")
        finally:
            patch({"blobs": {"gc_grace_seconds": old}})
        self.assertEqual(int(harness.psql("SELECT count(*) FROM blobs WHERE digest = '%s'"
                                          % b["digest"])), 1)
        self.assertTrue(os.path.exists(blob_file(b["digest"])))
        self.assertFalse(os.path.exists(blob_file(other["digest"])))
        request("DELETE", "/v1/images/%s:latest" % name)
