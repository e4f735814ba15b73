"""Setup and teardown shared by the end-to-end tests (tests/e2e/test_*.py)
and bench/config_bench.py (GUEST=qemu): libvirtd on qemu:///system, the
sample image (images/build-sample.sh) registered for an agent's --images
directory, one cloud-agent per test module, and the module teardown.

Owns STARTED: the pids of the virtlogd/libvirtd that ensure_libvirtd()
started in this process, the only daemons stop_started() stops; and
NETS_STARTED: the libvirt networks default_network() started, the only
networks stop_started() destroys.
Callers run under `flock /tmp/cloud-libvirt.lock`: libvirtd is shared with
other users of the machine.
"""

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
_INTEGRATION = os.path.join(HERE, "..", "integration")
if _INTEGRATION not in sys.path:
    sys.path.insert(0, _INTEGRATION)

import agentlib  # noqa: E402
import harness  # noqa: E402
from harness import poll, request, unique_name  # noqa: E402

URI = "qemu:///system"
STARTED = []
NETS_STARTED = []


def have(tool):
    """True if tool is on PATH."""
    return shutil.which(tool) is not None


def virsh(*args):
    """Runs `virsh -c qemu:///system args...`; returns the CompletedProcess
    (output captured as text, not checked)."""
    return subprocess.run(["virsh", "-c", URI] + list(args), capture_output=True, text=True,
                          timeout=60)


def pid_alive(pidfile):
    """True if the process named in pidfile exists."""
    try:
        with open(pidfile) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def main():
    """Runs the calling test module (unittest.main) when this machine can:
    libvirtd, virtlogd, virsh and QEMU installed, and root. Otherwise exits
    77 (ctest's skip) on a developer's machine, and fails under CI (CI set),
    where scripts/setup.sh installs them: a skip there would hide a broken
    setup."""
    import unittest
    why = None
    for tool in ("qemu-system-x86_64", "libvirtd", "virtlogd", "virsh"):
        if not have(tool):
            why = "%s not installed" % tool
    if why is None and os.geteuid() != 0:
        why = "needs root (libvirtd, qemu:///system)"
    if why is not None:
        if os.environ.get("CI"):
            print("FAIL: %s (under CI the e2e tests must run)" % why)
            sys.exit(1)
        print("SKIP: " + why)
        sys.exit(77)
    unittest.main(module="__main__")


def start_module(host, image="sample:e2e", extra=()):
    """The usual setUpModule: libvirtd, a reconciling controller, the sample
    image registered as image, and one agent named host (extra: more agent
    options); returns the agent (pass it to teardown)."""
    ensure_libvirtd()
    c = harness.start(reconcile=True)
    images = add_sample_image(c, image)
    return start_agent(c, host, images=images, extra=extra)


def ensure_libvirtd():
    """Starts virtlogd and libvirtd (`-d`) unless libvirtd already answers,
    records the pids it started in STARTED, waits until libvirtd answers."""
    if virsh("version").returncode == 0:
        return
    for daemon, pidfile in (("virtlogd", "/run/virtlogd.pid"), ("libvirtd", "/run/libvirtd.pid")):
        if not pid_alive(pidfile):
            subprocess.run([daemon, "-d"], check=True)
            poll(lambda p=pidfile: pid_alive(p), 10, what=daemon + " to start")
            with open(pidfile) as f:
                STARTED.append(int(f.read().strip()))
    poll(lambda: virsh("version").returncode == 0, 30, what="libvirtd to answer")


def default_network(required=False):
    """libvirt's network "default", active, for an agent's --network:
    starts it if it is not (stop_started() destroys it then); returns
    "default", or None when libvirtd has no such network or it cannot be
    started (said on stderr; with required, a HarnessError instead)."""
    def active():
        return re.search(r"Active:\s+yes", virsh("net-info", "default").stdout) is not None
    if virsh("net-info", "default").returncode != 0:
        return None
    if not active():
        r = virsh("net-start", "default")
        if r.returncode == 0:
            NETS_STARTED.append("default")
        elif not active():
            why = ("cannot start libvirt's default network (dnsmasq-base installed?): %s"
                   % r.stderr.strip())
            if required:
                raise harness.HarnessError(why)
            sys.stderr.write("[e2e] %s\n" % why)
            return None
    return "default"


def add_blob(c, path, images):
    """Copies the file at path into the --images directory images, named by
    its digest, and records the blob in cluster c; returns the digest."""
    with open(path, "rb") as f:
        data = f.read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    dst = os.path.join(images, digest)
    shutil.copyfile(path, dst)
    os.chmod(dst, 0o644)
    c.psql("INSERT INTO blobs (digest, size) VALUES ('%s', %d) ON CONFLICT DO NOTHING"
           % (digest, len(data)))
    return digest


