#!/usr/bin/env bash
# build-sample.sh OUTDIR: builds the sample "kernel" image used by the demo
# and the e2e tests, from Debian packages only (linux-image-amd64,
# busybox-static, cpio):
#   OUTDIR/vmlinuz      the host's Debian kernel
#   OUTDIR/initrd.img   busybox initramfs whose /init speaks the guest
#                       contract of DESIGN.md ("Guest channel")
#   OUTDIR/cmdline      default kernel command line
#
# The guest prints CLOUD-SAMPLE-BOOTED on ttyS0, prints its boot config
# (cmdline cloud.* and each line of fw_cfg opt/org.cloud/config as
# "CLOUD-FWCFG: ..."), its init's argv (the args after "--" on the kernel
# command line) as "CLOUD-ARGS: [arg]" lines, and once per boot the boot
# line {"env":{...},"args":[...]} (from fw_cfg, else the first one on the
# channel) as "CLOUD-ENV: KEY=VALUE" and "CLOUD-BOOTARGS: [arg]" lines
# (JSON escapes other than \" \\ \/ are printed as they are); echoes each JSON line
# it reads from virtio-serial port org.cloud.config.0 as "CLOUD-CONFIG: ...",
# answers each {"version":N,...} line with {"ack":N}, says {"ready":true}
# once the host is connected, and on an exit request (cmdline cloud.exit=N,
# or a line with "exit_code":N) writes {"exit":N} on the port and powers off.
# The ACPI power button (virDomainShutdown: the agent's TERM) powers it off
# cleanly (busybox acpid on the button's evdev device; not with cmdline
# cloud.acpi=off), and a config line
# with "PANIC":"now" panics its kernel (sysrq c), which QEMU's pvpanic
# device reports to libvirt as a crash.
# With a NIC (virtio-net) it asks DHCP for an address (so libvirt's lease
# table knows it) and reports it as {"addr":"IP"}.
#
# Idempotent: does nothing when OUTDIR already holds a build from the same
# kernel, busybox and script. Environment: KVER picks a kernel version
# (default: the newest /boot/vmlinuz-*).
set -euo pipefail

out=${1:?usage: build-sample.sh OUTDIR}
kver=${KVER:-$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|^/boot/vmlinuz-||' | sort -V | tail -n1)}
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
busybox=/bin/busybox
# Guest drivers the contract needs: the console port, fw_cfg, a NIC, the
# ACPI power button with its input events (evdev, for acpid), and the
# ISA pvpanic device (pvpanic-mmio binds it through ACPI QEMU0001).
want_modules="virtio_pci virtio_console qemu_fw_cfg virtio_net button evdev pvpanic-mmio"

die() { echo "build-sample: $*" >&2; exit 1; }

[ -n "$kver" ] && [ -r "$kernel" ] || die "no kernel in /boot (install linux-image-amd64)"
[ -d "$moddir" ] || die "no modules for kernel $kver in $moddir"
[ -x "$busybox" ] || die "no $busybox (install busybox-static)"
if ! file "$busybox" 2>/dev/null | grep -q 'statically linked'; then
  # Without file(1), trust ldd: a static binary is "not a dynamic executable".
  if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is not statically linked (install busybox-static)"; fi
fi
command -v cpio >/dev/null || die "no cpio (install cpio)"

stamp="kver=$kver script=$(sha256sum "$0" | cut -c1-16) busybox=$(sha256sum "$busybox" | cut -c1-16)"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] &&
   [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ -f "$out/cmdline" ]; then
  echo "build-sample: $out is up to date ($kver)"
  exit 0
fi

mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/build-sample.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$busybox" "$root/bin/busybox"

