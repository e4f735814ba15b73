#!/usr/bin/env bash
# test_cli: cloudctl against the real cloud-controller and a throwaway
# PostgreSQL, checking what a user sees: output, exit codes, error lines.
#
# Environment:
#   CLOUD_CONTROLLER   the cloud-controller binary (set by ctest)
#   CLOUDCTL           the cloudctl binary (set by ctest)
#   PG_BINDIR          PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
#   CLOUD_ITEST_KEEP=1 keep the temp dir (logs, data) after the run
set -euo pipefail

CTL=${CLOUD_CONTROLLER:?CLOUD_CONTROLLER must name the cloud-controller binary}
CLOUDCTL=${CLOUDCTL:?CLOUDCTL must name the cloudctl binary}
PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
[ -x "$CTL" ] || { echo "test_cli: $CTL is not executable" >&2; exit 1; }
[ -x "$CLOUDCTL" ] || { echo "test_cli: $CLOUDCTL is not executable" >&2; exit 1; }
command -v jq >/dev/null || { echo "test_cli: jq is required" >&2; exit 1; }

tmp=$(mktemp -d /tmp/cloud-cli-test.XXXXXX)
ctl_pid=
pg_started=
failures=0
checks=0

cleanup() {
    local rc=$?
    if [ -n "$ctl_pid" ]; then
        kill -TERM "$ctl_pid" 2>/dev/null || true
        wait "$ctl_pid" 2>/dev/null || true
    fi
    if [ -n "$pg_started" ]; then
        runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$tmp/pgdata" -m fast \
            -w -t 30 stop >/dev/null 2>&1 || true
    fi
    if [ "${CLOUD_ITEST_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "test_cli: logs kept in $tmp" >&2
        [ "$rc" != 0 ] && [ -f "$tmp/controller.log" ] &&
            tail -n 30 "$tmp/controller.log" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ---- PostgreSQL (as the postgres user: initdb refuses root) ------------
chown postgres: "$tmp"
chmod 755 "$tmp"
pg_port=$(free_port)
runuser -u postgres -- "$PG_BINDIR/initdb" -D "$tmp/pgdata" -U postgres \
    -A trust -E UTF8 --locale=C --no-sync >"$tmp/initdb.log" 2>&1
cat >>"$tmp/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$tmp'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$tmp/pgdata" -l "$tmp/postgres.log" \
    -w -t 30 start >/dev/null
pg_started=1
psql_do() {
    psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pg_port" -U postgres "$@"
}
psql_do -d postgres -c "CREATE DATABASE cloud"

# ---- controller ----------------------------------------------------------
# Every API call needs a token: an admin one for the whole walk.
admin_token=$("$CTL" token create --db "postgresql://postgres@127.0.0.1:$pg_port/cloud" \
    --name itest-admin --role admin)
http_port=$(free_port)
mkdir -p "$tmp/ctl"
"$CTL" --listen "127.0.0.1:$http_port" \
    --db "postgresql://postgres@127.0.0.1:$pg_port/cloud" \
    --data-dir "$tmp/ctl" >"$tmp/controller.log" 2>&1 &
ctl_pid=$!
for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$ctl_pid" 2>/dev/null || { echo "test_cli: controller died" >&2; exit 1; }
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null

digest="sha256:$(printf 'hello' | sha256sum | cut -d' ' -f1)"
psql_do -d cloud <<EOF
INSERT INTO blobs (digest, size) VALUES ('$digest', 1000);
INSERT INTO images (id, name, tag, kind, kernel_digest, initrd_digest, cmdline, size)
  VALUES ('c0ffee0123456789', 'hello', 'latest', 'kernel', '$digest', NULL, 'console=ttyS0', 1000);
INSERT INTO hosts (id, name, address, labels, cap_vcpus, cap_memory_mib, cap_disk_gib,
                   hypervisor, arch, last_seen)
  VALUES ('h-0001', 'hv1', '127.0.0.1', '{"zone":"a"}', 8, 16384, 100, 'qemu', 'x86_64', now());
EOF

# ---- helpers -------------------------------------------------------------
# Nothing of the developer's own set-up may leak in: no context file, no env.
export XDG_CONFIG_HOME="$tmp/config"
export HOME="$tmp/home"
unset NO_COLOR
export CLOUD_TOKEN="$admin_token"
export CLOUD_URL="http://127.0.0.1:$http_port"

# cli ARGS...: runs cloudctl, leaves $out, $err and $rc.
cli() {
    set +e
    "$CLOUDCTL" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    set -e
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
}

fail() {
    failures=$((failures + 1))
    echo "FAIL: $*" >&2
    echo "  stdout: $out" >&2
    echo "  stderr: $err" >&2
}

check() { # check DESCRIPTION CONDITION...
    local what=$1
    shift
    checks=$((checks + 1))
    if "$@"; then echo "ok - $what"; else fail "$what"; fi
}

rc_is() { [ "$rc" = "$1" ]; }
out_has() { grep -qE -- "$1" <<<"$out"; }
out_lacks() { ! grep -qE -- "$1" <<<"$out"; }
# An error is exactly one line, "cloudctl: ...", and nothing on stdout.
one_error_line() {
    [ "$(printf '%s\n' "$err" | wc -l)" = 1 ] && [[ "$err" == cloudctl:\ * ]] &&
        [ -z "$out" ] && { [ -z "${1:-}" ] || grep -qE -- "$1" <<<"$err"; }
}

# A cloudctl that follows (watch, -f, -w) runs in the background:
# bg NAME ARGS... starts it into $tmp/NAME.out and .err; bg_until NAME
# PATTERN waits up to 5 s for its output to match; bg_end NAME stops it
# and leaves its $out and $err.
bg() {
    local name=$1
    shift
    "$CLOUDCTL" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    bg_pid=$!
}
bg_until() {
    for _ in $(seq 1 50); do
        grep -q -- "$2" "$tmp/$1.out" && return 0
        sleep 0.1
    done
    return 0
}
bg_end() {
    kill "$bg_pid" 2>/dev/null || true
    wait "$bg_pid" 2>/dev/null || true
    out=$(cat "$tmp/$1.out")
    err=$(cat "$tmp/$1.err")
}

# ---- one-off instance ------------------------------------------------------
cli run hello:latest
check "run prints the new instance id" eval 'rc_is 0 && [[ "$out" =~ ^[0-9a-f]{16}$ ]]'
id=$out
short=${id:0:12}

cli ps
check "ps has the header" out_has '^ID +NAME +SERVICE +STATE +HOST +AGE$'
check "ps shows the instance pending" out_has "^$short +run-${id:0:12} +- +pending +- +[0-9]+s$"

cli inspect "${id:0:6}"
check "inspect by prefix gives the JSON object" \
    eval 'rc_is 0 && [ "$(jq -r .id <<<"$out")" = "$id" ]'
cli inspect "run-${id:0:12}"
check "inspect by name" eval 'rc_is 0 && [ "$(jq -r .state <<<"$out")" = pending ]'

cli kill -s KILL "${id:0:8}"
check "kill -s KILL by prefix" eval 'rc_is 0 && [ "$out" = "${id:0:8}" ]'

cli ps
check "ps hides the exited instance" eval 'rc_is 0 && out_lacks "$short"'
cli ps -a
check "ps -a shows exited (137)" out_has "^$short +run-${id:0:12} +- +exited \\(137\\) "

cli wait "$id"
check "wait prints 137 and exits 137" eval 'rc_is 137 && [ "$out" = 137 ]'

cli kill "$id"
check "kill of an exited instance: one line, exit 1" eval 'rc_is 1 && one_error_line'

cli ps -a -o json
check "ps -o json is the API list" \
    eval 'rc_is 0 && [ "$(jq -r ".items[] | select(.id == \"$id\") | .exit_code" <<<"$out")" = 137 ]'
cli ps -a -o name
check "ps -o name prints names" eval 'rc_is 0 && out_has "^run-${id:0:12}$"'
cli ps -a -o wide
check "ps -o wide has IMAGE and DESIRED" \
    out_has '^ID +NAME +SERVICE +IMAGE +STATE +DESIRED +HOST +RESTARTS +ADDRESSES +AGE +REASON +LABELS$'
cli ps -q -a
check "ps -q prints full ids" out_has "^$id$"

cli run --name job1 --cpus 2 --memory 512M --env MODE=test --constraint zone=a \
    --binpack --restart on-failure:3 hello -- --flag value
check "run with flags" eval 'rc_is 0 && [[ "$out" =~ ^[0-9a-f]{16}$ ]]'
id2=$out
cli inspect job1
check "run flags reach the API" eval 'rc_is 0 &&
    [ "$(jq -c "[.resources.vcpus, .resources.memory_mib, .env.MODE, .restart, .args]" <<<"$out")" = \
      "[2,512,\"test\",\"on-failure:3\",[\"--flag\",\"value\"]]" ]'

cli run hello
id3=$out
cli stop --grace 3601 "${id3:0:10}"
check "stop --grace out of range: the API's 422 names grace_seconds" \
    eval 'rc_is 1 && one_error_line "grace_seconds must be between 1 and 3600"'
cli run --name grace1 --stop-grace 2m hello
check "run --stop-grace sets stop_grace_seconds" eval \
    'rc_is 0 && [ "$(curl -fsS -H "Authorization: Bearer $CLOUD_TOKEN" "$CLOUD_URL/v1/instances/grace1" | jq .stop_grace_seconds)" = 120 ]'
cli run --name grace2 --stop-grace soon hello
check "run --stop-grace needs seconds" eval 'rc_is 2 && one_error_line "--stop-grace \"soon\""'
cli run --name grace3 --stop-grace 3601 hello
check "run --stop-grace out of range: the API's 422" \
    eval 'rc_is 1 && one_error_line "stop_grace_seconds must be between 1 and 3600"'
cli stop "${id3:0:10}"
check "stop is kill -s TERM" eval 'rc_is 0 && [ "$out" = "${id3:0:10}" ]'
cli ps -a --state exited
check "a stopped pending instance exited (143)" out_has "^${id3:0:12} .* exited \\(143\\) "

cli run --wait --timeout 1s hello
check "run --wait gives up with the state" \
    eval 'rc_is 1 && grep -q "is still pending after 1s" <<<"$err"'

cli rm "$id2"
check "rm of a pending instance" eval 'rc_is 0 && [ "$out" = "$id2" ]'
cli inspect "$id2"
check "rm'd instance is gone" eval 'rc_is 1 && one_error_line'

# ---- services --------------------------------------------------------------
cli run --name web --replicas 2 --memory 128M hello:latest
check "run --replicas creates a service" eval 'rc_is 0 && [ "$out" = web ]'
cli services
check "services lists it (running/desired)" out_has '^web +hello:latest +0/2 +'
cli services ls -o json
check "services -o json" eval '[ "$(jq -r ".items[0].name" <<<"$out")" = web ]'
cli scale web=3
check "scale" eval 'rc_is 0 && [ "$out" = "web scaled to 3" ]'
cli services inspect web
check "scale reached the API" eval '[ "$(jq .replicas <<<"$out")" = 3 ]'
cli services update web --image hello --memory 256M
check "services update bumps the generation" \
    eval 'rc_is 0 && [ "$out" = "web updated (generation 2)" ]'
cli services update web --stop-grace 45
check "services update --stop-grace" eval \
    'rc_is 0 && [ "$(curl -fsS -H "Authorization: Bearer $CLOUD_TOKEN" "$CLOUD_URL/v1/services/web" | jq .stop_grace_seconds)" = 45 ]'
cli scale web=abc
check "scale with a bad count: usage error" eval 'rc_is 2 && one_error_line'
cli scale nosuch=1
check "scale of an unknown service: server error" eval 'rc_is 1 && one_error_line nosuch'
cli run --name web --replicas 1 hello
check "duplicate service name: conflict" eval 'rc_is 1 && one_error_line'

# ---- labels (issue 5) ----------------------------------------------------------
cli run -l app=lbl -l tier=front hello:latest
lid=$out
check "run --label" eval 'rc_is 0 && [[ "$lid" =~ ^[0-9a-f]{16}$ ]]'
cli inspect "$lid"
check "inspect shows the labels" \
    eval 'rc_is 0 && [ "$(jq -c .labels <<<"$out")" = "{\"app\":\"lbl\",\"tier\":\"front\"}" ]'
cli ps -l app=lbl -q
check "ps -l K=V selects by label" eval 'rc_is 0 && [ "$out" = "$lid" ]'
cli ps --selector tier=front,app=lbl -q
check "ps --selector with two terms" eval 'rc_is 0 && [ "$out" = "$lid" ]'
cli ps -l app=lbl -l tier=back -q
check "ps -l terms AND together" eval 'rc_is 0 && [ -z "$out" ]'
cli ps -l tier -q
check "ps -l KEY: the label is present" eval 'rc_is 0 && out_has "^$lid$"'
cli ps -o wide -l app=lbl
check "ps -o wide has LABELS" \
    eval 'rc_is 0 && out_has " LABELS$" && out_has " app=lbl,tier=front$"'
cli ps -l 'bad key'
check "ps with a bad selector: the server's 400, one line" \
    eval 'rc_is 1 && one_error_line "label selector"'
cli run -l 'bad key=x' hello:latest
check "run with a bad label: the server's 422, one line" \
    eval 'rc_is 1 && one_error_line "label key"'
cli run -l novalue hello:latest
check "run -l without =: usage error" eval 'rc_is 2 && one_error_line'
cli services update web -l team=blue
check "services update --label" eval 'rc_is 0'
cli services ls -l team=blue -o name
check "services ls -l" eval 'rc_is 0 && [ "$out" = web ]'
cli services -o wide
check "services -o wide has LABELS" out_has '^web .* team=blue$'
# The rollout of generation 2 may still replace instances: compare the
# live ones with the labelled ones until they agree.
for _ in $(seq 1 50); do
    cli ps --service web -o name
    all=$(sort <<<"$out")
    cli ps --service web -l team=blue -o name
    [ -n "$all" ] && [ "$(sort <<<"$out")" = "$all" ] && break
    sleep 0.1
done
check "a service's instances carry its labels" \
    eval 'rc_is 0 && [ -n "$all" ] && [ "$(sort <<<"$out")" = "$all" ]'
cli services update web --no-labels
check "services update --no-labels" eval 'rc_is 0'
for _ in $(seq 1 50); do
    cli ps -l team=blue -o name
    [ -z "$out" ] && break
    sleep 0.1
done
check "the instances lose the labels with their service" eval 'rc_is 0 && [ -z "$out" ]'
cli services update web --link db --link cache
check "services update --link" eval 'rc_is 0'
cli services update web --unlink db
cli services inspect web
check "services update --unlink keeps the other links" \
    eval '[ "$(jq -c .links <<<"$out")" = "[\"cache\"]" ]'
cli services update web --ready-when guest
cli services inspect web
check "services update --ready-when" eval 'rc_is 0 && [ "$(jq -r .ready_when <<<"$out")" = guest ]'
cli run --link db hello:latest
check "run --link without --replicas: usage error" eval 'rc_is 2 && one_error_line'
cli run --name lnk --replicas 0 --link web --link cache hello:latest
check "run --link creates a linked service" eval 'rc_is 0 && [ "$out" = lnk ]'
cli services inspect lnk
check "run --link reached the API" \
    eval '[ "$(jq -c .links <<<"$out")" = "[\"web\",\"cache\"]" ]'

# ---- config and endpoints (issue 6) -----------------------------------------------
cli config get web
check "config get of a service never configured: the header alone" \
    eval 'rc_is 0 && [ "$out" = "KEY   VALUE" ]'
cli config set web MODE=prod WORKERS=4
check "config set prints the new version" eval 'rc_is 0 && [ "$out" = "web: config version 1" ]'
cli config get web
check "config get: KEY VALUE sorted" \
    eval 'rc_is 0 && [ "$out" = "$(printf "KEY       VALUE\nMODE      prod\nWORKERS   4")" ]'
cli config get web MODE
check "config get KEY prints the value alone" eval 'rc_is 0 && [ "$out" = prod ]'
cli config get web NOPE
check "config get of a missing key: exit 1, one line" eval 'rc_is 1 && one_error_line NOPE'
cli config set web MODE=dev --if-version 1
check "config set --if-version current" eval 'rc_is 0 && [ "$out" = "web: config version 2" ]'
cli config set web MODE=x --if-version 1
check "config set --if-version stale: 412, one line" eval 'rc_is 1 && one_error_line "version 2"'
cli config get web MODE
check "the refused write changed nothing" eval '[ "$out" = dev ]'
cli config unset web WORKERS
check "config unset" eval 'rc_is 0 && [ "$out" = "web: config version 3" ]'
cli config get web --version 1 -o json
check "config get --version N" \
    eval 'rc_is 0 && [ "$(jq -r ".version, .config.WORKERS" <<<"$out" | paste -sd,)" = 1,4 ]'
cli config history web
check "config history, newest first" \
    eval 'rc_is 0 && [ "$(awk "NR>1 {print \$1}" <<<"$out" | paste -sd,)" = 3,2,1 ]'
cli config rollback web 1
check "config rollback makes a new version" \
    eval 'rc_is 0 && [ "$out" = "web: config version 4 (the config of version 1)" ]'
cli config get web -o json
check "rolled back to version 1's config" \
    eval '[ "$(jq -c .config <<<"$out")" = "{\"MODE\":\"prod\",\"WORKERS\":\"4\"}" ]'
cli config set web 'bad key=1'
check "config set of a bad key: the server's 422, one line" eval 'rc_is 1 && one_error_line "bad key"'
cli config set web =x
check "config set =x: usage error" eval 'rc_is 2 && one_error_line'
cli config get nosuch
check "config of an unknown service: 404, one line" eval 'rc_is 1 && one_error_line nosuch'
cli config rollback web 999
check "config rollback to an unknown version: one line" eval 'rc_is 1 && one_error_line 999'
bg cwatch config watch web
bg_until cwatch 'config version 4'
"$CLOUDCTL" config set web MODE=watched >/dev/null
"$CLOUDCTL" config set lnk OTHER=1 >/dev/null
bg_until cwatch 'config version 5'
bg_end cwatch
check "config watch prints the current version, then the new one" \
    eval 'out_has "^web: config version 4 " && out_has "^web: config version 5 " &&
          out_has "^MODE +watched$" && out_lacks "OTHER" && [ -z "$err" ]'
cli endpoints web
check "endpoints of a service with nothing running: the header" \
    eval 'rc_is 0 && [ "$out" = "NAME   ADDR" ]'
cli endpoints web -o json
check "endpoints -o json is the API object" \
    eval 'rc_is 0 && [ "$(jq -r ".service, (.endpoints | length)" <<<"$out" | paste -sd,)" = web,0 ]'
cli endpoints nosuch
check "endpoints of an unknown service: one line" eval 'rc_is 1 && one_error_line nosuch'
bg ewatch endpoints web -w
bg_until ewatch 'endpoints version'
bg_end ewatch
check "endpoints -w prints the current list first" \
    eval 'out_has "^web: endpoints version [0-9]+$" && out_has "^NAME +ADDR$" && [ -z "$err" ]'
cli config set web WAITED=1 --wait
check "config set --wait with no running instance returns at once" \
    eval 'rc_is 0 && out_has "^web: config version 6$" && out_has "^web: 0/0 running instances acknowledged$"'
cli config set web WAITED=2 --wait -o name
check "config set --wait -o name prints the version alone" eval 'rc_is 0 && [ "$out" = 7 ]'

# ---- hosts -------------------------------------------------------------------
cli hosts
check "hosts ls" out_has '^hv1 +ready +127\.0\.0\.1 +[0-9]+/8 +[0-9.]+[MG]i/16Gi +'
cli hosts ls --state down
check "hosts ls --state filters (a header, no host)" eval 'rc_is 0 && out_has "^NAME " && out_lacks "^hv1"'
cli hosts ls --state ready -o json
check "hosts ls --state -o json" eval 'rc_is 0 && [ "$(jq -r ".items[].name" <<<"$out")" = hv1 ]'
cli hosts ls extra
check "hosts ls with an argument: usage error" eval 'rc_is 2 && one_error_line "unexpected argument"'
cli hosts --state bogus
check "hosts with a bad state: the server's 400, one line" eval 'rc_is 1 && one_error_line state'
cli images ls extra
check "images ls with an argument: usage error" eval 'rc_is 2 && one_error_line "unexpected argument"'
cli services ls --state deleting -o name
check "services ls --state" eval 'rc_is 0 && [ -z "$out" ]'
cli hosts cordon hv1
check "cordon" eval 'rc_is 0 && [ "$out" = "hv1 cordoned" ]'
cli hosts ls
check "hosts ls shows cordoned" out_has '^hv1 +cordoned '
cli hosts uncordon hv1
check "uncordon" eval 'rc_is 0 && [ "$out" = "hv1 ready" ]'
cli hosts -o wide
check "hosts -o wide has labels" out_has 'zone=a'
cli hosts drain hv1
check "drain answers with the host draining (or drained: nothing to move)" eval 'rc_is 0 && [[ "$out" =~ ^hv1\ drain(ing|ed)$ ]]'
cli hosts uncordon hv1
cli hosts cordon nosuch
check "cordon an unknown host" eval 'rc_is 1 && one_error_line nosuch'

# ---- images ------------------------------------------------------------------
cli images
check "images ls" out_has '^hello:latest +c0ffee012345 +kernel +1000B +'
cli images inspect hello
check "images inspect name = name:latest" eval '[ "$(jq -r .kind <<<"$out")" = kernel ]'

# ---- events ------------------------------------------------------------------
cli events
check "events lists instance.killed" out_has ' instance\.killed +run-'
cli events -o json --type host.cordoned
check "events -o json with a type filter" \
    eval '[ "$(jq -r "[.items[].type] | unique | join(\",\")" <<<"$out")" = host.cordoned ]'

bg follow events -f
sleep 1
"$CLOUDCTL" hosts cordon hv1 >/dev/null
bg_until follow 'host\.cordoned'
bg_end follow
check "events -f prints new events as they happen" out_has ' host\.cordoned +hv1 '
"$CLOUDCTL" hosts uncordon hv1 >/dev/null

# ---- what the server does not do yet answers with its error ----------------
cli logs "$id"
check "logs: the server's answer, one line" eval 'rc_is 1 && one_error_line'
cli start "$id"
check "start runs an ended instance again" eval 'rc_is 0'
cli inspect "$id"
check "started: pending again" eval 'rc_is 0 && [ "$(jq -r .state <<<"$out")" = pending ]'
cli start "$id"
check "start of a pending instance is a no-op" eval 'rc_is 0'
cli images rm hello
check "images rm: the server's answer, one line" eval 'rc_is 1 && one_error_line'

# ---- errors ------------------------------------------------------------------
cli inspect nosuchinstance
check "unknown instance: exit 1, one line naming it" \
    eval 'rc_is 1 && one_error_line nosuchinstance'
cli ps --bogus
check "bad flag: exit 2, one line" eval 'rc_is 2 && one_error_line "unknown flag --bogus"'
cli frobnicate
check "unknown command: exit 2" eval 'rc_is 2 && one_error_line'
cli run --memory 12Q hello
check "bad size: exit 2" eval 'rc_is 2 && one_error_line'
cli --server "http://127.0.0.1:$(free_port)" ps
check "no server: exit 1, one line" eval 'rc_is 1 && one_error_line "connection refused"'
cli --help
check "--help lists the commands" eval 'rc_is 0 && out_has "^  scale " && [ -z "$err" ]'
cli kill --help
check "kill --help" eval 'rc_is 0 && out_has "^Usage: cloudctl kill"'

# ---- where the server comes from ----------------------------------------------
mkdir -p "$XDG_CONFIG_HOME/cloud"
printf '{"url":"http://127.0.0.1:%s","token":"%s"}\n' "$http_port" "$admin_token" \
    >"$XDG_CONFIG_HOME/cloud/context.json"
(
    unset CLOUD_URL CLOUD_TOKEN
    failures=0
    cli hosts -o name
    check "the context file gives the server" eval 'rc_is 0 && [ "$out" = hv1 ]'
    exit "$failures"
) || failures=$((failures + $?))

cli services rm web
check "services rm" eval 'rc_is 0 && out_has "^web"'
cli services rm lnk
check "services rm lnk" eval 'rc_is 0 && out_has "^lnk"'

cli version
check "version" eval 'rc_is 0 && out_has "^Client: cloudctl " && out_has "healthz: ok"'

echo "test_cli: $checks checks, $failures failed"
[ "$failures" = 0 ]
