#!/usr/bin/env bash
# build-disk.sh OUTDIR: builds the sample "disk" image used by the e2e
# tests, from Debian packages only (those of build-sample.sh, plus
# dosfstools, mtools, syslinux, qemu-utils):
#   OUTDIR/disk.img     raw disk that boots through the BIOS: a FAT
#                       file system (no partition table, like a USB
#                       "superfloppy") holding SYSLINUX, the sample kernel
#                       and initramfs (build-sample.sh), and a syslinux.cfg
#                       that boots them with the sample command line plus
#                       cloud.disk=1
#   OUTDIR/disk.qcow2   the same disk as qcow2
#
# Nothing is mounted (mkfs.vfat, mcopy and the mtools build of syslinux
# work on the image file), so no loop device or root is needed. The guest
# prints CLOUD-SAMPLE-BOOTED and "CLOUD-CMDLINE: cloud.disk=1" on ttyS0:
# the second line says the kernel came off the disk.
#
# Idempotent like build-sample.sh.
set -euo pipefail

out=${1:?usage: build-disk.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "build-disk: $*" >&2; exit 1; }

for t in mkfs.vfat mcopy syslinux qemu-img; do
  command -v "$t" >/dev/null || die "no $t (install dosfstools, mtools, syslinux, qemu-utils)"
done

mkdir -p "$out"
bash "$here/build-sample.sh" "$out/sample" >/dev/null
stamp="sample=$(cat "$out/sample/.stamp" | sha256sum | cut -c1-16) script=$(sha256sum "$0" | cut -c1-16)"
if [ -f "$out/.stamp" ] && [ "$(cat "$out/.stamp")" = "$stamp" ] &&
   [ -f "$out/disk.img" ] && [ -f "$out/disk.qcow2" ]; then
  echo "build-disk: $out is up to date"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/build-disk.XXXXXX")
trap 'rm -rf "$work"' EXIT
img=$work/disk.img
# Kernel + initramfs + 8 MiB of room.
need=$(( ($(stat -c %s "$out/sample/vmlinuz") + $(stat -c %s "$out/sample/initrd.img")) / 1048576 + 8 ))
truncate -s "${need}M" "$img"
mkfs.vfat -n CLOUDDISK "$img" >/dev/null
cat > "$work/syslinux.cfg" <<EOF
DEFAULT cloud
PROMPT 0
TIMEOUT 0
LABEL cloud
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $(cat "$out/sample/cmdline") cloud.disk=1
EOF
export MTOOLS_SKIP_CHECK=1
mcopy -i "$img" "$out/sample/vmlinuz" "$out/sample/initrd.img" "$work/syslinux.cfg" ::/
syslinux --install "$img"
qemu-img convert -f raw -O qcow2 "$img" "$work/disk.qcow2"
chmod 644 "$img" "$work/disk.qcow2"
mv -f "$img" "$out/disk.img"
mv -f "$work/disk.qcow2" "$out/disk.qcow2"
echo "$stamp" > "$out/.stamp"
echo "build-disk: built $out/disk.img and disk.qcow2 (${need} MiB)"
