#!/usr/bin/env bash
# API benchmark (issue: foundation): seeds 10,000 instances, then measures
# with wrk on loopback: GET one instance, list of 100, and create. Prints
# requests/s and p99 for each. It prints figures; it never fails on time.
#
# With MIXED seconds (default 0: off), a mixed run follows with the
# reconciler on (issue 13): 64 connections, of which 10% create one-off
# instances that no host can take, 10% list 100 instances, 10% list
# events, 10% send invalid writes (422) and 60% list services. Each kind
# is a wrk process of its own, so each gets its own figures; the run is
# cut into three equal windows to show whether it degrades over time.
# All clients share 127.0.0.1, so the per-address connection cap is raised.
#
#   bash bench/api_bench.sh [build-dir] [seconds-per-run] [connections] [mixed-seconds]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
secs=${2:-10}
conns=${3:-32}
mixed=${4:-0}
ctl=$build/controller/cloud-controller
[ -x "$ctl" ] || { echo "api_bench: build first ($ctl missing)"; exit 1; }
command -v wrk >/dev/null || { echo "api_bench: wrk missing (scripts/setup.sh)"; exit 1; }

tmp=$(mktemp -d /tmp/cloud-bench.XXXXXX)
chmod 755 "$tmp"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  if [ -n "${BENCH_KEEP:-}" ]; then echo "api_bench: kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

"$ctl" --dev --no-local-agent --no-sample-image --max-conns-per-addr 1024 ${BENCH_CTL_FLAGS:-} --data-dir "$tmp/dev" --listen "127.0.0.1:$port" --db-pool "${DB_POOL:-4}" \
  >"$tmp/ctl.out" 2>"$tmp/ctl.err" &
pid=$!
url=http://127.0.0.1:$port
for _ in $(seq 1 120); do
  curl -sf "$url/readyz" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "$url/readyz" >/dev/null || { cat "$tmp/ctl.err"; echo "api_bench: controller not ready"; exit 1; }
pgport=$(grep -o 'PostgreSQL is up on 127.0.0.1:[0-9]*' "$tmp/ctl.err" | head -1 | sed 's/.*://')
token=$(cat "$tmp/dev/admin-token")
psql_() { psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pgport" -U postgres cloud "$@"; }

digest=sha256:$(printf 'b%.0s' $(seq 1 64))
psql_ <<SQL
INSERT INTO blobs (digest, size) VALUES ('$digest', 1);
INSERT INTO images (id, name, tag, kind, kernel_digest, cmdline, size)
  VALUES ('00000000000000b1', 'bench', 'latest', 'kernel', '$digest', 'console=ttyS0', 1);
INSERT INTO instances (id, name, image, vcpus, memory_mib, disk_gib)
  SELECT substr(md5(g::text), 1, 16), 'seed-' || g, 'bench', 1, 64, 0
    FROM generate_series(1, 10000) g;
ANALYZE;
SQL
psql_ -At -c "SELECT id FROM instances ORDER BY random() LIMIT 2000" >"$tmp/ids"

# Rows written behind the controller's back carry no events, so its read
# cache cannot know them: restart it (same data dir) to load them.
kill "$pid"; wait "$pid" 2>/dev/null || true
"$ctl" --dev --no-local-agent --no-sample-image --max-conns-per-addr 1024 ${BENCH_CTL_FLAGS:-} --data-dir "$tmp/dev" --listen "127.0.0.1:$port" --db-pool "${DB_POOL:-4}" \
  >"$tmp/ctl.out" 2>"$tmp/ctl.err" &
pid=$!
for _ in $(seq 1 120); do
  curl -sf "$url/readyz" >/dev/null 2>&1 &&
    curl -s -H "Authorization: Bearer $token" "$url/metrics" | grep -q '^cloud_cache_ready 1' && break
  sleep 0.5
done
pgport=$(grep -o 'PostgreSQL is up on 127.0.0.1:[0-9]*' "$tmp/ctl.err" | head -1 | sed 's/.*://')

# wrk_line NAME THREADS CONNS SECS [--refused] wrk-args...: one wrk run,
# its RESULT line printed under NAME; errors fail the benchmark unless
# --refused (the requests are meant to be refused: status errors expected).
wrk_line() {
  local name=$1 t=$2 c=$3 d=$4; shift 4
  local refused=
  [ "${1:-}" = --refused ] && { refused=1; shift; }
  local out line
  out=$(CLOUD_TOKEN=$token REPORT_LUA=$root/bench/wrk/report.lua wrk --latency -t"$t" -c"$c" -d"${d}s" "$@" 2>&1)
  line=$(printf '%s\n' "$out" | grep '^RESULT' || true)
  [ -n "$line" ] || { printf '%s\n' "$out"; echo "api_bench: wrk failed for $name"; return 1; }
  printf '%-22s %s\n' "$name" "${line#RESULT }"
  [ -n "$refused" ] && return 0
  case "$line" in *" errors=0 "*) ;; *) echo "api_bench: $name had errors"; return 1;; esac
}
run() { # name, wrk args...
  local name=$1; shift
  wrk_line "$name" 2 "$conns" "$secs" "$@" || exit 1
}

