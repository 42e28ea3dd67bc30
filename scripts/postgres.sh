#!/usr/bin/env bash
# A throwaway PostgreSQL cluster on loopback for tests and CI.
#
#   eval "$(scripts/postgres.sh)"      # start (or reuse) it; exports LOTSE_TEST_POSTGRES_URL
#   scripts/postgres.sh url            # print the URL of the running cluster
#   scripts/postgres.sh stop           # stop it and delete its data
#
# start installs PostgreSQL from Debian's packages when it is missing
# (apt-get), creates a cluster in $LOTSE_PG_DIR (default
# ${TMPDIR:-/tmp}/lotse-postgres) with initdb, run as the postgres user when
# started as root, picks a free port on 127.0.0.1 and starts it with fsync on.
# Only the export line goes to stdout; progress goes to stderr. It is
# idempotent: when the cluster is already running it only prints the line.
# Clients connect as the superuser "postgres" without a password (trust on
# loopback only; the socket lives in the data directory's parent).
set -euo pipefail

dir="${LOTSE_PG_DIR:-${TMPDIR:-/tmp}/lotse-postgres}"
data="$dir/data"
db=lotse

log() { echo "postgres.sh: $*" >&2; }

# as_owner runs a command as the cluster's owner: postgres when we are root
# (PostgreSQL refuses to run as root), ourselves otherwise.
as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

bindir() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_postgres() {
  bindir >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { log "PostgreSQL is not installed and we are not root: apt-get install postgresql"; exit 1; }
  log "installing PostgreSQL (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # The package's own cluster is not wanted: create_main_cluster=false.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/lotse.conf
  apt-get install -y -qq --no-install-recommends postgresql >&2
}

url() {
  local port
  port=$(cat "$dir/port")
  echo "postgres://postgres@127.0.0.1:$port/$db?sslmode=disable"
}

running() {
  local bin
  [ -f "$dir/port" ] && [ -f "$data/postmaster.pid" ] || return 1
  bin=$(bindir) || return 1
  as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 || return 1
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$(cat "$dir/port")" -t 5
}

free_port() {
  local p
  for p in $(shuf -i 20000-60000 -n 50); do
    # A refused connection means nobody listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  log "no free port found"
  return 1
}

start() {
  if running; then
    echo "export LOTSE_TEST_POSTGRES_URL='$(url)'"
    return 0
  fi
  install_postgres
  local bin port
  bin=$(bindir)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  if [ ! -f "$data/PG_VERSION" ]; then
    log "creating a cluster in $data"
    rm -rf "$data"
    as_owner "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # A stale pid file from a killed postmaster would stop pg_ctl.
  as_owner "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 || rm -f "$data/postmaster.pid"
  port=$(free_port)
  log "starting PostgreSQL on 127.0.0.1:$port"
  as_owner "$bin/pg_ctl" -D "$data" -l "$dir/postgres.log" -w -t 60 start -o \
    "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$dir \
     -c max_connections=300 -c fsync=on -c synchronous_commit=on -c full_page_writes=on" >&2 ||
    { tail -n 30 "$dir/postgres.log" >&2; exit 1; }
  echo "$port" >"$dir/port"
  if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qc "CREATE DATABASE $db" >&2
  fi
  echo "export LOTSE_TEST_POSTGRES_URL='$(url)'"
}

stop() {
  local bin
  if bin=$(bindir) && [ -f "$data/PG_VERSION" ]; then
    as_owner "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 2>/dev/null || true
  fi
  rm -rf "$dir"
  log "stopped"
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  url) running || { log "not running"; exit 1; }; url ;;
  *) echo "usage: $0 [start|url|stop]" >&2; exit 2 ;;
esac
