"""Image blobs stored in PostgreSQL, any replica serves any blob (issue 14).

Three controllers on one PostgreSQL, each with its own --data-dir: the
cluster's (the leader, it schedules), replica A (API only) and replica B
(API and an agent gateway, its certificate from the cluster's CA). One
cloud-agent on libvirt's test:///default driver with a --cache-dir (so it
fetches blobs) is connected to B only. What a user relies on
(docs/decisions.md §29):

- a blob uploaded through A and acknowledged (201) survives A's kill -9
  and the loss of A's data directory: B serves it on GET (same bytes, same
  digest) and an agent connected to B pulls it for an instance, B filling
  its cache from PostgreSQL; a fill that would eat into the free-space
  reserve (blobs.min_free_bytes) is 507 and writes nothing;
- an upload whose client leaves while its chunks are being written leaves
  no blob row and no chunk row, and neither does a replica killed -9 in
  the middle of that transaction;
- blob GC deletes the chunk rows with the blob row;
- an upload session is the cluster's (docs/decisions.md §32): its POST,
  PATCHes and PUT may each land on another replica, also after the
  replica that began it was killed -9; an Upload-Offset that is not the
  session's is refused whichever replica it reaches, a cancel through any
  replica deletes its rows, and quotas.upload_sessions counts the
  sessions of the whole cluster.
"""

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import unittest

import agentlib
import harness
from harness import poll, request, unique_name
from test_blobfetch import upload

CLUSTER = None
A = None
B = None
AGENT = None
CACHE = None
MIB = 1024 * 1024


def setUpModule():
    global CLUSTER, A, B, AGENT, CACHE
    CLUSTER = harness.start(reconcile=True)
    A = CLUSTER.spawn_controller("a", reconcile=False)
    B = CLUSTER.spawn_controller("b", reconcile=False, agent_listen=True)
    CACHE = os.path.join(CLUSTER.tmp, "agents", "ha1", "cache")
    AGENT = agentlib.Agent(CLUSTER, "ha1", cap_vcpus=16, cap_memory=16384,
                           controllers=["127.0.0.1:%d" % B.agent_port],
                           extra=["--cache-dir", CACHE]).start()
    agentlib.wait_host_ready("ha1", what="host ha1 ready (through replica b)")


def tearDownModule():
    if AGENT:
        AGENT.stop()
    harness.stop()


