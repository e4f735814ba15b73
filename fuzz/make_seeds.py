#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/<target>/ (committed; rerun only
to change them). Frames are protobuf encoded by hand, from proto/agent.proto,
so no generated code is needed."""

import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fuzz")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- protobuf wire format -------------------------------------------------
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, v):
    if isinstance(v, str):
        v = v.encode()
    return varint(num << 3 | 2) + varint(len(v)) + v


def f_map(num, d):
    return b"".join(f_bytes(num, f_bytes(1, k) + f_bytes(2, v)) for k, v in d.items())


def frame(env):
    return struct.pack(">I", len(env)) + env


def request_json():
    t = "fuzz_request_json"
    put(t, "service_create.json", json.dumps({
        "name": "web", "image": "hello:1.0",
        "resources": {"vcpus": 2, "memory_mib": 512, "disk_gib": 1},
        "args": ["--port", "8080"], "env": {"MODE": "prod", "_X": ""},
        "ports": [{"name": "http", "port": 8080, "protocol": "tcp"}, {"port": 53, "protocol": "udp"}],
        "restart": "on-failure:3",
        "placement": {"constraints": ["zone=a", "rack!=r1", "disk in (ssd, nvme)"],
                      "strategy": "binpack", "max_per_host": 2},
        "links": ["db"], "replicas": 3, "rollout": {"max_unavailable": 1, "max_surge": 0},
        "partition_policy": "stop"}))
    put(t, "service_patch.json", json.dumps({"replicas": 0, "image": "sha256:" + "ab" * 32,
                                             "resources": {"vcpus": 4}}))
    put(t, "instance_create.json", json.dumps({"name": "once", "image": "hello", "restart": "never",
                                               "env": {"A": "b"}, "args": ["a\u00e9\u4e2d"]}))
    put(t, "image_create.json", json.dumps({"name": "hello", "tag": "V1.2", "kind": "kernel",
                                            "kernel": "sha256:" + "0" * 64, "initrd": None,
                                            "cmdline": "console=ttyS0 quiet"}))
    put(t, "kill.json", '{"signal":"SIGKILL"}')
    put(t, "nested.json", '{"a":[[[[{"b":"\\"[{"}]]]]}')
    put(t, "empty", "")


def frames():
    t = "fuzz_frame"
    resources = f_varint(1, 4) + f_varint(2, 8192) + f_varint(3, 100)
    facts = (f_bytes(1, "x86_64") + f_bytes(2, "qemu") + f_bytes(2, "kvm") + f_varint(3, 1)
             + f_bytes(4, "kvm") + f_bytes(5, "9.0.0"))
    inst_ref = f_bytes(1, "i-1") + f_varint(2, 3) + f_varint(3, 4)
    hello = (f_bytes(1, "host-a") + f_bytes(2, "0.1.0") + f_bytes(3, resources) + f_bytes(4, facts)
             + f_map(5, {"zone": "a", "rack": "r1"}) + f_bytes(6, inst_ref) + f_varint(7, 1)
             + f_varint(8, 2))
    put(t, "hello.bin", frame(f_bytes(1, hello)))
    welcome = f_bytes(1, "h-1") + f_varint(2, 7) + f_varint(3, 1000) + f_varint(4, 5000) + f_varint(6, 1)
    heartbeat = f_varint(1, 7) + f_varint(2, 1) + f_bytes(3, resources) + f_varint(4, 9)
    put(t, "welcome_heartbeat.bin", frame(f_bytes(2, welcome)) + frame(f_bytes(3, heartbeat)))
    image = f_varint(1, 1) + f_bytes(2, "sha256:" + "a" * 64) + f_bytes(5, "console=ttyS0")
    spec = (f_bytes(1, "i-1") + f_bytes(2, "web-0") + f_varint(3, 2) + f_varint(4, 1) + f_bytes(5, image)
            + f_varint(6, 1) + f_varint(7, 256) + f_varint(9, 10000) + f_varint(10, 3)
            + f_map(11, {"K": "v"}) + f_varint(12, 2) + f_varint(14, 2))
    desired = f_varint(1, 7) + f_varint(2, 42) + f_bytes(3, spec) + f_bytes(3, spec) + f_varint(4, 1)
    put(t, "desired_state.bin", frame(f_bytes(4, desired)))
    status = (f_varint(1, 7) + f_bytes(2, "i-1") + f_varint(3, 2) + f_varint(4, 6)
              + f_varint(5, (1 << 64) - 137) + f_bytes(6, "exited") + f_bytes(7, "10.0.0.2")
              + f_varint(8, 1700000000000) + f_varint(10, 1700000000500))
    put(t, "instance_status.bin", frame(f_bytes(5, status)))
    put(t, "log.bin", frame(f_bytes(6, f_varint(1, 1) + f_bytes(2, "i-1") + f_varint(4, 1)))
        + frame(f_bytes(7, f_varint(1, 1) + f_bytes(2, b"\x00\xffboot\n") + f_varint(3, 1))))
    put(t, "config_error.bin", frame(f_bytes(8, f_bytes(1, "i-1") + f_varint(2, 5) + f_map(3, {"a": "b"})))
        + frame(f_bytes(9, f_varint(1, 1) + f_bytes(2, "bad frame"))))
    put(t, "empty_envelope.bin", frame(b""))
    put(t, "partial.bin", struct.pack(">I", 100) + b"\x0a\x05")


def domxml():
    t = "fuzz_domxml"

    def spec(flags, strings, typ=1, vcpus=1, mem=256, gen=1):
        hdr = struct.pack("<BBIQQ", flags, typ, vcpus, mem, gen)
        return hdr + b"\x00".join(s.encode() if isinstance(s, str) else s for s in strings)

    # order: id, arch, kernel, initrd, cmdline, disk, console, channel, bootcfg
    put(t, "kernel_full.bin", spec(0x7f, ["abc-1_X", "x86_64", "/var/lib/cloud/k", "/var/lib/cloud/i",
                                          "console=ttyS0 a&b <x> \"q\" 'y'\tz\n",
                                          "", "/var/log/c.log", "/run/cloud/ch.sock", "/run/cloud/cfg.json"],
                                   typ=2, vcpus=4, mem=4096, gen=7))
    put(t, "disk.bin", spec(0x10, ["d1", "", "", "", "", "/var/lib/cloud/overlay.qcow2", "/var/log/d1.log"],
                            typ=3))
    put(t, "kernel_min.bin", spec(0x02, ["k", "", "/k"]))
    put(t, "metadata.bin", spec(0x02, ['<cloud:instance xmlns:cloud="https://cloud.example/xmlns/instance/1">'
                                       '<cloud:id>abc</cloud:id><cloud:generation>3</cloud:generation>'
                                       '</cloud:instance>'], typ=0x81))
    put(t, "unicode.bin", spec(0x0a, ["u", "", "/k/\u00e9\u4e2d\U0001f600", "", "init=/bin/\u00e9 \u2028"]))


request_json()
frames()
domxml()
sys.exit(0)