# Modules, dependencies first, skipping drivers built into this kernel.
declare -A seen=()
order=()
add_module() {
  local name=$1 path deps d
  [ -n "${seen[$name]:-}" ] && return 0
  seen[$name]=1
  if grep -qE "/$name\.ko$" "$moddir/modules.builtin" 2>/dev/null; then
    return 0
  fi
  path=$(grep -E "(^|/)$name\.ko(\.[a-z]+)?:" "$moddir/modules.dep" | head -n1 | cut -d: -f1) ||
    true
  [ -n "$path" ] || die "module $name is neither built in nor in $moddir/modules.dep"
  case "$path" in *.ko) ;; *) die "module $path is compressed; busybox insmod needs plain .ko" ;; esac
  deps=$(grep -E "^$path:" "$moddir/modules.dep" | cut -d: -f2)
  for d in $deps; do
    d=${d##*/}
    add_module "${d%.ko}"
  done
  cp "$moddir/$path" "$root/lib/modules/$name.ko"
  order+=("$name")
}
for m in $want_modules; do add_module "$m"; done
printf '%s\n' "${order[@]}" > "$root/lib/modules/load.order"

cat > "$root/init" <<'EOF'
#!/bin/busybox sh
# Sample guest init: the guest side of the cloud guest contract.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s

while read -r m; do
  [ -n "$m" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
done < /lib/modules/load.order

# The ACPI power button: busybox acpid reads the button's input device
# and runs /etc/acpi/PWRF/00000080 (its default action for KEY_POWER).
# cmdline cloud.acpi=off: no acpid, a guest that ignores the button.
if ! grep -qw cloud.acpi=off /proc/cmdline; then
  mkdir -p /etc/acpi/PWRF
  echo "PWRF PWRF/00000080" > /etc/acpid.conf
  printf '#!/bin/sh\necho CLOUD-POWER-BUTTON >/dev/console\nsync\npoweroff -f\n' > /etc/acpi/PWRF/00000080
  chmod 755 /etc/acpi/PWRF/00000080
  acpid -c /etc/acpi -a /etc/acpid.conf -l /tmp/acpid.log -p /tmp/acpid.pid
fi

echo "CLOUD-SAMPLE-BOOTED kernel=$(uname -r)"
# init's argv: what came after "--" (or was a bare word) on the command line
for a in "$@"; do echo "CLOUD-ARGS: [$a]"; done

exit_req=
for w in $(cat /proc/cmdline); do
  case "$w" in
    cloud.exit=*) exit_req=${w#cloud.exit=}; echo "CLOUD-CMDLINE: $w" ;;
    cloud.*) echo "CLOUD-CMDLINE: $w" ;;
  esac
done
fwcfg=/sys/firmware/qemu_fw_cfg/by_name/opt/org.cloud/config/raw
# The boot line {"env":{...},"args":[...]} as CLOUD-ENV / CLOUD-BOOTARGS
# lines, once per boot (fw_cfg has it first; else the channel).
env_shown=
show_boot() {
  [ -n "$env_shown" ] && return 0
  env_shown=1
  echo "$1" | awk -f /bin/bootline.awk
}
if [ -r "$fwcfg" ]; then
  while IFS= read -r l || [ -n "$l" ]; do
    echo "CLOUD-FWCFG: $l"
    case "$l" in '{"env":'*) show_boot "$l" ;; esac
  done < "$fwcfg"
fi

