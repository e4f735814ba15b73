"""The desired set on the wire, as the gateway sends it (agent.proto
DesiredState.part/parts, Hello.desired_set_max; docs/agent.md "Desired set
in parts").

Two protocol-level agents (this file speaks the frames itself, with the
few protobuf fields it needs) register as hosts `new` (Hello with
desired_set_max, a build that takes parts) and `old` (without it, a build
before parts). Instances are placed on one or the other by a label
constraint. What each receives:
  - a small set: one frame, without part/parts (the frame of every
    controller before parts), to either;
  - 300 instances with 16 KiB env (about 5 MB): `new` gets parts, each at
    most 1 MiB packed, all with the set's session and revision, parts
    0..n-1 once each, together every instance once; `old` gets sets only
    while they fit one frame, never a part (it would take a part for the
    whole set), and the controller logs that the agent must be upgraded.
"""

import concurrent.futures
import socket
import struct
import threading
import time
import unittest

import agentlib
import harness
from agentlib import pb_parse, pb_string, pb_uint
from harness import poll, request, unique_name

IMAGE = "hello:latest"
N = 300
PART_MAX = 1024 * 1024
AGENTS = {}


def one(msg, num, default=0):
    return msg.get(num, [default])[0]


class WireAgent(threading.Thread):
    """An agent that registers, heartbeats and records DesiredState frames
    (each as (length, parsed DesiredState))."""

    def __init__(self, cluster, name, set_max):
        super().__init__(daemon=True)
        self.name = name
        pki = agentlib.issue_cert(cluster, name)
        self.sock = agentlib.tls_client(cluster, pki, timeout=0.2)
        self.sets = []
        self.epoch = None
        self.applied = 0
        self.cond = threading.Condition()
        self.stopping = False
        caps = pb_uint(1, N + 10) + pb_uint(2, 64 * (N + 10)) + pb_uint(3, 100)
        facts = pb_string(1, "x86_64") + pb_string(4, "test")
        hello = (pb_string(1, name) + pb_string(2, "wire-test") + pb_string(3, caps) +
                 pb_string(4, facts) + pb_string(5, pb_string(1, "wire") + pb_string(2, name)) +
                 pb_uint(7, 1))
        if set_max:
            hello += pb_uint(9, set_max)
        self.send(pb_string(1, hello))
        self.buf = b""

    def send(self, env):
        self.sock.sendall(struct.pack(">I", len(env)) + env)

    def run(self):
        seq, last_hb = 0, 0.0
        while not self.stopping:
            try:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return
                self.buf += chunk
            except (socket.timeout, TimeoutError):
                pass
            except OSError:
                return
            while len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) < 4 + n:
                    break
                env, self.buf = pb_parse(self.buf[4:4 + n]), self.buf[4 + n:]
                with self.cond:
                    if 2 in env:
                        self.epoch = one(pb_parse(env[2][0]), 2)
                    if 4 in env:
                        ds = pb_parse(env[4][0])
                        self.sets.append((n, ds))
                        self.applied = max(self.applied, one(ds, 2))
                    self.cond.notify_all()
            if self.epoch is not None and time.monotonic() - last_hb > 1.0:
                seq += 1
                last_hb = time.monotonic()
                self.send(pb_string(3, pb_uint(1, self.epoch) + pb_uint(2, seq) + pb_uint(4, self.applied)))

    def wait(self, fn, timeout, what):
        with self.cond:
            got = self.cond.wait_for(fn, timeout)
        if not got:
            raise AssertionError("%s: no %s within %d s" % (self.name, what, timeout))
        return got

    def frames_since(self, i):
        with self.cond:
            return list(self.sets[i:])

    def stop(self):
        self.stopping = True
        self.join(5)
        self.sock.close()


def setUpModule():
    c = harness.start(reconcile=True)
    c.add_image("hello", "latest")
    for name, set_max in (("new", 32 << 20), ("old", 0)):
        a = WireAgent(c, name, set_max)
        a.start()
        a.wait(lambda: a.epoch is not None, 30, "Welcome")
        AGENTS[name] = a