def add_sample_image(c, image):
    """Builds the sample image into c.tmp/sample and registers it in cluster
    c as the kernel image `image` ("name:tag"), its blobs in c.tmp/images;
    returns that directory, the agent's --images."""
    name, tag = image.split(":")
    sample = os.path.join(c.tmp, "sample")
    subprocess.run(["bash", os.path.join(HERE, "..", "..", "images", "build-sample.sh"), sample],
                   check=True, stdout=subprocess.DEVNULL)
    images = os.path.join(c.tmp, "images")
    os.makedirs(images, mode=0o755)
    kernel = add_blob(c, os.path.join(sample, "vmlinuz"), images)
    initrd = add_blob(c, os.path.join(sample, "initrd.img"), images)
    with open(os.path.join(sample, "cmdline")) as f:
        cmdline = f.read().strip().replace("'", "''")
    c.psql("INSERT INTO images (id, name, tag, kind, kernel_digest, initrd_digest, cmdline, size) "
           "VALUES ('%s', '%s', '%s', 'kernel', '%s', '%s', '%s', 0)"
           % (harness.hex_id(8), name, tag, kernel, initrd, cmdline))
    return images


def start_agent(c, host, images=None, extra=(), what="the e2e agent to register"):
    """Starts a cloud-agent named host on qemu:///system (16 vCPUs; blobs
    from images if given, else fetched from the controller; extra: more
    options) and waits up to 60 s for the host to be ready; returns it."""
    agent = agentlib.Agent(c, host, uri=URI, hypervisor=None, images=images, cap_vcpus=16,
                           extra=extra).start()
    poll(lambda: c.psql("SELECT state FROM hosts WHERE name = '%s'" % host) == "ready", 60,
         what=what)
    return agent


def stop_agent_and_guests(agent):
    """Stops agent (if any), then destroys and undefines the domain
    cloud-<id> of every instance of the harness cluster; returns that
    cluster (None if none was started). The cluster keeps running."""
    # The agent first: while it runs, a guest destroyed here is reported as
    # exited and the reconciler starts it again, leaving a guest behind.
    if agent is not None:
        agent.stop()
    c = harness._cluster
    if c is not None:
        for line in c.psql("SELECT id FROM instances").splitlines():
            virsh("destroy", "cloud-" + line)
            virsh("undefine", "cloud-" + line)
    return c


def stop_started():
    """Destroys the networks default_network() started, then sends SIGTERM
    to the virtlogd/libvirtd that ensure_libvirtd() started."""
    for net in NETS_STARTED:
        virsh("net-destroy", net)
    for pid in STARTED:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass


def teardown(agent):
    """The whole tearDownModule: stop_agent_and_guests(agent), then the
    cluster (harness.stop()), then stop_started()."""
    stop_agent_and_guests(agent)
    harness.stop()
    stop_started()


def console(agent, inst_id):
    """What instance inst_id's guest wrote to its serial console so far (the
    agent's <state>/run/<id>/console.log), "" if nothing yet."""
    path = os.path.join(agent.dir, "state", "run", inst_id, "console.log")
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_instance(image, prefix, args=None):
    """POSTs a one-off instance of image (1 vCPU, 256 MiB) named
    prefix-<random> with args; returns it."""
    st, _, inst = request("POST", "/v1/instances", {
        "image": image, "name": unique_name(prefix), "args": args or [],
        "resources": {"vcpus": 1, "memory_mib": 256, "disk_gib": 0}})
    assert st == 201, inst
    return inst


def get(ref):
    """The instance ref as the API shows it (asserting a 200)."""
    st, _, inst = request("GET", "/v1/instances/" + ref)
    assert st == 200, inst
    return inst


def wait_state(ref, state, timeout, interval=0.5, **fields):
    """Polls until instance ref is in state with fields; returns it."""
    def ok():
        st, _, inst = request("GET", "/v1/instances/" + ref)
        if st == 200 and inst["state"] == state and all(inst.get(k) == v for k, v in fields.items()):
            return inst
        return None
    return poll(ok, timeout, interval=interval, what="instance %s %s %r" % (ref, state, fields))


def wait_fields(agent, ref, timeout, interval=0.5, **want):
    """Polls until instance ref has the fields want; returns it. On time
    out the assertion names its last fields and the end of its console
    (agent's)."""
    last = {}

    def ok():
        last["i"] = get(ref)
        return last["i"] if all(last["i"].get(k) == v for k, v in want.items()) else None
    try:
        return poll(ok, timeout, interval=interval, what="instance %s %r" % (ref, want))
    except AssertionError:
        raise AssertionError("instance %s never had %r; last %r; console:\n%s"
                             % (ref, want, last.get("i"), console(agent, ref)[-3000:]))
