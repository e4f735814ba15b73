#!/usr/bin/env bash
# pg_ha.sh: a replicated PostgreSQL for the controllers on one machine: three
# Patroni members (each its own port and data directory) and one local etcd,
# with synchronous replication, so that a write the controller acknowledged
# survives the loss of the primary. docs/ha.md explains the deployment and
# docs/decisions.md §27 the choices (timeouts, non-strict synchronous mode).
#
#   pg_ha.sh start  [--port-base N] [DIR]  start (or restart what is down)
#   pg_ha.sh stop    [DIR]                 stop members, then etcd
#   pg_ha.sh status  [DIR]                 patronictl list
#   pg_ha.sh url     [DIR]                 the controllers' --db URL
#   pg_ha.sh primary [DIR]                 "NAME PORT PATRONI_PID POSTMASTER_PID"
#
# DIR defaults to /var/lib/cloud/pg-ha. Ports, from N (default 5440): etcd
# client N and peer N+1, PostgreSQL N+2..N+4, Patroni REST N+5..N+7; they are
# written to DIR/cluster.env at the first start and read from there after.
# Run as root (PostgreSQL, Patroni and etcd then run as the postgres user) or
# as that non-root user itself.
set -euo pipefail

MEMBERS=(pg1 pg2 pg3)
SCOPE=cloud-pg
READY_TIMEOUT=${PG_HA_READY_TIMEOUT:-180}
PG_USER=postgres

die() { echo "pg_ha: $*" >&2; exit 1; }
log() { echo "pg_ha: $*" >&2; }

usage() {
  sed -n '8,13p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

pg_bindir() {
  if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
  local best
  best=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -t/ -k5 -n | tail -1)
  [ -n "$best" ] || die "no PostgreSQL under /usr/lib/postgresql; run scripts/setup.sh"
  echo "$best"
}

# The prefix that runs a command as the cluster's owner. setsid and setpriv
# exec (no fork), so $! of "setsid ${OWNER[@]} daemon &" is the daemon's pid.
OWNER=()
if [ "$(id -u)" = 0 ]; then
  OWNER=(setpriv "--reuid=$PG_USER" "--regid=$PG_USER" --init-groups --)
fi

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pid_of() { if [ -f "$1" ]; then head -1 "$1"; fi; }

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

secret() { od -An -tx1 -N18 /dev/urandom | tr -d ' \n'; }

load_env() {
  [ -f "$DIR/cluster.env" ] || die "$DIR has no cluster (run: pg_ha.sh start $DIR)"
  # shellcheck disable=SC1091
  . "$DIR/cluster.env"
}

pg_port() { echo $((PORT_BASE + 2 + $1)); }
rest_port() { echo $((PORT_BASE + 5 + $1)); }

# ---- first start: ports, secrets, configuration files -------------------

write_env() {
  local base=$1 i
  for ((i = 0; i < 8; i++)); do
    port_free $((base + i)) || die "port $((base + i)) is in use; give --port-base"
  done
  umask 077
  cat >"$DIR/cluster.env" <<EOF
# written by pg_ha.sh start; read by every later subcommand
PORT_BASE=$base
SUPERUSER_PASSWORD=$(secret)
REPLICATION_PASSWORD=$(secret)
REWIND_PASSWORD=$(secret)
CLOUD_PASSWORD=$(secret)
REST_PASSWORD=$(secret)
EOF
  umask 022
}

member_yml() {
  local i=$1 name=${MEMBERS[$1]} bindir
  bindir=$(pg_bindir)
  cat <<EOF
# Patroni member $name, written by pg_ha.sh (rewritten at every start).
scope: $SCOPE
namespace: /cloud/
name: $name
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(rest_port "$i")
  connect_address: 127.0.0.1:$(rest_port "$i")
  authentication:
    username: patroni
    password: $REST_PASSWORD
etcd3:
  hosts: 127.0.0.1:$PORT_BASE
bootstrap:
  # Only the member that initialises the cluster writes these to etcd;
  # docs/ha.md: a lost primary is replaced in about ttl + loop_wait seconds.
  dcs:
    ttl: 8
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 300
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        synchronous_commit: "on"
  initdb:
    - encoding: UTF8
    - locale: C
    - data-checksums
postgresql:
  listen: 127.0.0.1:$(pg_port "$i")
  connect_address: 127.0.0.1:$(pg_port "$i")
  data_dir: $DIR/$name/data
  bin_dir: $bindir
  pgpass: $DIR/$name/pgpass
  # A killed primary that cannot be rewound onto the new timeline is
  # cloned afresh from the leader instead of staying out of the cluster.
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser:
      username: postgres
      password: $SUPERUSER_PASSWORD
    replication:
      username: replicator
      password: $REPLICATION_PASSWORD
    rewind:
      username: rewinder
      password: $REWIND_PASSWORD
  parameters:
    unix_socket_directories: $DIR/$name
    logging_collector: "on"
    log_directory: $DIR/$name/log
    log_min_messages: warning
  pg_hba:
    - local all all peer
    - host replication replicator 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
EOF
}

