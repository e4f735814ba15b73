#!/usr/bin/env bash
# readme_walk: the README's own newcomer walk, extracted from README.md and
# run against a real dev cluster (cloud-controller --dev: private
# PostgreSQL, local agent on qemu:///system, sample image), so the README
# cannot rot. Each line must succeed, except that `cloudctl wait` exits
# with the instance's exit code, which must be the code it printed.
#
#   readme_walk.sh CLOUD_CONTROLLER CLOUD_AGENT CLOUDCTL_DIR
set -uo pipefail
ctl=${1:?usage: readme_walk.sh CLOUD_CONTROLLER CLOUD_AGENT CLOUDCTL_DIR}
agent=${2:?}
clidir=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

# A skip (77) on a developer's machine; under CI (CI set) a failure, since
# scripts/setup.sh installs QEMU there.
skip() { echo "readme_walk: $*"; [ -z "${CI:-}" ] || exit 1; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (libvirtd, qemu:///system)"
command -v qemu-system-x86_64 >/dev/null || skip "no QEMU"

data=$(mktemp -d /tmp/cloud-readme.XXXXXX)
chmod 755 "$data"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
api=$(free_port)
gw=$(free_port)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    # Dev mode leaves guests running on purpose (re-adopted next time), but
    # this run's data directory is thrown away: remove what the walk made
    # through the API while the agent still runs, and wait for its domains.
    for s in $(cloudctl services ls -o name 2>/dev/null); do cloudctl services rm "$s" >/dev/null 2>&1; done
    for i in $(cloudctl ps -a -o name 2>/dev/null); do cloudctl rm "$i" >/dev/null 2>&1; done
    for _ in $(seq 1 150); do
      [ -z "$(cloudctl ps -a -o name 2>/dev/null)" ] && break
      sleep 0.2
    done
    kill -INT "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  # Whatever is still defined (libvirtd up, the API cleanup cut short): every
  # domain whose XML names a file under $data.
  for d in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep '^cloud-'); do
    if virsh -c qemu:///system dumpxml "$d" 2>/dev/null | grep -qF "$data/"; then
      virsh -c qemu:///system destroy "$d" >/dev/null 2>&1
      virsh -c qemu:///system undefine "$d" >/dev/null 2>&1
    fi
  done
  if [ "${keep:-0}" = 1 ]; then echo "readme_walk: kept $data"; else rm -rf "$data"; fi
}
trap cleanup EXIT

export XDG_CONFIG_HOME=$data/config
export PATH=$clidir:$PATH
"$ctl" --dev --data-dir "$data/dev" --listen "127.0.0.1:$api" \
  --agent-listen "127.0.0.1:$gw" --agent-bin "$agent" \
  --sample-script "$root/images/build-sample.sh" >"$data/controller.out" 2>"$data/controller.err" &
pid=$!
for _ in $(seq 1 600); do
  grep -q "cloud dev cluster is up" "$data/controller.out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/controller.err"; echo "FAIL: the dev cluster died"; exit 1; }
  sleep 0.2
done
grep -q "cloud dev cluster is up" "$data/controller.out" || { echo "FAIL: no dev cluster in 120 s"; keep=1; exit 1; }
cat "$data/controller.out"
grep -q "real QEMU guests" "$data/controller.out" ||
  echo "note: the local agent is not on real QEMU here; the walk runs on libvirt's test driver"
# The walk starts once the local agent has joined.
for _ in $(seq 1 150); do
  cloudctl hosts ls -o name 2>/dev/null | grep -q . && break
  sleep 0.2
done

# The lines of the first ```sh block after "Then, in another terminal:".
mapfile -t lines < <(awk '/Then, in another terminal:/ {f=1; next}
  f && /^```sh/ {b=1; next}
  b && /^```/ {exit}
  b {print}' "$root/README.md")
[ "${#lines[@]}" -ge 3 ] || { echo "FAIL: no walk found in README.md"; exit 1; }

fail=0
for line in "${lines[@]}"; do
  case "$line" in export\ PATH=*) continue;; esac
  case "$line" in
    "cloudctl kill -s TERM "*)
      # The sample guest powers off on the ACPI button once it has booted
      # (its acpid starts before it says ready on its channel). Run right
      # after the scale, the line can catch QEMU (TCG) still booting it,
      # and a TERM then outlasts the grace period and ends in 143: right,
      # but not what the README shows. Wait for the guest to say ready, as
      # a reader waits for its logs, before the line runs.
      inst=$(printf '%s\n' "$line" | awk '{print $5}')
      for _ in $(seq 1 600); do
        cloudctl inspect "$inst" 2>/dev/null | grep -q '"ready": *true' && break
        sleep 0.2
      done
      cloudctl inspect "$inst" 2>/dev/null | grep -q '"ready": *true' ||
        { echo "FAIL: $inst never said ready"; fail=1; };;
  esac
  echo "\$ $line"
  out=$(timeout 300 bash -c "$line" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  case "$line" in
    *"cloudctl wait "*)
      code=$(printf '%s\n' "$out" | tail -1)
      # The sample guest powers off on the ACPI button: a clean 0, not 143.
      if [ "$code" != "$rc" ] || [ "$code" != 0 ]; then
        echo "FAIL: wait exited $rc after printing '$code' (want 0 from both)"; fail=1
      fi;;
    *)
      [ "$rc" = 0 ] || { echo "FAIL: exit $rc"; fail=1; };;
  esac
  case "$line" in
    "cloudctl ps")
      n=$(printf '%s\n' "$out" | grep -cE '^[0-9a-f]{12} +hello-[0-9]+ +hello +running')
      [ "$n" -ge 2 ] || { echo "FAIL: ps shows $n running hello instances, want 2"; fail=1; };;
  esac
done
if [ "$fail" = 0 ]; then
  echo "PASS: the README walk works as written"
else
  keep=1
  tail -30 "$data/dev/agent.log" 2>/dev/null
fi
exit $fail
