#!/usr/bin/env bash
# test_install.sh BUILD_DIR WORK_DIR: `cmake --install` into a DESTDIR, as a
# package build does, then checks what an operator relies on:
#   - exactly the expected files, binaries and scripts executable;
#   - the installed cloud-controller, cloud-agent and cloudctl run
#     (--version, --help) from there;
#   - man pages format without a groff warning, bash completions load and
#     complete;
#   - the units name the installed binaries and pass `systemd-analyze
#     verify --root=DESTDIR` with no message at all (it exits 0 on unknown
#     keys and bad values, only warning: any output fails here);
#   - systemd-sysusers --root=DESTDIR creates the user cloud;
#   - a second install under another --prefix points the units there.
set -euo pipefail

build=${1:?usage: test_install.sh BUILD_DIR WORK_DIR}
work=${2:?usage: test_install.sh BUILD_DIR WORK_DIR}
dest=$work/root
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

rm -rf "$work"
mkdir -p "$work"
DESTDIR=$dest cmake --install "$build" --prefix /usr >"$work/install.log" ||
  { cat "$work/install.log"; echo "FAIL: cmake --install"; exit 1; }

expected="usr/bin/cloud-agent
usr/bin/cloud-controller
usr/bin/cloudctl
usr/lib/systemd/system/cloud-agent.service
usr/lib/systemd/system/cloud-controller.service
usr/lib/sysusers.d/cloud.conf
usr/libexec/cloud/build-sample.sh
usr/share/bash-completion/completions/cloud-agent
usr/share/bash-completion/completions/cloud-controller
usr/share/bash-completion/completions/cloudctl
usr/share/man/man1/cloudctl.1
usr/share/man/man8/cloud-agent.8
usr/share/man/man8/cloud-controller.8"
got=$(cd "$dest" && find . -type f -o -type l | sed 's|^\./||' | LC_ALL=C sort)
if [ "$got" != "$expected" ]; then
  fail "installed files differ from the expected list (< expected, > installed):"
  diff <(echo "$expected") <(echo "$got") || true
fi
for f in usr/bin/cloud-agent usr/bin/cloud-controller usr/bin/cloudctl \
         usr/libexec/cloud/build-sample.sh; do
  [ -x "$dest/$f" ] || fail "$f is not executable"
done

# The installed programs run, and say which version they are.
version=$(sed -n 's/^project(cloud VERSION \([0-9.]*\).*/\1/p' \
  "$(dirname "$0")/../../CMakeLists.txt")
[ -n "$version" ] || fail "no project version in CMakeLists.txt"
check_out() { # NAME EXPECTED-SUBSTRING CMD...
  local name=$1 want=$2 out rc=0
  shift 2
  out=$("$@" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] || { fail "$name exited $rc: $out"; return; }
  case $out in *"$want"*) ;; *) fail "$name: no \"$want\" in: $out" ;; esac
}
check_out "cloud-controller --version" "cloud-controller $version" "$dest/usr/bin/cloud-controller" --version
check_out "cloud-controller --help" "usage: cloud-controller" "$dest/usr/bin/cloud-controller" --help
check_out "cloud-agent --version" "cloud-agent $version" "$dest/usr/bin/cloud-agent" --version
check_out "cloud-agent --help" "usage: cloud-agent" "$dest/usr/bin/cloud-agent" --help
check_out "cloudctl version --client" "cloudctl $version" "$dest/usr/bin/cloudctl" version --client
check_out "cloudctl --help" "Usage: cloudctl" "$dest/usr/bin/cloudctl" --help

# Man pages: groff warnings (-ww) are failures.
for m in man1/cloudctl.1 man8/cloud-agent.8 man8/cloud-controller.8; do
  out=$(groff -man -ww -z "$dest/usr/share/man/$m" 2>&1) || fail "groff $m"
  [ -z "$out" ] || fail "groff warns on $m: $out"
  out=$(MANWIDTH=80 man -l "$dest/usr/share/man/$m" 2>&1 | head -n 3)
  case $out in *NAME*) ;; *) fail "man -l $m shows no NAME section: $out" ;; esac
done

