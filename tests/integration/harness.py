"""Black-box harness: a throwaway PostgreSQL plus the real cloud-controller.

Like Redis's start_server or memcached's new_memcached: every test module
gets its own cluster in a temp dir and its own controller on free ports, and
both are torn down (controller SIGTERM, `pg_ctl stop -m fast`, temp dir
removed) even when a test fails.

We run as root in CI and initdb refuses root, so every PostgreSQL binary runs
as the `postgres` system user through runuser, in a temp dir owned by it.
Unix sockets go to the temp dir so a system cluster on 5432 never conflicts.

Environment:
  CLOUD_CONTROLLER   path of the cloud-controller binary (set by ctest)
  PG_BINDIR          PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
  CLOUD_ITEST_KEEP=1 keep the temp dir (logs, data) after the run
  CLOUD_ITEST_PG_CONF="a = 1;b = 2" more postgresql.conf lines (';' splits)
"""

import atexit
import http.client
import json
import os
import pwd
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

PG_BINDIR = os.environ.get("PG_BINDIR", "/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
READY_TIMEOUT = 20.0
HTTP_TIMEOUT = 10.0


class HarnessError(Exception):
    pass


def _die_with_parent():
    """In the child: SIGTERM when the test process dies, even by SIGKILL
    (a ctest timeout), so no controller outlives its test."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, Linux only
        pass


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def terminate(proc, what=None, timeout=10):
    """SIGTERM proc and wait for it; after timeout seconds SIGKILL it (and
    say so on stderr when what names it). Returns its exit status."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if what:
            sys.stderr.write("harness: %s ignored SIGTERM for %ds; killing\n" % (what, timeout))
        proc.kill()
        proc.wait()
    return proc.returncode


def hex_id(nbytes=8):
    return secrets.token_hex(nbytes)


def unique_name(prefix="t"):
    """A fresh name that matches ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$."""
    return "%s-%s" % (prefix, secrets.token_hex(4))


def poll(fn, timeout, interval=0.1, what="condition"):
    """Call fn() until it returns a truthy value or the deadline passes.

    Returns that value; raises AssertionError naming `what` on timeout, with
    the last value or exception seen, so a failure says what was observed.
    """
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s; last: %r"
                                 % (timeout, what, last))
        time.sleep(interval)


