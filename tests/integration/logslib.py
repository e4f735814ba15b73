"""Console log helpers shared by test_logs.py and test_logs_relay.py."""

import http.client
import os
import socket
import threading

import harness
from harness import poll


def console_path(agent, inst_id):
    """Where agent's cloud-agent reads the console log of inst_id."""
    return os.path.join(agent.dir, "state", "run", inst_id, "console.log")


def write_console(agent, inst_id, data, mode="ab"):
    path = console_path(agent, inst_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, mode) as f:
        f.write(data)


class Follow:
    """A ?follow=true stream (on port, the harness's controller by default)
    read by a thread into a buffer. ended is set when the body ends; clean
    says whether it ended as a complete chunked body."""

    def __init__(self, path, port=None):
        c = harness.cluster()
        self.conn = http.client.HTTPConnection("127.0.0.1", port or c.http_port, timeout=15)
        self.conn.request("GET", path, headers={"Authorization": "Bearer " + c.token})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.data = b""
        self.clean = None
        self.ended = threading.Event()
        self._lock = threading.Lock()
        if self.status == 200:
            self.conn.sock.settimeout(None)
            threading.Thread(target=self._reader, daemon=True).start()
        else:
            self.body = self.resp.read()
            self.ended.set()

    def _reader(self):
        try:
            while True:
                piece = self.resp.read1(65536)
                if not piece:
                    break
                with self._lock:
                    self.data += piece
            self.clean = True
        except Exception:  # noqa: BLE001 - cut off, or the test closed it
            self.clean = False
        self.ended.set()

    def text(self):
        with self._lock:
            return self.data

    def wait_for(self, needle, timeout=10):
        poll(lambda: needle in self.text(), timeout, interval=0.02,
             what="%r on the followed log" % needle)

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()