# Find the config port; udev would make the by-name link, we have no udev.
port=/dev/virtio-ports/org.cloud.config.0
i=0
while [ ! -e "$port" ] && [ $i -lt 50 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -r "$p/name" ] || continue
    [ "$(cat "$p/name")" = org.cloud.config.0 ] || continue
    dev=/dev/${p##*/}
    if [ ! -e "$dev" ]; then
      mm=$(cat "$p/dev")
      mknod "$dev" c "${mm%%:*}" "${mm##*:}"
    fi
    mkdir -p /dev/virtio-ports
    ln -sf "$dev" "$port"
  done
  [ -e "$port" ] || { usleep 100000; i=$((i + 1)); }
done

report_exit() {
  echo "CLOUD-EXIT: $1"
  if [ -e "$port" ]; then
    # A write blocks until the host side is connected: give it 10 s.
    ( echo "{\"exit\":$1}" >&3 ) &
    w=$!
    i=0
    while kill -0 $w 2>/dev/null && [ $i -lt 100 ]; do usleep 100000; i=$((i + 1)); done
    usleep 300000
  fi
  sync
  poweroff -f
}

if [ ! -e "$port" ]; then
  echo "CLOUD-CHANNEL: none"
  [ -n "$exit_req" ] && report_exit "$exit_req"
  while true; do sleep 3600; done
fi
echo "CLOUD-CHANNEL: $port"
exec 3<>"$port"
[ -n "$exit_req" ] && report_exit "$exit_req"
# Writes block until the host side connects: from the background.
( echo '{"ready":true}' >&3 ) &
if [ -e /sys/class/net/eth0 ]; then
  ifconfig eth0 up
  cat > /bin/dhcp-event <<'EOS'
#!/bin/sh
[ "$1" = bound ] || [ "$1" = renew ] || exit 0
ifconfig "$interface" "$ip" netmask "${subnet:-255.255.255.0}" up
echo "CLOUD-ADDR: $ip"
echo "$ip" > /tmp/addr.new && mv /tmp/addr.new /tmp/addr
EOS
  chmod 755 /bin/dhcp-event
  udhcpc -i eth0 -b -s /bin/dhcp-event -t 10 >/dev/null 2>&1
  # The port opens once (virtio-serial): the report goes through fd 3.
  ( i=0
    while [ ! -s /tmp/addr ] && [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
    [ -s /tmp/addr ] && echo "{\"addr\":\"$(cat /tmp/addr)\"}" >&3 ) &
fi
while true; do
  # Reads return EOF while no host is connected: poll.
  if read -r line <&3; then
    echo "CLOUD-CONFIG: $line"
    case "$line" in '{"env":'*) show_boot "$line" ;; esac
    v=$(echo "$line" | sed -n 's/^{"version":\([0-9][0-9]*\),.*/\1/p')
    [ -n "$v" ] && ( echo "{\"ack\":$v}" >&3 ) &
    code=$(echo "$line" | sed -n 's/.*"exit_code"[[:space:]]*:[[:space:]]*"\{0,1\}\([0-9][0-9]*\).*/\1/p')
    [ -n "$code" ] && report_exit "$code"
    case "$line" in
      *'"PANIC":"now"'*) echo "CLOUD-PANIC"; echo c > /proc/sysrq-trigger ;;
    esac
  else
    usleep 200000
  fi
done
EOF
chmod 755 "$root/init"

# The boot line's reader: the compact JSON the agent writes (channel.h).
cat > "$root/bin/bootline.awk" <<'AWK'
function str(   out, c) {
  out = ""
  p++
  while (p <= length(s)) {
    c = substr(s, p, 1)
    if (c == "\\") {
      c = substr(s, p + 1, 1)
      if (c != "\"" && c != "\\" && c != "/") out = out "\\"
      out = out c
      p += 2
      continue
    }
    if (c == "\"") { p++; return out }
    out = out c
    p++
  }
  return out
}
{
  s = $0
  if (substr(s, 1, 8) != "{\"env\":{") next
  p = 9
  while (substr(s, p, 1) == "\"") {
    k = str()
    p++
    v = str()
    print "CLOUD-ENV: " k "=" v
    if (substr(s, p, 1) == ",") p++
  }
  p++
  if (substr(s, p, 9) != ",\"args\":[") next
  p += 9
  while (substr(s, p, 1) == "\"") {
    print "CLOUD-BOOTARGS: [" str() "]"
    if (substr(s, p, 1) == ",") p++
  }
}
AWK

(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$work/initrd.img"
cp "$kernel" "$work/vmlinuz"
echo "console=ttyS0 quiet cloud.sample=1" > "$work/cmdline"
chmod 644 "$work/vmlinuz" "$work/initrd.img" "$work/cmdline"
for f in vmlinuz initrd.img cmdline; do mv -f "$work/$f" "$out/$f"; done
echo "$stamp" > "$out/.stamp"
echo "build-sample: built $out (kernel $kver, modules: ${order[*]:-none})"
