"""The guest end of guest channels on libvirt's test driver (docs/agent.md).

cloud-agent started with CLOUD_AGENT_TEST_CHANNELS=1 in its environment
gives every test-driver domain a run dir and a channel socket path
(<state>/run/<instance id>/channel.sock) and dials it, as it does with QEMU.
The test driver runs no guest and no QEMU binds that socket: GuestPeer
plays QEMU + guest there. It listens on the socket, accepts the agent's
connection, records every line the agent writes (with its arrival time and
the number of the connection it came on): config lines in lines, boot lines
({"env":{...},"args":[...]}, written first on every connection) in boots;
answers {"ack":N} to each config line at once (unless ack=False), and sends
what the test says the guest
reports ({"ready":...}, {"addr":...}, anything else), again on every new
connection, as a guest that boots and announces itself would.

Two ways to serve a socket:
  watch(agent)     serves every instance of an agentlib.Agent: its run dir
                   is scanned every 20 ms, a new instance's socket is bound,
                   and one the agent unlinked (it does so before each start
                   of a domain, for QEMU to bind afresh) is bound again.
  listen(id, path) serves one path (bench/config_bench.py).

One thread with a selector does all socket work; the test's calls are
handed to it through a queue, so they never interleave with its writes.
"""

import json
import os
import selectors
import socket
import threading
import time

SCAN_S = 0.02


def channel_path(agent, inst_id):
    """The channel socket the agent puts in instance inst_id's domain XML."""
    return os.path.join(agent.dir, "state", "run", inst_id, "channel.sock")


class Line:
    """A config line the guest end read: {"version":N,"config":{...}}."""

    __slots__ = ("t", "conn", "version", "config")

    def __init__(self, t, conn, version, config):
        self.t, self.conn, self.version, self.config = t, conn, version, config

    def __repr__(self):
        return "Line(conn=%d, version=%d, %d keys)" % (self.conn, self.version,
                                                       len(self.config))