# ---- processes ------------------------------------------------------------

start_etcd() {
  local pid
  pid=$(pid_of "$DIR/etcd.pid")
  if alive "$pid"; then return; fi
  log "starting etcd on 127.0.0.1:$PORT_BASE"
  # setsid: a ^C in the caller's terminal does not reach the daemons.
  setsid "${OWNER[@]}" etcd --name "$SCOPE-etcd" --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$PORT_BASE" \
    --advertise-client-urls "http://127.0.0.1:$PORT_BASE" \
    --listen-peer-urls "http://127.0.0.1:$((PORT_BASE + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((PORT_BASE + 1))" \
    --initial-cluster "$SCOPE-etcd=http://127.0.0.1:$((PORT_BASE + 1))" \
    --initial-cluster-state new --initial-cluster-token "$SCOPE" \
    --auto-compaction-retention 1 \
    </dev/null >>"$DIR/etcd.log" 2>&1 &
  pid=$!
  echo "$pid" >"$DIR/etcd.pid"
  local t=0
  until curl -fsS "http://127.0.0.1:$PORT_BASE/health" 2>/dev/null | grep -q '"health":"true"'; do
    alive "$pid" || die "etcd exited; see $DIR/etcd.log"
    ((t++ < 300)) || die "etcd not healthy within 30 s; see $DIR/etcd.log"
    sleep 0.1
  done
}

start_member() {
  local i=$1 name=${MEMBERS[$1]} pid
  pid=$(pid_of "$DIR/$name/patroni.pid")
  if alive "$pid"; then return; fi
  mkdir -p "$DIR/$name/log"
  member_yml "$i" >"$DIR/$name/patroni.yml"
  chmod 600 "$DIR/$name/patroni.yml"
  [ "$(id -u)" = 0 ] && chown -R "$PG_USER:" "$DIR/$name"
  chmod 700 "$DIR/$name"
  log "starting Patroni member $name (PostgreSQL on 127.0.0.1:$(pg_port "$i"))"
  HOME=$DIR/$name setsid "${OWNER[@]}" patroni "$DIR/$name/patroni.yml" </dev/null >>"$DIR/$name/patroni.log" 2>&1 &
  echo $! >"$DIR/$name/patroni.pid"
}