echo "api_bench: $(nproc) cores, wrk -t2 -c$conns -d${secs}s, 10,000 seeded instances, db pool ${DB_POOL:-4}"
IDS_FILE=$tmp/ids run "GET one instance" -s "$root/bench/wrk/get_one.lua" "$url"
run "GET list of 100" -s "$root/bench/wrk/report.lua" "$url/v1/instances?limit=100"
run "POST create" -s "$root/bench/wrk/create.lua" "$url/v1/instances"
n=$(psql_ -At -c 'SELECT count(*) FROM instances')
echo "instances now: $n"
[ "$n" -gt 10000 ] || { echo "api_bench: the create run created nothing"; exit 1; }
curl -s -H "Authorization: Bearer $token" "$url/metrics" | grep -E '^cloud_(write_batches|writes|write_bulk_batches|write_retries)_total' | tr '\n' ' '; echo

[ "$mixed" -gt 0 ] || exit 0
# The mixed run: the services listed are 100 real ones (no replicas).
for i in $(seq 1 100); do
  curl -sf -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"name\":\"mix-$i\",\"image\":\"bench\",\"replicas\":0}" "$url/v1/services" ||
    { echo "api_bench: cannot create service mix-$i"; exit 1; }
done
win=$(( (mixed + 2) / 3 ))
echo "api_bench: mixed run, reconciler on, 64 connections, 3 windows of ${win}s"
for w in 1 2 3; do
  echo "-- window $w"
  pids=()
  wrk_line "  creates (10%)" 1 6 "$win" -s "$root/bench/wrk/create.lua" "$url/v1/instances" >"$tmp/m.create" & pids+=($!)
  wrk_line "  lists of 100 (10%)" 1 6 "$win" -s "$root/bench/wrk/report.lua" "$url/v1/instances?limit=100" >"$tmp/m.list" & pids+=($!)
  wrk_line "  event lists (10%)" 1 6 "$win" -s "$root/bench/wrk/report.lua" "$url/v1/events?limit=100" >"$tmp/m.events" & pids+=($!)
  wrk_line "  invalid (10%)" 1 6 "$win" --refused -s "$root/bench/wrk/invalid.lua" "$url/v1/instances" >"$tmp/m.invalid" & pids+=($!)
  wrk_line "  service lists (60%)" 2 40 "$win" -s "$root/bench/wrk/report.lua" "$url/v1/services?limit=100" >"$tmp/m.services" & pids+=($!)
  fail=0
  for p in "${pids[@]}"; do wait "$p" || fail=1; done
  cat "$tmp/m.create" "$tmp/m.list" "$tmp/m.events" "$tmp/m.invalid" "$tmp/m.services"
  [ "$fail" -eq 0 ] || { echo "api_bench: the mixed run had errors"; exit 1; }
done
echo "pending instances: $(psql_ -At -c "SELECT count(*) FROM instances WHERE state = 'pending'")"
