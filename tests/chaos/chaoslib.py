"""Shared set-up of the chaos suite (ctest label `chaos`, docs/ha.md).

A cluster for leader chaos: one PostgreSQL, a gateway controller that never
leads (--no-reconcile, so killing a leader never cuts the hosts off), two or
more reconciling replicas on a short lease, and simulated hosts
(bench/cloud-hollow, one process, each host its own certificate and mTLS
session) whose --arrivals file says which instance first reached which host
wanted running (R) or gone (D).
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))

import agentlib  # noqa: E402
import harness  # noqa: E402
from harness import poll  # noqa: E402,F401

HOLLOW_BIN = os.environ.get("CLOUD_HOLLOW")
LEASE = 3  # seconds: --lease-seconds of the reconciling replicas


def rows(sql):
    return [line.split("|") for line in harness.psql(sql).splitlines() if line]


class LeaderChaos:
    """The cluster above. `replicas` reconciling controllers named r0, r1..."""

    def __init__(self, hosts=20, replicas=2, vcpus=64, start_delay_ms=0):
        if not HOLLOW_BIN or not os.access(HOLLOW_BIN, os.X_OK):
            raise harness.HarnessError("CLOUD_HOLLOW must name the cloud-hollow binary")
        self.nhosts, self.nreplicas = hosts, replicas
        self.vcpus, self.start_delay_ms = vcpus, start_delay_ms
        self.c = None
        self.replicas = {}
        self.hollow = None
        self.arrivals = None

    def start(self):
        self.c = harness.start(reconcile=False)
        try:
            self.c.add_image("hello")
            for i in range(self.nreplicas):
                self.spawn("r%d" % i)
            self._start_hollow()
        except BaseException:
            self.stop()
            raise
        return self

    def spawn(self, name):
        r = self.c.spawn_controller(name, ["--lease-seconds", str(LEASE)])
        self.replicas[name] = r
        return r

    def _start_hollow(self):
        c = self.c
        certs = os.path.join(c.tmp, "certs")
        names = ["hollow%d" % i for i in range(self.nhosts)]
        agentlib.issue_certs(c, names, certs)
        self.arrivals = os.path.join(c.tmp, "arrivals")
        self.hollow_log = os.path.join(c.tmp, "hollow.log")
        self._hfh = open(self.hollow_log, "ab")
        self.hollow = subprocess.Popen(
            [HOLLOW_BIN, "--controller", "127.0.0.1:%d" % c.agent_port,
             "--ca", os.path.join(certs, names[0], "ca.pem"), "--certs-dir", certs,
             "--hosts", str(self.nhosts), "--prefix", "hollow", "--vcpus", str(self.vcpus),
             "--start-delay-ms", str(self.start_delay_ms), "--arrivals", self.arrivals],
            stdin=subprocess.DEVNULL, stdout=self._hfh, stderr=subprocess.STDOUT,
            preexec_fn=harness._die_with_parent)
        poll(lambda: self._hosts_ready() >= self.nhosts, 60, what="%d hosts ready" % self.nhosts)

    def _hosts_ready(self):
        if self.hollow.poll() is not None:
            raise harness.HarnessError("cloud-hollow exited with %d" % self.hollow.returncode)
        return int(harness.psql("SELECT count(*) FROM hosts WHERE name LIKE 'hollow%' "
                                "AND state = 'ready' AND session_epoch > 0"))

    def stop(self):
        if self.hollow is not None and self.hollow.poll() is None:
            harness.terminate(self.hollow, "cloud-hollow")
        if self.hollow is not None:
            self._hfh.close()
        for r in self.replicas.values():
            if r.proc is not None and r.proc.poll() is None:
                # a SIGSTOPped replica must be continued to stop
                r.proc.send_signal(signal.SIGCONT)
        harness.stop()

    # -- the lease -------------------------------------------------------
    def lease(self):
        """(holder, epoch) of the unexpired lease, or None."""
        r = rows("SELECT holder, epoch FROM leader_lease WHERE expires_at > now()")
        return (r[0][0], int(r[0][1])) if r else None

    def leader(self, timeout=20, other_than=None):
        """Waits for a lease held by a replica other than `other_than`;
        returns (name, replica, holder, epoch)."""
        def find():
            le = self.lease()
            if le is None or le[0] == other_than:
                return None
            for name, r in self.replicas.items():
                if r.proc is not None and "-%d-" % r.pid in le[0]:
                    return (name, r) + le
            return None
        return poll(find, timeout, interval=0.05, what="a leader")

    # -- what happened ---------------------------------------------------
    def arrivals_by_kind(self, kind):
        """{instance id: [host, ...]} of the arrival lines of `kind`."""
        out = {}
        with open(self.arrivals) as f:
            for line in f:
                p = line.split()
                if len(p) == 4 and p[2] == kind:
                    out.setdefault(p[0], []).append(p[3])
        return out

    def instances(self, service):
        """[(id, ordinal, state, host name)] of a service's instances."""
        return [(r[0], int(r[1]), r[2], r[3]) for r in rows(
            "SELECT i.id, i.ordinal, i.state, coalesce(h.name, '') FROM instances i "
            "LEFT JOIN hosts h ON h.id = i.host_id "
            "WHERE i.service_id = (SELECT id FROM services WHERE name = '%s') "
            "ORDER BY i.ordinal" % service)]

    def check_exactly_once(self, test, service, n):
        """Every ordinal 1..n exactly once, all running, and no instance
        ever reached a host wanted running except those: none twice, none
        that was made and dropped (a duplicate the reconciler cleaned up).
        The cluster runs this one service only."""
        inst = self.instances(service)
        ords = [i[1] for i in inst]
        test.assertEqual(sorted(ords), list(range(1, n + 1)), "ordinals of %s" % service)
        test.assertEqual({i[2] for i in inst}, {"running"})
        live = {i[0]: i[3] for i in inst}
        ran = self.arrivals_by_kind("R")
        mine = {k: v for k, v in ran.items() if k in live}
        test.assertEqual(set(mine), set(live), "instances that reached a host")
        twice = {k: v for k, v in mine.items() if len(v) != 1}
        test.assertEqual(twice, {}, "instances sent to more than one host")
        moved = {k: (v[0], live[k]) for k, v in mine.items() if v[0] != live[k]}
        test.assertEqual(moved, {}, "instances running elsewhere than placed")
        # one service per cluster: any other instance that reached a host
        # was made and dropped
        extra = sorted(set(ran) - set(live))
        test.assertEqual(extra, [], "instances that ran and were dropped")
