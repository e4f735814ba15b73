"""The lease and heartbeats under load (docs/decisions.md §21).

A loaded leader must not lose its lease to its own work, and healthy hosts
must not look silent while bulk work runs. Load is made the way it arises:
a transaction that holds the event lock and has passed the leader's fence
(as a long `cloud_reconcile` batch does), with API writes queued behind it
on every connection of the controller's main pool. The controller renews
its lease on its own connection and heartbeats take no event lock, so for
three lease lengths the epoch stays, the lease stays live and the agent's
host keeps its heartbeat fresh.

The fence still holds: a controller that takes over an expired lease waits
for every transaction of the old epoch that passed the fence.
"""

import subprocess
import threading
import time
import unittest

import agentlib
import harness
from harness import poll, psql, request, unique_name

LEASE = 3  # seconds
HOST = "lease-hv"
AGENT = None


def setUpModule():
    global AGENT
    AGENT = agentlib.start_with_agent(
        HOST, controller_args=["--lease-seconds", str(LEASE), "--db-pool", "2"])
    poll(lambda: psql("SELECT holder FROM leader_lease WHERE expires_at > now()"), 20,
         what="a leader")


def tearDownModule():
    agentlib.stop_with_agent(AGENT)


class Session:
    """One psql session held open: statements are sent one by one."""

    def __init__(self):
        c = harness.cluster()
        argv = [harness.PG_BINDIR + "/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(c.pg_port), "-U", harness.PG_USER, "-d", "cloud"]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)

    def send(self, sql):
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()

    def sync(self, marker, timeout=20):
        """Waits until every statement sent so far has run."""
        self.send("SELECT '%s';" % marker)
        deadline = time.monotonic() + timeout
        out = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if line.strip() == marker:
                return "".join(out)
        raise harness.HarnessError("psql session: no %r within %d s: %s"
                                   % (marker, timeout, "".join(out)))

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=20)


def lease():
    holder, epoch, live = psql("SELECT holder, epoch, expires_at > now() FROM leader_lease"
                               ).split("|")
    return holder, int(epoch), live == "t"


def last_seen_ms():
    return int(psql("SELECT cloud_ms(last_seen) FROM hosts WHERE name = '%s'" % HOST))


class LeaseUnderLoad(harness.TestCase):
    def test_a_lease_and_heartbeats_outlast_bulk_work(self):
        holder, epoch, live = lease()
        self.assertTrue(live)
        s = Session()
        writers = []
        try:
            # A reconciler-like batch: the event lock, the fence, then work.
            s.send("BEGIN;")
            s.send("SELECT pg_advisory_xact_lock(726200101);")
            s.send("SELECT cloud_lease_check(%d);" % epoch)
            s.sync("fenced")
            # API writes queue behind it on both connections of the pool.
            for _ in range(4):
                t = threading.Thread(target=request, daemon=True,
                                     args=("POST", "/v1/services",
                                           {"name": unique_name("q"), "image": "hello:latest",
                                            "replicas": 0}),
                                     kwargs={"timeout": 60})
                t.start()
                writers.append(t)
            time.sleep(0.5)
            seen0 = last_seen_ms()
            end = time.monotonic() + 3 * LEASE
            while time.monotonic() < end:
                h, e, live = lease()
                self.assertEqual((h, e), (holder, epoch), "the lease moved under load")
                self.assertTrue(live, "the lease lapsed while bulk work held the event lock")
                time.sleep(0.2)
            seen1 = last_seen_ms()
            # heartbeats every 2 s: at least two landed in 3 lease lengths
            self.assertGreaterEqual(seen1 - seen0, 2000,
                                    "host heartbeats stalled behind bulk work")
            self.assertEqual(psql("SELECT state FROM hosts WHERE name = '%s'" % HOST), "ready")
            s.send("COMMIT;")
            s.sync("committed")
        finally:
            s.close()
            for t in writers:
                t.join(60)
        # the queued writes went through once the batch committed
        log = harness.cluster().controller_log_tail(400)
        self.assertNotIn("no longer the leader", log)
        self.assertNotIn("lease renewal failed", log)
        self.assertEqual(lease()[:2], (holder, epoch))

    def test_b_takeover_waits_for_fenced_work_of_the_old_epoch(self):
        c = harness.cluster()
        holder, epoch, _ = lease()
        s = Session()
        other = None
        try:
            s.send("BEGIN;")
            s.send("SELECT cloud_lease_check(%d);" % epoch)
            s.sync("fenced")
            c.kill_controller()
            other = c.spawn_controller("b", ["--lease-seconds", str(LEASE)])
            # the old lease ends; the other controller must still wait
            time.sleep(LEASE + 2 * LEASE)
            self.assertEqual(lease()[:2], (holder, epoch),
                             "a takeover did not wait for work the old epoch had fenced")
            s.send("COMMIT;")
            s.sync("committed")
            new = poll(lambda: (lambda r: r if r[0] != holder and r[2] else None)(lease()),
                       LEASE + 10, what="the takeover once the fenced work committed")
            self.assertEqual(new[1], epoch + 1)
            self.assertIn("-%d-" % other.pid, new[0])
        finally:
            s.close()
            if other:
                other.stop()
            c.start_controller()


class MirrorKept(harness.TestCase):
    def test_c_leading_again_keeps_the_mirror(self):
        c = harness.cluster()
        poll(lambda: lease()[2] and "-%d-" % c.proc.pid in lease()[0], 20,
             what="the restarted controller leads")
        agentlib.wait_host_ready(HOST, what="the agent back")
        st, _, one = request("POST", "/v1/instances", {"image": "hello:latest"})
        self.assertEqual(st, 201, one)
        agentlib.wait_instance(one["id"], lambda i: i["state"] == "running", "running")
        _, epoch, _ = lease()
        # The lease lapses under the leader (as when renewals are late): it
        # takes its own lease again with a new epoch, and keeps its mirror.
        # (A reconciler write fenced at the old epoch may end the term first;
        # the takeover that follows can then be epoch + 2.)
        psql("UPDATE leader_lease SET expires_at = now() - interval '1 second'")
        poll(lambda: lease()[1] > epoch and lease()[2], 10, what="a new epoch")
        poll(lambda: "epoch %d) with the mirror kept" % lease()[1]
             in c.controller_log_tail(200), 10, what="the mirror kept")
        self.assertNotIn("reconciling as the leader (epoch %d)\"" % lease()[1],
                         c.controller_log_tail(200),
                         "the new term reloaded the mirror")
        # and it reconciles from it: a new instance runs, the old one stays
        st, _, two = request("POST", "/v1/instances", {"image": "hello:latest"})
        self.assertEqual(st, 201, two)
        agentlib.wait_instance(two["id"], lambda i: i["state"] == "running", "running")
        self.assertEqual(agentlib.instance(one["id"])["state"], "running")
        for i in (one, two):
            request("DELETE", "/v1/instances/%s" % i["id"])


if __name__ == "__main__":
    unittest.main()