class GuestPeer(threading.Thread):
    def __init__(self, ack=True, ready=None):
        """ack: answer {"ack":N} to each config line. ready: None, or the
        {"ready":...} every instance sends when the agent connects (a
        per-instance set_guest overrides it)."""
        super().__init__(daemon=True)
        self.ack = ack
        self.default_ready = ready
        self.sel = selectors.DefaultSelector()
        self.cond = threading.Condition()
        self.lines = {}         # inst -> [Line] in arrival order
        self.boots = {}         # inst -> [(conn, {"env":...,"args":...})]
        self.connects = {}      # inst -> connections accepted
        self.errors = []
        self.guest = {}         # inst -> {"ready":..., "addr":...} announced
        self.listeners = {}     # inst -> (socket, path, inode)
        self.current = {}       # inst -> its newest accepted connection
        self.dirs = []          # run dirs watched
        self.todo = []          # callables run by the selector thread
        self.rd, self.wr = socket.socketpair()
        self.rd.setblocking(False)
        self.sel.register(self.rd, selectors.EVENT_READ, ("wake", None))
        self.stopping = False
        self.started_ev = threading.Event()

    # ---- the test's side (any thread) ------------------------------------

    def watch(self, agent):
        """Serve every instance agent starts (auto-started)."""
        self._call(lambda: self.dirs.append(os.path.join(agent.dir, "state", "run")))
        self._ensure_started()
        return self

    def listen(self, inst, path):
        """Serve path for instance inst."""
        self._call(lambda: self._bind(inst, path))
        self._ensure_started()

    def set_guest(self, inst, addresses=None, ready=None):
        """What the guest of inst reports: now if connected, and again on
        every later connection. Only what changed is sent (a second
        {"ready":true} on a connection would tell the agent of a reboot)."""
        msg = {}
        with self.cond:
            g = self.guest.setdefault(inst, {})
            if addresses is not None:
                addr = addresses[0] if len(addresses) == 1 else list(addresses)
                if g.get("addr") != addr:
                    g["addr"] = msg["addr"] = addr
            if ready is not None and g.get("ready") != ready:
                g["ready"] = msg["ready"] = ready
        if msg:
            self.send(inst, msg)

    def send(self, inst, obj):
        """Writes one line to inst's current connection (dropped if none)."""
        self._call(lambda: self._send_current(inst, obj))

    def stop(self):
        self.stopping = True
        self._wake()
        if self.is_alive():
            self.join(5)
        for key in list(self.sel.get_map().values()):
            try:
                key.fileobj.close()
            except OSError:
                pass
        self.sel.close()
        self.wr.close()

    # ---- what arrived -----------------------------------------------------

    def wait(self, fn, timeout, what="condition"):
        """fn() (called with the lock held) once truthy; AssertionError
        naming what after timeout seconds."""
        with self.cond:
            got = self.cond.wait_for(fn, timeout)
            if not got:
                raise AssertionError("guest end: no %s within %.0f s (errors %r)"
                                     % (what, timeout, self.errors[:3]))
            return got

    def lines_of(self, inst):
        with self.cond:
            return list(self.lines.get(inst, []))

    def boots_of(self, inst):
        """The boot lines inst's guest end read: [(conn, obj)]."""
        with self.cond:
            return list(self.boots.get(inst, []))

    def last(self, inst):
        """The newest config line of inst, or None."""
        with self.cond:
            ls = self.lines.get(inst)
            return ls[-1] if ls else None

    def wait_line(self, inst, pred, timeout, what=None):
        """The first line of inst that satisfies pred (earlier lines too)."""
        def fn():
            return next((l for l in self.lines.get(inst, []) if pred(l)), None)
        return self.wait(fn, timeout, what or "matching config line of %s" % inst)

    def wait_all(self, insts, pred, timeout, what=None):
        """{inst: its first line with pred(inst, line)} once every inst has one."""
        def first(i):
            return next((l for l in self.lines.get(i, []) if pred(i, l)), None)

        def fn():
            out = {}
            for i in insts:
                out[i] = first(i)
                if out[i] is None:
                    return None
            return out
        try:
            return self.wait(fn, timeout, what or "matching line at %d channels" % len(insts))
        except AssertionError as e:
            with self.cond:
                missing = [i for i in insts if first(i) is None]
            raise AssertionError("%s; missing at %d of %d (%r...)"
                                 % (e, len(missing), len(insts), missing[:3]))

    def wait_connected(self, insts, timeout):
        """Once the agent has connected to every inst's channel."""
        return self.wait(lambda: all(self.connects.get(i) for i in insts), timeout,
                         "agent connection on all %d channels" % len(insts))

    # ---- hooks -------------------------------------------------------------

    def on_line(self, inst, line):
        """Called (lock held) for each config line; for subclasses."""

    # ---- the selector thread ------------------------------------------------

    def _ensure_started(self):
        if not self.is_alive() and not self.started_ev.is_set():
            self.started_ev.set()
            self.start()

    def _wake(self):
        try:
            self.wr.send(b"x")
        except OSError:
            pass

    def _call(self, fn):
        with self.cond:
            self.todo.append(fn)
        self._wake()

    def run(self):
        last_scan = 0.0
        while not self.stopping:
            events = self.sel.select(SCAN_S if self.dirs else 1.0)
            for key, _ in events:
                kind, data = key.data
                if kind == "wake":
                    try:
                        self.rd.recv(4096)
                    except BlockingIOError:
                        pass
                    with self.cond:
                        todo, self.todo = self.todo, []
                    for fn in todo:
                        fn()
                elif kind == "listen":
                    self._accept(key.fileobj, data)
                else:
                    self._read(key.fileobj, data)
            now = time.monotonic()
            if self.dirs and now - last_scan >= SCAN_S:
                last_scan = now
                self._scan()

    def _scan(self):
        for d in self.dirs:
            try:
                names = os.listdir(d)
            except FileNotFoundError:
                continue
            for inst in names:
                run = os.path.join(d, inst)
                path = os.path.join(run, "channel.sock")
                cur = self.listeners.get(inst)
                if cur is not None:
                    try:
                        if os.stat(path).st_ino == cur[2]:
                            continue    # still ours
                    except FileNotFoundError:
                        pass            # unlinked by the agent: bind again
                if os.path.isdir(run):
                    self._bind(inst, path)

    def _bind(self, inst, path):
        old = self.listeners.pop(inst, None)
        if old is not None:
            self.sel.unregister(old[0])
            old[0].close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(path)
            s.listen(4)
            ino = os.stat(path).st_ino
        except FileNotFoundError:
            s.close()       # the run dir went with its instance
            return
        except OSError as e:
            s.close()
            self.errors.append("bind %s: %s" % (path, e))
            return
        s.setblocking(False)
        self.listeners[inst] = (s, path, ino)
        self.sel.register(s, selectors.EVENT_READ, ("listen", inst))

    def _accept(self, ls, inst):
        try:
            c, _ = ls.accept()
        except (BlockingIOError, OSError):
            return
        c.setblocking(False)
        with self.cond:
            n = self.connects[inst] = self.connects.get(inst, 0) + 1
            hello = dict(self.guest.get(inst, {}))
            self.cond.notify_all()
        if "ready" not in hello and self.default_ready is not None:
            hello["ready"] = self.default_ready
        self.current[inst] = c
        self.sel.register(c, selectors.EVENT_READ, ("conn", [inst, n, b""]))
        if hello:
            self._send(c, hello)

    def _send_current(self, inst, obj):
        c = self.current.get(inst)
        if c is not None:
            self._send(c, obj)

    def _send(self, c, obj):
        try:
            c.sendall((json.dumps(obj, separators=(",", ":")) + "\n").encode())
        except BlockingIOError:
            self.errors.append("a channel socket buffer is full")
        except (BrokenPipeError, ConnectionResetError):
            pass    # the agent closed it; the next connection is told again
        except OSError as e:
            self.errors.append("send on a channel: %s" % e)

    def _read(self, c, st):
        inst, n = st[0], st[1]
        try:
            chunk = c.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        now = time.monotonic()
        if not chunk:
            self.sel.unregister(c)
            c.close()
            if self.current.get(inst) is c:
                del self.current[inst]
            return
        st[2] += chunk
        while b"\n" in st[2]:
            raw, st[2] = st[2].split(b"\n", 1)
            try:
                msg = json.loads(raw)
                if isinstance(msg, dict) and "env" in msg:
                    if not isinstance(msg["env"], dict) or not isinstance(msg.get("args"), list):
                        raise TypeError("a boot line needs env {} and args []")
                    with self.cond:
                        self.boots.setdefault(inst, []).append((n, msg))
                        self.cond.notify_all()
                    continue
                line = Line(now, n, int(msg["version"]), msg["config"])
                if not isinstance(line.config, dict):
                    raise TypeError("config is not an object")
            except (ValueError, KeyError, TypeError) as e:
                self.errors.append("bad line %r: %s" % (raw[:200], e))
                continue
            if self.ack:
                self._send(c, {"ack": line.version})
            with self.cond:
                self.lines.setdefault(inst, []).append(line)
                self.on_line(inst, line)
                self.cond.notify_all()