def tearDownModule():
    for a in AGENTS.values():
        a.stop()
    harness.stop()


def ids_of(ds):
    return [one(pb_parse(s), 1).decode() for s in ds.get(3, [])]


def place(host, count, env_bytes):
    """count one-off instances on host, each with env_bytes of env value;
    returns their ids."""
    def create(i):
        # values are at most 4,096 bytes: four keys make up the size
        env = {"K%d" % k: ("%05d" % i).ljust(env_bytes // 4, "x")
               for k in range(4)} if env_bytes else {}
        st, _, inst = request("POST", "/v1/instances", {
            "image": IMAGE, "name": unique_name("w%d-" % i), "env": env,
            "placement": {"constraints": ["wire=" + host]},
            "resources": {"vcpus": 1, "memory_mib": 64, "disk_gib": 0}})
        assert st == 201, inst
        return inst["id"]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        return list(ex.map(create, range(count)))


class WireTest(harness.TestCase):

    def latest_with(self, agent, ids, start):
        """The DesiredState frames, from start on, of the first set that
        names every id: [(length, ds)] of its parts, or None."""
        by_rev = {}
        for n, ds in agent.frames_since(start):
            by_rev.setdefault(one(ds, 2), []).append((n, ds))
        for rev in sorted(by_rev):
            frames = by_rev[rev]
            got = set(i for _, ds in frames for i in ids_of(ds))
            parts = one(frames[0][1], 6)
            if set(ids) <= got and len(frames) == max(parts, 1):
                return frames
        return None

    def test_1_small_set_is_one_frame_without_parts(self):
        for name, a in sorted(AGENTS.items()):
            start = len(a.frames_since(0))
            ids = place(name, 2, 10)
            frames = a.wait(lambda: self.latest_with(a, ids, start), 30,
                            "a set with %s" % ids)
            self.assertEqual(len(frames), 1, name)
            n, ds = frames[0]
            self.assertNotIn(5, ds, name)
            self.assertNotIn(6, ds, name)
            self.assertEqual(one(ds, 1), a.epoch)

    def test_2_big_set_in_parts_to_a_new_agent(self):
        a = AGENTS["new"]
        start = len(a.frames_since(0))
        ids = place("new", N, 16000)
        frames = a.wait(lambda: self.latest_with(a, ids, start), 60,
                        "a set of %d instances" % N)
        parts = one(frames[0][1], 6)
        self.assertGreaterEqual(parts, 5)
        self.assertEqual(sorted(one(ds, 5) for _, ds in frames), list(range(parts)))
        for n, ds in frames:
            self.assertLessEqual(n, PART_MAX + 16)
            self.assertEqual((one(ds, 1), one(ds, 2), one(ds, 6)),
                             (a.epoch, one(frames[0][1], 2), parts))
            self.assertTrue(ids_of(ds))
        # Every instance once, in part order; the whole set is more than a frame.
        all_ids = [i for _, ds in sorted(frames, key=lambda f: one(f[1], 5))
                   for i in ids_of(ds)]
        self.assertEqual(len(all_ids), len(set(all_ids)))
        self.assertTrue(set(ids) <= set(all_ids))
        self.assertGreater(sum(n for n, _ in frames), 4 * 1024 * 1024)

    def test_3_big_set_not_sent_to_an_old_agent(self):
        a = AGENTS["old"]
        c = harness.cluster()
        start = len(a.frames_since(0))
        ids = place("old", N, 16000)

        def logged():
            return "takes only one; not sent (upgrade the agent)" in \
                c.controller_log_tail(400)
        poll(logged, 60, what="the controller's log of a set too big for host old")
        time.sleep(1)
        # The sets that fit one frame (while the instances were being
        # placed) went as before; never a part, never the whole set.
        for n, ds in a.frames_since(start):
            self.assertNotIn(5, ds)
            self.assertNotIn(6, ds)
            self.assertLessEqual(n, 4 * 1024 * 1024)
            self.assertFalse(set(ids) <= set(ids_of(ds)), "the whole set in one frame")


if __name__ == "__main__":
    unittest.main()
