#!/usr/bin/env bash
# API benchmark (issue: foundation): seeds 10,000 instances, then measures
# with wrk on loopback: GET one instance, list of 100, and create. Prints
# requests/s and p99 for each. It prints figures; it never fails on time.
#
#   bash bench/api_bench.sh [build-dir] [seconds-per-run] [connections]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
secs=${2:-10}
conns=${3:-32}
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

"$ctl" --dev --no-local-agent --no-sample-image ${BENCH_CTL_FLAGS:-} --data-dir "$tmp/dev" --listen "127.0.0.1:$port" --db-pool "${DB_POOL:-4}" \
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
"$ctl" --dev --no-local-agent --no-sample-image ${BENCH_CTL_FLAGS:-} --data-dir "$tmp/dev" --listen "127.0.0.1:$port" --db-pool "${DB_POOL:-4}" \
  >"$tmp/ctl.out" 2>"$tmp/ctl.err" &
pid=$!
for _ in $(seq 1 120); do
  curl -sf "$url/readyz" >/dev/null 2>&1 &&
    curl -s -H "Authorization: Bearer $token" "$url/metrics" | grep -q '^cloud_cache_ready 1' && break
  sleep 0.5
done
pgport=$(grep -o 'PostgreSQL is up on 127.0.0.1:[0-9]*' "$tmp/ctl.err" | head -1 | sed 's/.*://')

run() { # name, wrk args...
  local name=$1; shift
  local out
  out=$(CLOUD_TOKEN=$token REPORT_LUA=$root/bench/wrk/report.lua wrk --latency -t2 -c"$conns" -d"${secs}s" "$@" 2>&1)
  local line
  line=$(printf '%s\n' "$out" | grep '^RESULT' || true)
  [ -n "$line" ] || { printf '%s\n' "$out"; echo "api_bench: wrk failed for $name"; exit 1; }
  printf '%-22s %s\n' "$name" "${line#RESULT }"
  case "$line" in *" errors=0 "*) ;; *) echo "api_bench: $name had errors"; exit 1;; esac
}

echo "api_bench: $(nproc) cores, wrk -t2 -c$conns -d${secs}s, 10,000 seeded instances, db pool ${DB_POOL:-4}"
IDS_FILE=$tmp/ids run "GET one instance" -s "$root/bench/wrk/get_one.lua" "$url"
run "GET list of 100" -s "$root/bench/wrk/report.lua" "$url/v1/instances?limit=100"
run "POST create" -s "$root/bench/wrk/create.lua" "$url/v1/instances"
n=$(psql_ -At -c 'SELECT count(*) FROM instances')
echo "instances now: $n"
[ "$n" -gt 10000 ] || { echo "api_bench: the create run created nothing"; exit 1; }
curl -s -H "Authorization: Bearer $token" "$url/metrics" | grep -E '^cloud_(write_batches|writes|write_bulk_batches|write_retries)_total' | tr '\n' ' '; echo