# The cluster's members as "name role state" lines, from the REST API of
# the first member that answers.
members() {
  local i
  for ((i = 0; i < ${#MEMBERS[@]}; i++)); do
    curl -fsS -m 2 "http://127.0.0.1:$(rest_port "$i")/cluster" 2>/dev/null |
      jq -r '.members[] | "\(.name) \(.role) \(.state) \(.port)"' 2>/dev/null && return 0
  done
  return 1
}

# On a start that timed out: the last lines of the Patroni log of each
# member that is not up, and whether its Patroni still runs, on stderr (a
# test's temporary directory is gone by the time anyone reads it).
not_ready_logs() {
  local name pid
  for name in "${MEMBERS[@]}"; do
    grep -qE "^$name [a-z_]+ (running|streaming) " <<<"$1" && continue
    pid=$(pid_of "$DIR/$name/patroni.pid")
    if alive "$pid"; then
      echo "pg_ha: member $name not up; its Patroni (pid $pid) runs; last lines of its log:" >&2
    else
      echo "pg_ha: member $name not up; its Patroni is not running; last lines of its log:" >&2
    fi
    tail -n 25 "$DIR/$name/patroni.log" 2>/dev/null | sed 's/^/  /' >&2
  done
}

# Ready: a running leader, a synchronous standby, every member up (a
# replica's state is "running" in Patroni 3.0.2, "streaming" from 3.0.4).
wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) m
  while :; do
    m=$(members || true)
    if [ "$(grep -cE ' (running|streaming) ' <<<"$m" || true)" = "${#MEMBERS[@]}" ] &&
       grep -q ' leader running ' <<<"$m" &&
       grep -qE ' sync_standby (running|streaming) ' <<<"$m"; then
      return 0
    fi
    if [ $SECONDS -ge $deadline ]; then
      not_ready_logs "$m"
      die "cluster not ready within ${READY_TIMEOUT}s; members: ${m:-none answer}; logs under $DIR"
    fi
    sleep 0.5
  done
}

leader_port() { members | awk '$2 == "leader" && $3 == "running" {print $4; exit}'; }

psql_leader() {
  local port
  port=$(leader_port)
  [ -n "$port" ] || die "no running leader"
  PGPASSWORD=$SUPERUSER_PASSWORD "$(pg_bindir)/psql" -X -q -A -t -v ON_ERROR_STOP=1 \
    -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# The controller's role owns its database; it needs no superuser (the
# migrations create tables, functions and triggers in its own schema).
create_database() {
  psql_leader -d postgres -v pw="$CLOUD_PASSWORD" <<'EOF'
SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cloud')
            THEN 'ALTER ROLE cloud LOGIN PASSWORD ' || quote_literal(:'pw')
            ELSE 'CREATE ROLE cloud LOGIN PASSWORD ' || quote_literal(:'pw') END \gexec
SELECT 'CREATE DATABASE cloud OWNER cloud'
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'cloud') \gexec
EOF
  umask 077
  {
    local i
    for ((i = 0; i < ${#MEMBERS[@]}; i++)); do
      echo "127.0.0.1:$(pg_port "$i"):cloud:cloud:$CLOUD_PASSWORD"
    done
  } >"$DIR/cloud.pgpass"
  umask 022
}

url() {
  local hosts="" i
  for ((i = 0; i < ${#MEMBERS[@]}; i++)); do
    hosts+="${hosts:+,}127.0.0.1:$(pg_port "$i")"
  done
  # read-write: libpq skips members in recovery; connect_timeout bounds a
  # member that does not answer at all.
  echo "postgresql://cloud@$hosts/cloud?target_session_attrs=read-write&connect_timeout=3&passfile=$DIR/cloud.pgpass"
}

# Stops a pid with signal $3 (default TERM), then SIGKILL after $2 seconds.
stop_pid() {
  local pid=$1 grace=$2 sig=${3:-TERM} t=0
  alive "$pid" || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if ((t++ >= grace * 10)); then
      log "pid $pid ignored SIG$sig for ${grace}s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
}

stop_member() {
  local name=$1 pm
  stop_pid "$(pid_of "$DIR/$name/patroni.pid")" 30
  # A Patroni killed -9 leaves its postmaster running: stop it too (INT:
  # PostgreSQL's fast shutdown, which does not wait for clients).
  pm=$(pid_of "$DIR/$name/data/postmaster.pid")
  if alive "$pm" && [ "$(cat "/proc/$pm/comm" 2>/dev/null)" = postgres ]; then
    stop_pid "$pm" 30 INT
  fi
  rm -f "$DIR/$name/patroni.pid"
}

cmd_start() {
  local base=${PG_HA_PORT_BASE:-5440}
  while [ $# -gt 0 ]; do
    case $1 in
      --port-base) [ $# -ge 2 ] || usage; base=$2; shift 2;;
      -*) usage;;
      *) DIR=$1; shift;;
    esac
  done
  case $base in ''|*[!0-9]*) die "--port-base must be a number";; esac
  case $DIR in /*) ;; *) DIR=$(pwd)/$DIR;; esac
  case $DIR in *[[:space:]\'\"\\\$\`:]*) die "$DIR: pick a path without spaces, quotes or colons";; esac
  command -v patroni >/dev/null || die "patroni is not installed; run scripts/setup.sh"
  command -v etcd >/dev/null || die "etcd is not installed; run scripts/setup.sh"
  command -v jq >/dev/null || die "jq is not installed; run scripts/setup.sh"
  mkdir -p "$DIR"
  [ -f "$DIR/cluster.env" ] || write_env "$base"
  load_env
  if [ "$(id -u)" = 0 ]; then
    id "$PG_USER" >/dev/null 2>&1 || die "no $PG_USER user; run scripts/setup.sh"
    chown "$PG_USER:" "$DIR"
  fi
  chmod 700 "$DIR"
  "${OWNER[@]}" test -w "$DIR" ||
    die "$DIR: the $PG_USER user cannot write there (is a parent directory private?)"
  start_etcd
  local i
  for ((i = 0; i < ${#MEMBERS[@]}; i++)); do start_member "$i"; done
  wait_ready
  create_database
  log "cluster ready: $(members | tr '\n' ';')"
  url
}

cmd_stop() {
  load_env
  local m name role
  m=$(members || true)
  # Replicas first, the leader last: no failover while stopping.
  for name in "${MEMBERS[@]}"; do
    role=$(awk -v n="$name" '$1 == n {print $2}' <<<"$m")
    [ "$role" = leader ] || stop_member "$name"
  done
  for name in "${MEMBERS[@]}"; do stop_member "$name"; done
  stop_pid "$(pid_of "$DIR/etcd.pid")" 10
  rm -f "$DIR/etcd.pid"
}

cmd_status() {
  load_env
  local e=down
  alive "$(pid_of "$DIR/etcd.pid")" && e="up on 127.0.0.1:$PORT_BASE"
  echo "etcd: $e"
  HOME=$DIR "${OWNER[@]}" patronictl -c "$DIR/${MEMBERS[0]}/patroni.yml" list
}

cmd_primary() {
  load_env
  local name port i
  read -r name port < <(members | awk '$2 == "leader" {print $1, $4; exit}') || true
  [ -n "${name:-}" ] || die "no leader"
  echo "$name $port $(pid_of "$DIR/$name/patroni.pid") $(pid_of "$DIR/$name/data/postmaster.pid")"
}

[ $# -ge 1 ] || usage
sub=$1
shift
DIR=/var/lib/cloud/pg-ha
case $sub in
  start) cmd_start "$@";;
  stop|status|url|primary)
    [ $# -le 1 ] || usage
    [ $# -eq 1 ] && DIR=$1
    case $sub in
      stop) cmd_stop;;
      status) cmd_status;;
      url) load_env; url;;
      primary) cmd_primary;;
    esac;;
  *) usage;;
esac