def pieces(n, piece=500000):
    """How many chunk rows an upload of n bytes in PATCHes of piece bytes
    leaves: each PATCH's piece becomes one chunk."""
    return -(-n // piece)


def session_rows(sid):
    return int(harness.psql("SELECT (SELECT count(*) FROM upload_sessions WHERE id = '%s') + "
                            "(SELECT count(*) FROM upload_pieces WHERE session = '%s')"
                            % (sid, sid)))


def patch_piece(path, off, piece, port):
    return request("PATCH", path, body=piece, port=port,
                   headers={"Content-Type": "application/octet-stream",
                            "Upload-Offset": str(off)})


def a_running():
    """Replica A, started again if an earlier test killed it."""
    if A.proc.poll() is not None:
        A.respawn()
    return A


def chunk_rows(digest):
    return int(harness.psql("SELECT count(*) FROM blob_chunks WHERE digest = '%s'" % digest))


def blob_rows(digest):
    return int(harness.psql("SELECT count(*) FROM blobs WHERE digest = '%s'" % digest))


def run_image(tc, digest, prefix):
    """An image of the kernel blob digest and an instance of it, running on
    the agent (which pulls the blob); returns the instance."""
    name = unique_name(prefix).lower()
    st, _, img = request("POST", "/v1/images", {"name": name, "tag": "v1", "kind": "kernel",
                                                "kernel": digest})
    tc.assertEqual(st, 201, img)
    st, _, inst = request("POST", "/v1/instances", {
        "image": name + ":v1", "name": unique_name(prefix + "i"), "restart": "never",
        "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
    tc.assertEqual(st, 201, inst)

    def running():
        st, _, i = request("GET", "/v1/instances/" + inst["id"])
        return i if st == 200 and i["state"] in ("running", "failed") else None
    got = poll(running, 60, what="instance %s running" % inst["id"])
    tc.assertEqual(got["state"], "running", got)
    return inst


def log_of(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


@contextlib.contextmanager
def finish_held(ctl, path, digest):
    """Sends the PUT that finishes upload path on controller ctl while a
    SHARE lock taken in psql holds the chunk inserts back, so the body of
    the with-block runs before the commit; yields the client's socket.
    On the way out the lock is released and the upload's transaction has
    ended (no session idle in a transaction)."""
    locker = subprocess.Popen(
        [os.path.join(harness.PG_BINDIR, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
         "-h", "127.0.0.1", "-p", str(CLUSTER.pg_port), "-U", harness.PG_USER, "-d", "cloud",
         "-c", "BEGIN; LOCK TABLE blob_chunks IN SHARE MODE; SELECT pg_sleep(3); COMMIT;"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    s = None
    try:
        poll(lambda: int(harness.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'blob_chunks' AND l.mode = 'ShareLock' AND l.granted")) == 1,
             10, what="the SHARE lock on blob_chunks")
        s = socket.create_connection(("127.0.0.1", ctl.http_port), timeout=5)
        s.sendall(("PUT %s?digest=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Content-Length: 0\r\n\r\n" % (path, digest, CLUSTER.token)).encode())
        poll(lambda: int(harness.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND query LIKE '%blob_chunk%'")) >= 1,
             10, what="the first chunk insert waiting on the lock")
        yield s
    finally:
        if s is not None:
            s.close()
        _, err = locker.communicate(timeout=30)
    if locker.returncode != 0:
        raise AssertionError("the psql holding the lock failed: %s" % err.decode(errors="replace"))
    poll(lambda: int(harness.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' "
        "OR (wait_event_type = 'Lock' AND query LIKE '%blob_chunk%')")) == 0,
         15, what="the upload's transaction ended")


class BlobsInPostgres(harness.TestCase):
    def test_1_a_replica_lost_after_the_upload_loses_nothing(self):
        api_data = os.urandom(3 * MIB + 123)
        agent_data = os.urandom(2 * MIB + 7)
        api_digest = upload(self, api_data, port=A.http_port)
        agent_digest = upload(self, agent_data, port=A.http_port)
        # Acknowledged means committed: every chunk is there already.
        self.assertEqual(chunk_rows(api_digest), pieces(len(api_data)))
        self.assertEqual(chunk_rows(agent_digest), pieces(len(agent_data)))
        self.assertTrue(os.path.exists(os.path.join(A.data_dir, "blobs", "sha256", api_digest[7:])))
        A.kill(signal.SIGKILL)
        shutil.rmtree(A.data_dir)

        # B never saw either blob: GET fills its cache from PostgreSQL.
        b_file = os.path.join(B.data_dir, "blobs", "sha256", api_digest[7:])
        self.assertFalse(os.path.exists(b_file))
        st, hdrs, body = request("GET", "/v1/blobs/" + api_digest, port=B.http_port, binary=True)
        self.assertEqual(st, 200, body[:300])
        self.assertEqual(hdrs.get("Docker-Content-Digest"), api_digest)
        self.assertEqual(len(body), len(api_data))
        self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), api_digest)
        self.assertEqual(body, api_data)
        self.assertTrue(os.path.exists(b_file))
        self.assertEqual(log_of(B.log).count("blob %s (%d bytes) cached from PostgreSQL"
                                             % (api_digest, len(api_data))), 1)
        # A second read is served from B's cache, not filled again.
        st, _, body2 = request("GET", "/v1/blobs/" + api_digest, port=B.http_port)
        self.assertEqual(st, 200)
        self.assertEqual(log_of(B.log).count("cached from PostgreSQL"), 1)

        # The agent connected to B pulls the other blob through B's gateway.
        inst = run_image(self, agent_digest, "ha")
        with open(os.path.join(CACHE, agent_digest), "rb") as f:
            cached = f.read()
        self.assertEqual(cached, agent_data)
        blog = log_of(B.log)
        self.assertIn("blob %s (%d bytes) cached from PostgreSQL" % (agent_digest, len(agent_data)),
                      blog)
        self.assertIn("blob %s sent" % agent_digest, blog)
        st, _, _ = request("DELETE", "/v1/instances/" + inst["id"])
        self.assertIn(st, (200, 202))

        # A fill keeps the free-space reserve: the cluster's controller has
        # no copy of the first blob; with the reserve above the free space
        # its GET is 507 and leaves no file, then 200 once it is lowered.
        mine = os.path.join(CLUSTER.tmp, "ctl", "blobs", "sha256", api_digest[7:])
        self.assertFalse(os.path.exists(mine))
        st, _, s = request("GET", "/v1/cluster/settings")
        old = s["blobs"]["min_free_bytes"]
        st, _, s = request("PATCH", "/v1/cluster/settings", {"blobs": {"min_free_bytes": 1 << 60}})
        self.assertEqual(st, 200, s)
        try:
            def refused():
                st, _, b = request("GET", "/v1/blobs/" + api_digest)
                return b if st == 507 else None
            err = poll(refused, 10, what="507 for a fill past the reserve")
            self.assertEqual(err["error"]["code"], "insufficient_storage")
            self.assertIn("min_free_bytes", err["error"]["message"])
            self.assertFalse(os.path.exists(mine))
        finally:
            request("PATCH", "/v1/cluster/settings", {"blobs": {"min_free_bytes": old}})
        poll(lambda: request("GET", "/v1/blobs/" + api_digest, binary=True)[2] == api_data, 10,
             what="the blob through the cluster's controller once the reserve is lowered")
        self.assertTrue(os.path.exists(mine))

    def test_2_an_upload_whose_client_leaves_before_the_commit_leaves_nothing(self):
        data = os.urandom(3 * MIB)
        path, digest = upload(self, data, port=B.http_port, finish=False)
        with finish_held(B, path, digest) as s:
            s.close()
            try:
                poll(lambda: "upload of blob %s: the client left before the commit" % digest
                     in log_of(B.log), 10, what="the controller seeing the client leave")
            except AssertionError:
                print(B.log_tail(30))
                raise
        self.assertEqual(blob_rows(digest), 0)
        self.assertEqual(chunk_rows(digest), 0)
        # B still takes uploads (its blob connections are back in the pool).
        again = upload(self, data, port=B.http_port)
        self.assertEqual(again, digest)
        self.assertEqual(chunk_rows(digest), pieces(len(data)))

    def test_3_gc_deletes_the_chunk_rows(self):
        data = os.urandom(MIB + 1)
        digest = upload(self, data)
        self.assertEqual(chunk_rows(digest), pieces(len(data)))
        st, _, s = request("GET", "/v1/cluster/settings")
        self.assertEqual(st, 200, s)
        old = s["blobs"]["gc_grace_seconds"]
        st, _, s = request("PATCH", "/v1/cluster/settings", {"blobs": {"gc_grace_seconds": 2}})
        self.assertEqual(st, 200, s)
        try:
            poll(lambda: blob_rows(digest) == 0, 30, what="blob %s collected" % digest)
        finally:
            request("PATCH", "/v1/cluster/settings", {"blobs": {"gc_grace_seconds": old}})
        self.assertEqual(chunk_rows(digest), 0)
        # Collected means gone everywhere: no replica serves it (a cache
        # file goes with the row, once older than the grace).
        for port in (None, B.http_port):
            poll(lambda: request("GET", "/v1/blobs/" + digest, port=port)[0] == 404, 10,
                 what="blob %s gone from the controller on port %s" % (digest, port))

    def test_4_a_replica_killed_before_the_commit_leaves_nothing(self):
        c = CLUSTER.spawn_controller("c", reconcile=False)
        data = os.urandom(2 * MIB)
        path, digest = upload(self, data, port=c.http_port, finish=False)
        with finish_held(c, path, digest):
            c.kill(signal.SIGKILL)
        self.assertEqual(blob_rows(digest), 0)
        self.assertEqual(chunk_rows(digest), 0)

    def test_5_an_upload_alternating_between_replicas(self):
        a = a_running()
        # Pieces of two sizes: chunks of a blob need not be equal.
        data = os.urandom(5 * MIB + 11)
        sizes = [700000, 300001]
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        st, _, u = request("POST", "/v1/blobs/uploads", port=a.http_port)
        self.assertEqual(st, 202, u)
        path = "/v1/blobs/uploads/" + u["id"]
        ports = [B.http_port, a.http_port]
        off, n = 0, 0
        while off < len(data):
            piece = data[off:off + sizes[n % 2]]
            st, hdrs, b = patch_piece(path, off, piece, ports[n % 2])
            self.assertEqual(st, 202, b)
            self.assertEqual(b["offset"], off + len(piece))
            self.assertEqual(hdrs.get("Upload-Offset"), str(off + len(piece)))
            off += len(piece)
            n += 1
        self.assertGreater(n, 4)
        st, _, b = request("PUT", "%s?digest=%s" % (path, digest), port=B.http_port)
        self.assertEqual(st, 201, b)
        self.assertEqual(b, {"digest": digest, "size": len(data)})
        self.assertEqual(session_rows(u["id"]), 0)
        self.assertEqual(chunk_rows(digest), n)
        for port in (a.http_port, B.http_port, None):
            st, _, body = request("GET", "/v1/blobs/" + digest, port=port, binary=True)
            self.assertEqual(st, 200, body[:300])
            self.assertEqual(body, data)
        # Pullable by the agent (connected to B).
        inst = run_image(self, digest, "hu")
        with open(os.path.join(CACHE, digest), "rb") as f:
            self.assertEqual(f.read(), data)
        st, _, _ = request("DELETE", "/v1/instances/" + inst["id"])
        self.assertIn(st, (200, 202))

    def test_6_a_replica_killed_in_the_middle_of_a_session(self):
        a = a_running()
        data = os.urandom(3 * MIB + 5)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        st, _, u = request("POST", "/v1/blobs/uploads", port=a.http_port)
        self.assertEqual(st, 202, u)
        path = "/v1/blobs/uploads/" + u["id"]
        half = 1500000
        for off in range(0, half, 500000):
            st, _, b = patch_piece(path, off, data[off:off + 500000], a.http_port)
            self.assertEqual(st, 202, b)
        a.kill(signal.SIGKILL)
        # The client goes on through B where it was.
        for off in range(half, len(data), 500000):
            st, _, b = patch_piece(path, off, data[off:off + 500000], B.http_port)
            self.assertEqual(st, 202, b)
        st, _, b = request("PUT", "%s?digest=%s" % (path, digest), port=B.http_port)
        self.assertEqual(st, 201, b)
        self.assertEqual(session_rows(u["id"]), 0)
        st, _, body = request("GET", "/v1/blobs/" + digest, binary=True)
        self.assertEqual(st, 200, body[:300])
        self.assertEqual(body, data)
        a_running()

    def test_7_offsets_cancel_and_digest_through_the_other_replica(self):
        a = a_running()
        st, _, u = request("POST", "/v1/blobs/uploads", port=a.http_port)
        self.assertEqual(st, 202, u)
        path = "/v1/blobs/uploads/" + u["id"]
        first = os.urandom(1000)
        st, h, b = patch_piece(path, 0, first, a.http_port)
        self.assertEqual(st, 202, b)
        # B knows where the session is: offset 0 again is refused.
        st, h, b = patch_piece(path, 0, os.urandom(10), B.http_port)
        self.assertError((st, h, b), 409, "conflict", "Upload-Offset")
        self.assertIn("is at offset 1000, not 0", b["error"]["message"])
        st, h, b = patch_piece(path, 1000, os.urandom(10), B.http_port)
        self.assertEqual(st, 202, b)
        self.assertEqual(b["offset"], 1010)
        # An empty chunk stores nothing and keeps the offset.
        st, h, b = patch_piece(path, 1010, b"", a.http_port)
        self.assertEqual(st, 202, b)
        self.assertEqual(b["offset"], 1010)
        # A session unknown everywhere is 404 on every replica.
        for port in (a.http_port, B.http_port):
            st, h, b = patch_piece("/v1/blobs/uploads/" + "0" * 32, 0, b"x", port)
            self.assertError((st, h, b), 404, "not_found")
        # Cancel through B: the rows go, and A no longer knows it.
        self.assertEqual(session_rows(u["id"]), 3)
        st, h, b = request("DELETE", path, port=B.http_port)
        self.assertEqual(st, 200, b)
        self.assertEqual(session_rows(u["id"]), 0)
        st, h, b = patch_piece(path, 1010, b"x", a.http_port)
        self.assertError((st, h, b), 404, "not_found")
        st, h, b = request("DELETE", path, port=a.http_port)
        self.assertError((st, h, b), 404, "not_found")
        # A wrong digest declared on B discards the session A began.
        st, _, u = request("POST", "/v1/blobs/uploads", port=a.http_port)
        self.assertEqual(st, 202, u)
        path = "/v1/blobs/uploads/" + u["id"]
        st, h, b = patch_piece(path, 0, first, a.http_port)
        self.assertEqual(st, 202, b)
        st, h, b = request("PUT", "%s?digest=sha256:%s" % (path, "0" * 64), port=B.http_port)
        self.assertError((st, h, b), 422, "invalid", "digest")
        self.assertIn("sha256:" + hashlib.sha256(first).hexdigest(), b["error"]["message"])
        poll(lambda: session_rows(u["id"]) == 0, 10, what="the mismatched session discarded")

    def test_8_the_session_quota_is_the_clusters(self):
        a = a_running()
        st, _, s = request("GET", "/v1/cluster/settings")
        old = s["quotas"]["upload_sessions"]
        # Sessions earlier tests left open count too.
        quota = int(harness.psql("SELECT count(*) FROM upload_sessions")) + 2
        st, _, s = request("PATCH", "/v1/cluster/settings", {"quotas": {"upload_sessions": quota}})
        self.assertEqual(st, 200, s)
        ids = []
        try:
            for port in (a.http_port, B.http_port):
                st, _, u = request("POST", "/v1/blobs/uploads", port=port)
                self.assertEqual(st, 202, u)
                ids.append(u["id"])
            for port in (None, a.http_port, B.http_port):
                st, h, b = request("POST", "/v1/blobs/uploads", port=port)
                self.assertError((st, h, b), 409, "quota", "quotas.upload_sessions")
                self.assertIn("%d uploads are in progress in the cluster, the quota is %d"
                              % (quota, quota), b["error"]["message"])
            # Cancelled on B, the session A began frees a place for A.
            st, h, b = request("DELETE", "/v1/blobs/uploads/" + ids.pop(0), port=B.http_port)
            self.assertEqual(st, 200, b)
            st, _, u = request("POST", "/v1/blobs/uploads", port=a.http_port)
            self.assertEqual(st, 202, u)
            ids.append(u["id"])
            # A session idle for 10 minutes no longer counts, and the
            # replicas' sweep (every minute, on each) deletes it.
            idle = ids.pop(0)
            harness.psql("UPDATE upload_sessions SET updated_at = now() - interval '11 minutes' "
                         "WHERE id = '%s'" % idle)
            st, _, u = request("POST", "/v1/blobs/uploads", port=B.http_port)
            self.assertEqual(st, 202, u)
            ids.append(u["id"])
            poll(lambda: session_rows(idle) == 0, 70, what="the idle session swept")
            line = "upload %s abandoned after 0 bytes" % idle
            self.assertTrue(any(line in log_of(p) for p in (A.log, B.log, CLUSTER.ctl_log)))
        finally:
            for sid in ids:
                request("DELETE", "/v1/blobs/uploads/" + sid)
            request("PATCH", "/v1/cluster/settings", {"quotas": {"upload_sessions": old}})


if __name__ == "__main__":
    unittest.main()
