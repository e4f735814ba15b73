"""Network namespaces as hosts for the integration tests (chaos_partition,
host_network): `ip` with a clear error, and the /etc/hosts a namespace
sees, which names the controller's address with this machine's host name
(the name the gateway's certificate carries)."""

import os
import shutil
import subprocess

import harness


def ip(*args, check=True):
    """Runs `ip ARGS`; raises HarnessError with ip's message if check and it fails."""
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise harness.HarnessError("ip %s failed: %s" % (" ".join(args), r.stderr.strip()))
    return r


def name_host(ns, addr, hostname):
    """`ip netns exec NS` mounts /etc/netns/NS/hosts over /etc/hosts: in NS,
    hostname is addr."""
    os.makedirs("/etc/netns/" + ns, exist_ok=True)
    with open("/etc/netns/%s/hosts" % ns, "w") as f:
        f.write("127.0.0.1 localhost\n%s %s\n" % (addr, hostname))


def forget_host(ns):
    """Removes what name_host wrote."""
    shutil.rmtree("/etc/netns/" + ns, ignore_errors=True)