# Completions: each file defines its completion and offers the commands.
complete_words() { # FILE FUNC WORDS...
  local file=$1 func=$2
  shift 2
  bash -c 'source "$1"; f=$2; shift 2; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "$f"; echo "${COMPREPLY[*]}"' \
    _ "$file" "$func" "$@"
}
comp=$dest/usr/share/bash-completion/completions
out=$(complete_words "$comp/cloud-agent" _cloud_agent cloud-agent "")
[ "$out" = "run join facts boot-once net version" ] || fail "cloud-agent completion of a command: \"$out\""
out=$(complete_words "$comp/cloud-agent" _cloud_agent cloud-agent run --host-n)
[ "$out" = "--host-network" ] || fail "cloud-agent run --host-n completes to \"$out\""
out=$(complete_words "$comp/cloud-controller" _cloud_controller cloud-controller join-token "")
[ "$out" = "create list" ] || fail "cloud-controller join-token completes to \"$out\""
out=$(complete_words "$comp/cloud-controller" _cloud_controller cloud-controller --agent-l)
[ "$out" = "--agent-listen" ] || fail "cloud-controller --agent-l completes to \"$out\""
bash -c 'source "$1" && complete -p cloudctl >/dev/null' _ "$comp/cloudctl" ||
  fail "the cloudctl completion registers nothing"

# The units run the installed binaries.
units=$dest/usr/lib/systemd/system
grep -qx 'ExecStart=/usr/bin/cloud-controller --data-dir /var/lib/cloud/controller $CLOUD_CONTROLLER_ARGS' \
  "$units/cloud-controller.service" || fail "cloud-controller.service: ExecStart is not /usr/bin/cloud-controller"
grep -qx 'ExecStart=/usr/bin/cloud-agent run --state-dir /var/lib/cloud/agent $CLOUD_AGENT_ARGS' \
  "$units/cloud-agent.service" || fail "cloud-agent.service: ExecStart is not /usr/bin/cloud-agent"

# systemd-analyze verify checks ExecStart= inside --root, so the DESTDIR is
# the root. The units they order against (sysinit.target, libvirtd.service,
# postgresql.service, ...) come from this host, copied into a root of
# their own beside the install: the installed files stay untouched. The man
# pages are checked above (verify's own check runs man(1) outside --root).
vroot=$work/verify-root
cp -a "$dest" "$vroot"
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [ -d "$d" ] && cp -a --no-clobber "$d/." "$vroot/usr/lib/systemd/system/"
done
[ -f "$vroot/usr/lib/systemd/system/sysinit.target" ] || fail "no systemd units on this host to verify against"
for u in cloud-controller.service cloud-agent.service; do
  rc=0
  out=$(systemd-analyze verify --root="$vroot" --man=no "$u" 2>&1) || rc=$?
  [ "$rc" -eq 0 ] && [ -z "$out" ] || fail "systemd-analyze verify $u (exit $rc): $out"
done

# The sysusers file makes the controller's user.
sroot=$work/sysusers-root
mkdir -p "$sroot/etc" "$sroot/usr/lib/sysusers.d"
cp "$dest/usr/lib/sysusers.d/cloud.conf" "$sroot/usr/lib/sysusers.d/"
out=$(systemd-sysusers --root="$sroot" 2>&1) || fail "systemd-sysusers: $out"
grep -q '^cloud:x:[0-9]*:[0-9]*:cloud controller:/var/lib/cloud:/usr/sbin/nologin$' "$sroot/etc/passwd" ||
  fail "systemd-sysusers made no user cloud: $(cat "$sroot/etc/passwd" 2>/dev/null)"
grep -q '^cloud:x:' "$sroot/etc/group" || fail "systemd-sysusers made no group cloud"

# Another prefix at install time: the units follow it.
DESTDIR=$work/root2 cmake --install "$build" --prefix /opt/cloud >"$work/install2.log" ||
  fail "cmake --install --prefix /opt/cloud"
grep -q '^ExecStart=/opt/cloud/bin/cloud-controller ' \
  "$work/root2/opt/cloud/lib/systemd/system/cloud-controller.service" ||
  fail "--prefix /opt/cloud: cloud-controller.service does not run /opt/cloud/bin/cloud-controller"

if [ "$fails" -ne 0 ]; then
  echo "test_install: $fails failure(s)"
  exit 1
fi
echo "test_install: all checks passed ($(echo "$expected" | wc -l) files)"