class Cluster:
    """One PostgreSQL cluster and one controller, both on free ports."""

    def __init__(self, controller=None, reconcile=False, controller_args=None):
        # reconcile: run the reconciler (leader election, placement,
        # restarts, liveness). Off by default: the other modules test the
        # API on rows that must stay as they wrote them.
        self.reconcile = reconcile
        self.controller_args = list(controller_args or [])
        self.extra_controllers = []
        self.controller_bin = controller or os.environ.get("CLOUD_CONTROLLER")
        self.tmp = None
        self.pg_port = None
        self.http_port = None
        self.token = None
        self.proc = None
        self.ctl_log = None
        self._ctl_log_fh = None
        self._pg_running = False
        self._stopped = False

    # -- paths -----------------------------------------------------------
    @property
    def pgdata(self):
        return os.path.join(self.tmp, "pgdata")

    @property
    def pg_log(self):
        return os.path.join(self.tmp, "postgres.log")

    @property
    def db_url(self):
        return "postgresql://postgres@127.0.0.1:%d/cloud" % self.pg_port

    # -- lifecycle -------------------------------------------------------
    def start(self, with_controller=True):
        if with_controller:
            self._check_controller_bin()
        try:
            self.tmp = tempfile.mkdtemp(prefix="cloud-itest-")
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.tmp, pw.pw_uid, pw.pw_gid)
            os.chmod(self.tmp, 0o755)
            self._init_pg()
            self.start_pg()
            self.psql("CREATE DATABASE cloud", db="postgres")
            if with_controller:
                # Every API call needs a bearer token: the harness makes an
                # admin one and sends it unless a test says auth=False.
                self.token = self.create_token("itest-admin", "admin")
                self.start_controller()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def create_token(self, name, role, ttl=None):
        """A token made by `cloud-controller token create`; returns the secret."""
        self._check_controller_bin()
        argv = [self.controller_bin, "token", "create", "--db", self.db_url,
                "--name", name, "--role", role]
        if ttl is not None:
            argv += ["--ttl", str(ttl)]
        out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                             timeout=60)
        if out.returncode != 0:
            raise HarnessError("token create failed: %s" % out.stderr.decode(errors="replace"))
        return out.stdout.decode().strip()

    def _as_pg(self, argv, check=True, timeout=60):
        """Run a PostgreSQL binary as the postgres user (initdb refuses root)."""
        cmd = ["runuser", "-u", PG_USER, "--"] + argv
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=timeout, cwd=self.tmp)
        if check and r.returncode != 0:
            raise HarnessError("%s failed (%d):\n%s" % (" ".join(argv), r.returncode, r.stdout))
        return r

    def _init_pg(self):
        self.pg_port = free_port()
        self._as_pg([os.path.join(PG_BINDIR, "initdb"), "-D", self.pgdata, "-U", PG_USER,
                     "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        # Settings live in postgresql.conf so a restart (start_pg) reuses the
        # same port and socket directory.
        conf = (
            "\n# cloud integration harness\n"
            "listen_addresses = '127.0.0.1'\n"
            "port = %d\n"
            "unix_socket_directories = '%s'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "max_connections = 100\n"
            "log_min_messages = warning\n"
        ) % (self.pg_port, self.tmp)
        # Extra settings for one run (profiling: statement logging, ...).
        conf += os.environ.get("CLOUD_ITEST_PG_CONF", "").replace(";", "\n") + "\n"
        with open(os.path.join(self.pgdata, "postgresql.conf"), "a") as f:
            f.write(conf)

    def start_pg(self):
        """Start (or restart after stop_pg) the cluster on the same port and data dir."""
        self._as_pg([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.pgdata, "-l", self.pg_log,
                     "-w", "-t", "30", "start"])
        self._pg_running = True

    def stop_pg(self):
        """Stop PostgreSQL (fast: disconnects every session) under the running controller."""
        if not self._pg_running:
            return
        self._as_pg([os.path.join(PG_BINDIR, "pg_ctl"), "-D", self.pgdata, "-m", "fast",
                     "-w", "-t", "30", "stop"])
        self._pg_running = False

    def _check_controller_bin(self):
        if not self.controller_bin:
            raise HarnessError("CLOUD_CONTROLLER is not set (path of the cloud-controller binary)")
        if not os.access(self.controller_bin, os.X_OK):
            raise HarnessError("CLOUD_CONTROLLER=%s is not an executable" % self.controller_bin)

    def start_controller(self):
        self._check_controller_bin()
        data_dir = os.path.join(self.tmp, "ctl")
        os.makedirs(data_dir, exist_ok=True)
        self.http_port = free_port()
        self.ctl_log = os.path.join(self.tmp, "controller.log")
        self._ctl_log_fh = open(self.ctl_log, "ab")
        argv = [self.controller_bin, "--listen", "127.0.0.1:%d" % self.http_port,
                "--db", self.db_url, "--data-dir", data_dir]
        argv += self.controller_args + ([] if self.reconcile else ["--no-reconcile"])
        # The agent gateway gets a free port of its own, kept across
        # restarts so agents (tests/integration/agentlib.py) reconnect.
        self.agent_port = getattr(self, "agent_port", None) or free_port()
        argv += ["--agent-listen", "127.0.0.1:%d" % self.agent_port]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._ctl_log_fh,
                                     stderr=subprocess.STDOUT, cwd=self.tmp,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + READY_TIMEOUT
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError("cloud-controller exited with %d during start-up:\n%s"
                                   % (self.proc.returncode, self.controller_log_tail()))
            try:
                status, _, body = self.request("GET", "/readyz", timeout=2)
                last = (status, body)
                if status == 200:
                    return
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise HarnessError("cloud-controller not ready within %.0fs (last /readyz: %r):\n%s"
                           % (READY_TIMEOUT, last, self.controller_log_tail()))

    def stop_controller(self):
        if self.proc is None:
            return
        termed = self.proc.poll() is None
        if termed:
            terminate(self.proc, "cloud-controller")
        rc = self.proc.returncode
        self.proc = None
        if self._ctl_log_fh:
            self._ctl_log_fh.close()
            self._ctl_log_fh = None
        # A clean SIGTERM exit is 0. Anything else (a crash, or a sanitizer
        # report: leaks make ASan exit 1 at shutdown) fails the test module.
        # A controller a test killed on purpose is not asked.
        if termed and rc != 0:
            raise HarnessError("cloud-controller exited with %s on SIGTERM:\n%s"
                               % (rc, self.controller_log_tail()))

    def restart_controller(self):
        """Stop and start the controller on the same database (new HTTP port).

        For tests that change rows behind the controller's back: a fresh
        process loads everything from the database.
        """
        self.stop_controller()
        self.start_controller()

    def kill_controller(self, sig=signal.SIGKILL):
        """Kill the main controller with sig (no clean shutdown, no exit check)."""
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        self.proc.wait(timeout=10)
        self.proc = None
        if self._ctl_log_fh:
            self._ctl_log_fh.close()
            self._ctl_log_fh = None

    def spawn_controller(self, name, args=None, reconcile=True, agent_listen=None):
        """Another controller on the same database (its own HTTP port and log,
        no agent gateway unless agent_listen: see ExtraController); returns
        an ExtraController. Stopped by stop()."""
        self._check_controller_bin()
        c = ExtraController(self, name, list(args or []) + ([] if reconcile else ["--no-reconcile"]),
                            agent_listen=agent_listen)
        self.extra_controllers.append(c)
        return c

    def stop(self):
        """Tear everything down; safe to call twice and after a failed start."""
        for c in getattr(self, "extra_controllers", []):
            try:
                c.stop()
            except Exception as e:  # noqa: BLE001 - teardown must go on
                sys.stderr.write("harness: stopping controller %s: %s\n" % (c.name, e))
        if self._stopped:
            return
        self._stopped = True
        try:
            self.stop_controller()
        finally:
            try:
                if self._pg_running:
                    self.stop_pg()
            except Exception as e:  # noqa: BLE001 - teardown must go on
                sys.stderr.write("harness: pg_ctl stop failed: %s\n" % e)
                self._kill_postmaster()
            finally:
                if self.tmp and os.environ.get("CLOUD_ITEST_KEEP") != "1":
                    shutil.rmtree(self.tmp, ignore_errors=True)
                elif self.tmp:
                    sys.stderr.write("harness: kept %s\n" % self.tmp)

    def _kill_postmaster(self):
        try:
            with open(os.path.join(self.pgdata, "postmaster.pid")) as f:
                pid = int(f.readline())
            os.kill(pid, signal.SIGQUIT)
        except (OSError, ValueError):
            pass

    def controller_log_tail(self, lines=60):
        if not self.ctl_log or not os.path.exists(self.ctl_log):
            return "(no controller log)"
        with open(self.ctl_log, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(data[-lines:])

    # -- clients ---------------------------------------------------------
    def psql(self, sql, db="cloud"):
        """Run SQL through psql over TCP; returns stdout (unaligned, tuples only)."""
        argv = [os.path.join(PG_BINDIR, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", PG_USER, "-d", db, "-c", sql]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=30, env=env)
        if r.returncode != 0:
            raise HarnessError("psql failed (%d) on %r:\n%s" % (r.returncode, sql, r.stderr))
        return r.stdout.strip()

    def request(self, method, path, body=None, headers=None, timeout=HTTP_TIMEOUT, raw=None,
                auth=True, port=None, binary=False):
        """One HTTP request on a fresh connection.

        body: dict/list -> JSON with Content-Type application/json; str/bytes
        -> sent as is (set Content-Type yourself through headers if wanted).
        raw: bytes sent instead of body, also without a content type.
        port: another controller's HTTP port (an ExtraController's).
        binary: the payload is returned as bytes, not parsed.
        Returns (status, headers, payload): headers is an http.client.HTTPMessage
        (case-insensitive .get), payload the parsed JSON when the body parses
        as JSON, else the text.
        """
        hdrs = dict(headers or {})
        if auth and self.token and "Authorization" not in hdrs:
            hdrs["Authorization"] = "Bearer " + self.token
        data = None
        if raw is not None:
            data = raw
        elif isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        elif isinstance(body, bytes):
            data = body
        conn = http.client.HTTPConnection("127.0.0.1", port or self.http_port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            if data is not None:
                hdrs.setdefault("Content-Length", str(len(data)))
            for k, v in hdrs.items():
                conn.putheader(k, v)
            conn.endheaders()
            if data is not None:
                # A server may answer (413) and close before reading a big
                # body; the answer is still there to read.
                try:
                    conn.send(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            resp = conn.getresponse()
            payload = resp.read()
            status, rhdrs = resp.status, resp.msg
        finally:
            conn.close()
        if binary:
            return status, rhdrs, payload
        text = payload.decode("utf-8", "replace")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = text
        return status, rhdrs, parsed

    def sse(self, path, headers=None, timeout=HTTP_TIMEOUT, auth=True):
        hdrs = dict(headers or {})
        if auth and self.token and "Authorization" not in hdrs:
            hdrs["Authorization"] = "Bearer " + self.token
        return SSEStream(self.http_port, path, hdrs, timeout)

    # -- fixtures through SQL (agents and uploads come later) ------------
    def add_image(self, name, tag="latest", kind="kernel", size=1000):
        """Insert a blob and an image row; returns (image id, kernel digest)."""
        image_id = hex_id(8)
        digest = "sha256:" + secrets.token_hex(32)
        self.psql("INSERT INTO blobs (digest, size) VALUES ('%s', %d);" % (digest, size))
        self.psql("INSERT INTO images (id, name, tag, kind, kernel_digest, initrd_digest, cmdline, size) "
                  "VALUES ('%s', '%s', '%s', '%s', '%s', NULL, 'console=ttyS0', %d);"
                  % (image_id, name, tag, kind, digest, size))
        return image_id, digest

    def add_host(self, name, host_id=None, labels=None, vcpus=8, memory_mib=16384, disk_gib=100):
        host_id = host_id or "h-" + secrets.token_hex(4)
        self.psql("INSERT INTO hosts (id, name, address, labels, cap_vcpus, cap_memory_mib, "
                  "cap_disk_gib, hypervisor, arch, last_seen) VALUES ('%s', '%s', '127.0.0.1', "
                  "'%s', %d, %d, %d, 'qemu', 'x86_64', now());"
                  % (host_id, name, json.dumps(labels or {"zone": "a"}), vcpus, memory_mib, disk_gib))
        return host_id


    def add_placed_instance(self, name, host_id, service_id=None, ordinal=None, state="running",
                            image="hello:latest", vcpus=1, memory_mib=256, disk_gib=0):
        """Insert an instance that an agent runs on a host (agents come later).

        This couples to more of the lead's schema than the other fixtures;
        it is the one place to change when the instances table changes. The
        controller caches instances: call restart_controller() afterwards.
        """
        inst_id = hex_id(8)
        self.psql("INSERT INTO instances (id, name, service_id, ordinal, image, vcpus, memory_mib, "
                  "disk_gib, state, host_id, started_at) VALUES ('%s', '%s', %s, %s, '%s', %d, %d, %d, "
                  "'%s', '%s', now());"
                  % (inst_id, name, "'%s'" % service_id if service_id else "NULL",
                     ordinal if ordinal is not None else "NULL", image, vcpus, memory_mib, disk_gib,
                     state, host_id))
        return inst_id


class ExtraController:
    """A second (third...) cloud-controller process on a cluster's database,
    for leader-election tests: its own HTTP port and log file."""

    def __init__(self, cluster, name, args, agent_listen=None):
        # agent_listen: None, no agent gateway; True, one on 127.0.0.1 and a
        # free port; "HOST:PORT", there. A replica with a gateway gets the
        # cluster CA of the main controller copied into its data directory
        # before its first start (docs/agent.md "Several controllers"), so
        # agents trust it; it issues its own gateway certificate.
        self.cluster = cluster
        self.name = name
        self.http_port = free_port()
        data_dir = os.path.join(cluster.tmp, "ctl-" + name)
        self.data_dir = data_dir
        os.makedirs(data_dir, exist_ok=True)
        self.log = os.path.join(cluster.tmp, "controller-%s.log" % name)
        self.agent_port = None
        self.agent_addr = None
        if agent_listen:
            if agent_listen is True:
                agent_listen = "127.0.0.1:%d" % free_port()
            self.agent_addr = agent_listen
            self.agent_port = int(agent_listen.rsplit(":", 1)[1])
            pki = os.path.join(data_dir, "pki")
            os.makedirs(pki, mode=0o700, exist_ok=True)
            for f, mode in (("ca.pem", 0o644), ("ca.key", 0o600)):
                with open(os.path.join(cluster.tmp, "ctl", "pki", f), "rb") as src:
                    data = src.read()
                fd = os.open(os.path.join(pki, f), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
                with os.fdopen(fd, "wb") as dst:
                    dst.write(data)
        self._fh = open(self.log, "ab")
        self.argv = [cluster.controller_bin, "--listen", "127.0.0.1:%d" % self.http_port,
                     "--db", cluster.db_url, "--data-dir", data_dir,
                     "--agent-listen", agent_listen or "none"] + args
        self._spawn()

    def _spawn(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._fh,
                                     stderr=subprocess.STDOUT, cwd=self.cluster.tmp,
                                     preexec_fn=_die_with_parent)
        poll(lambda: self._ready(), READY_TIMEOUT, what="controller %s ready" % self.name)

    def respawn(self):
        """Starts again, with the same ports and data directory (made anew
        if it was removed), a controller that was killed."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError("controller %s is still running" % self.name)
        os.makedirs(self.data_dir, exist_ok=True)
        self._spawn()

    def restart(self):
        """SIGTERM, wait, and start again with the same ports and data
        directory (a rolling restart); raises if it exits non-zero."""
        terminate(self.proc)
        rc = self.proc.returncode
        if rc != 0:
            raise HarnessError("controller %s exited with %s on SIGTERM:\n%s"
                               % (self.name, rc, self.log_tail()))
        self._spawn()

    def _ready(self):
        if self.proc.poll() is not None:
            raise HarnessError("controller %s exited with %d:\n%s"
                               % (self.name, self.proc.returncode, self.log_tail()))
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM and wait; raises if a controller asked to stop exits non-zero."""
        if self.proc is None:
            return
        termed = self.proc.poll() is None
        if termed:
            terminate(self.proc)
        rc = self.proc.returncode
        self.proc = None
        self._fh.close()
        if termed and rc != 0:
            raise HarnessError("controller %s exited with %s on SIGTERM:\n%s"
                               % (self.name, rc, self.log_tail()))

    def log_tail(self, lines=60):
        with open(self.log, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
        return "\n".join(data[-lines:])


class SSEStream:
    """A Server-Sent Events reader on its own connection.

    A thread reads lines and queues parsed events, so the test can wait for
    the next event with a deadline without poisoning the socket on timeout.
    """

    def __init__(self, port, path, headers=None, timeout=HTTP_TIMEOUT):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", path, headers=dict(headers or {}))
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = self.resp.msg
        self.comments = []
        self._q = queue.Queue()
        self._closed = False
        if self.status == 200:
            # The stream is long-lived: no read timeout once it is open.
            if self.conn.sock is not None:
                self.conn.sock.settimeout(None)
            self._t = threading.Thread(target=self._reader, daemon=True)
            self._t.start()
        else:
            self.body = self.resp.read().decode("utf-8", "replace")

    def _reader(self):
        ev = {}
        data = []
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode("utf-8", "replace").rstrip("\r\n")
                if line == "":
                    if data or ev:
                        ev["data"] = "\n".join(data)
                        try:
                            ev["json"] = json.loads(ev["data"]) if data else None
                        except ValueError:
                            ev["json"] = None
                        self._q.put(ev)
                    ev, data = {}, []
                elif line.startswith(":"):
                    self.comments.append(line)
                else:
                    field, _, value = line.partition(":")
                    if value.startswith(" "):
                        value = value[1:]
                    if field == "data":
                        data.append(value)
                    elif field in ("id", "event", "retry"):
                        ev[field] = value
                    else:
                        # Unknown fields are ignored (as EventSource does);
                        # kept so a failure can show what came.
                        ev.setdefault("unknown", []).append(line)
        except Exception:  # noqa: BLE001 - closed under us, or a broken stream
            pass
        self._q.put(None)  # end of stream

    def next_event(self, timeout):
        """The next event dict (id, event, data, json), or None at end of stream or timeout."""
        if self._closed:
            return None
        try:
            ev = self._q.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if ev is None:
            self._closed = True
        return ev

    def wait_for(self, pred, timeout):
        """Read events until pred(event) is true; returns (match or None, events read)."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, seen
            ev = self.next_event(left)
            if ev is None:
                return None, seen
            seen.append(ev)
            if pred(ev):
                return ev, seen

    def close(self):
        self._closed = True
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        try:
            self.resp.close()
        except Exception:  # noqa: BLE001 - the reader may be inside it
            pass


# -- module-level convenience: one cluster per test module ----------------
_cluster = None


def start(with_controller=True, **kw):
    global _cluster
    _cluster = Cluster(**kw).start(with_controller=with_controller)
    return _cluster


def stop():
    global _cluster
    if _cluster is not None:
        _cluster.stop()
        _cluster = None


def module_fixture(**kw):
    """(setUpModule, tearDownModule) for a test module on one cluster,
    start(**kw), with the image hello:latest."""
    def set_up():
        start(**kw).add_image("hello", "latest")
    return set_up, stop


def cluster():
    if _cluster is None:
        raise HarnessError("harness.start() was not called")
    return _cluster


def request(method, path, body=None, headers=None, **kw):
    return cluster().request(method, path, body=body, headers=headers, **kw)


def psql(sql):
    return cluster().psql(sql)


def post_at_once(path, bodies):
    """POSTs every body to path at once, each from its own thread released
    together with the others; returns the answers in the order of bodies."""
    out = [None] * len(bodies)
    go = threading.Barrier(len(bodies))

    def one(k):
        go.wait()
        out[k] = request("POST", path, bodies[k])
    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def stop_pg():
    cluster().stop_pg()


def start_pg():
    cluster().start_pg()


class TestCase(unittest.TestCase):
    """Base class: on a failure, prints the controller log tail once."""

    _dumped = False

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        after = len(result.failures) + len(result.errors)
        if after > before and _cluster is not None and not TestCase._dumped:
            TestCase._dumped = True
            sys.stderr.write("\n--- controller log (tail) after failure in %s ---\n%s\n---\n"
                             % (self.id(), _cluster.controller_log_tail()))
        return out

    # Shared assertions ---------------------------------------------------
    def assertError(self, resp, status, code, field=None):
        st, hdrs, body = resp
        self.assertEqual(st, status, "expected %d %s, got %d: %r" % (status, code, st, body))
        self.assertIsInstance(body, dict, "error body is not JSON: %r" % (body,))
        self.assertIn("error", body, body)
        err = body["error"]
        self.assertEqual(err.get("code"), code, body)
        self.assertIsInstance(err.get("message"), str, body)
        self.assertTrue(err["message"], body)
        if field is not None:
            self.assertEqual(err.get("field"), field, body)
        ctype = hdrs.get("Content-Type", "")
        self.assertTrue(ctype.startswith("application/json"), "error Content-Type %r" % ctype)
        return err

    def assertStatus(self, resp, status):
        st, _, body = resp
        self.assertEqual(st, status, "expected %d, got %d: %r" % (status, st, body))
        return body
