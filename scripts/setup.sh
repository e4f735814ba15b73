#!/usr/bin/env bash
# Installs every Debian package (and the npm OpenAPI linter) the project needs.
# Idempotent; run as root on Debian 12. Skips apt when everything is present.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates curl
  libevent-dev libpq-dev libssl-dev libprotobuf-c-dev protobuf-c-compiler
  libjansson-dev libxml2-dev libvirt-dev libcmocka-dev
  libnl-3-dev libnl-route-3-dev # agent/hostnet.c: the host network over netlink
  iputils-ping # tests/integration/test_hostnet.py
  postgresql postgresql-contrib
  libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
  linux-image-amd64 busybox-static cpio
  dosfstools mtools syslinux syslinux-common # images/build-disk.sh
  wrk clang libclang-rt-14-dev python3 jq
  etcd-server etcd-client dnsmasq-base
  patroni # scripts/pg_ha.sh: PostgreSQL failover (docs/ha.md)
  libnftables-dev # agent/netpolicy.c: links are the firewall (docs/network-policy.md)
  nftables # the nft CLI, to inspect table inet cloud by hand; the code does not run it
  libsystemd-dev # sd_notify: Type=notify readiness of the units (packaging/systemd)
  systemd # systemd-analyze verify on the units (tests/packaging)
)
# Node.js may come from elsewhere on a developer machine; Debian's npm only
# where there is no npm at all.
command -v node >/dev/null || PKGS+=(nodejs)
command -v npm >/dev/null || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Debian's postgresql package would start a cluster on 5432; the project
  # runs its own clusters, so keep package scripts from starting services.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# OpenAPI linter, pinned.
root=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$root/.tools/node_modules/.bin/redocly" ]; then
  mkdir -p "$root/.tools"
  (cd "$root/.tools" && npm install --silent --no-audit --no-fund @redocly/cli@1.34.20 >/dev/null)
fi
echo "setup: dependencies present"
