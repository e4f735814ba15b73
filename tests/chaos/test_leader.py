"""Chaos: the leader dies or freezes in the middle of a scale-up.

Issue 14, chaos suite items 1 and 2 (docs/ha.md "Chaos suite"). Each test
runs its own cluster (chaoslib.LeaderChaos): a gateway controller that never
leads, two reconciling replicas on a 3 s lease, 20 simulated hosts that take
2 s to report an instance running, and checks invariants afterwards, not
only that the service came up:
  - every ordinal exactly once, all running;
  - no instance reached two hosts, none ran where it was not placed, and no
    instance ran and was dropped again (a duplicate cleaned up later);
  - the frozen leader, once continued, wrote nothing: no event of its actor
    after its successor took the lease, and it says it stepped down.
"""

import os
import signal
import time
import unittest

import chaoslib
from chaoslib import LEASE, poll, rows

import harness

N = int(os.environ.get("CHAOS_N", "1000"))


def created(svc):
    return int(harness.psql("SELECT count(*) FROM instances WHERE service_id = "
                            "(SELECT id FROM services WHERE name = '%s')" % svc))


def running(svc):
    return int(harness.psql("SELECT count(*) FROM instances WHERE state = 'running' AND "
                            "service_id = (SELECT id FROM services WHERE name = '%s')" % svc))


class LeaderChaosTest(unittest.TestCase):
    def setUp(self):
        self.lc = chaoslib.LeaderChaos(hosts=20, replicas=2, start_delay_ms=2000).start()
        self.addCleanup(self.lc.stop)
        st, _, body = harness.request("POST", "/v1/services", {
            "name": "chaos", "image": "hello:latest", "replicas": 0,
            "resources": {"vcpus": 1, "memory_mib": 64}})
        self.assertEqual(st, 201, body)

    def scale_and_catch(self, n):
        """Scales the service to n and returns once the leader has made some
        of the instances (and before any runs: the hosts take 2 s)."""
        st, _, body = harness.request("PATCH", "/v1/services/chaos", {"replicas": n})
        self.assertEqual(st, 200, body)
        poll(lambda: created("chaos") > 0, 10, interval=0.01, what="the first instance")

    def wait_all_running(self, n, timeout=120):
        poll(lambda: running("chaos") == n and created("chaos") == n, timeout,
             interval=0.5, what="%d running" % n)

    def test_kill9_leader_mid_scale(self):
        name, r, holder, epoch = self.lc.leader()
        t0 = time.monotonic()
        self.scale_and_catch(N)
        r.kill(signal.SIGKILL)
        at_kill = (created("chaos"), running("chaos"))
        self.assertLess(at_kill[1], N, "the leader was killed after the scale-up")
        _, r2, holder2, epoch2 = self.lc.leader(timeout=LEASE + 10, other_than=holder)
        self.assertGreater(epoch2, epoch)
        t_lead = time.monotonic() - t0
        self.wait_all_running(N)
        t_all = time.monotonic() - t0
        print("\nchaos: leader %s killed with %d made, %d running; %s led at %.1f s, "
              "all %d running at %.1f s" % (name, at_kill[0], at_kill[1], holder2, t_lead,
                                           N, t_all))
        self.lc.check_exactly_once(self, "chaos", N)

    def test_sigstop_leader_past_its_lease(self):
        name, r, holder, epoch = self.lc.leader()
        n = N // 2
        self.scale_and_catch(n)
        r.proc.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        _, r2, holder2, epoch2 = self.lc.leader(timeout=LEASE + 10, other_than=holder)
        self.assertEqual(epoch2, epoch + 1)
        took = rows("SELECT max(id) FROM events")[0][0]
        self.wait_all_running(n)
        # frozen well past its lease, then continued
        time.sleep(max(0.0, 2 * LEASE - (time.monotonic() - stopped)))
        r.proc.send_signal(signal.SIGCONT)
        poll(lambda: "no longer the leader (epoch %d)" % epoch in r.log_tail(200), 15,
             what="the continued leader to step down")
        # let anything it had queued reach the database, then look
        time.sleep(LEASE)
        late = rows("SELECT id, type, object_id FROM events WHERE id > %s AND actor = '%s'"
                    % (took, "reconciler/" + holder))
        self.assertEqual(late, [], "events of the stale leader after the takeover")
        self.assertEqual(self.lc.lease()[0], holder2, "the successor still leads")
        self.assertIsNone(r.proc.poll(), "the stale replica exited")
        self.lc.check_exactly_once(self, "chaos", n)
        # and it is a follower now: the successor still acts alone
        since = rows("SELECT max(id) FROM events")[0][0]
        st, _, body = harness.request("PATCH", "/v1/services/chaos", {"replicas": n + 10})
        self.assertEqual(st, 200, body)
        self.wait_all_running(n + 10)
        actors = {a[0] for a in rows("SELECT DISTINCT actor FROM events WHERE id > %s AND "
                                     "actor LIKE 'reconciler/%%'" % since)}
        self.assertEqual(actors, {"reconciler/" + holder2})


if __name__ == "__main__":
    unittest.main()
