#!/usr/bin/env bash
# Installs PostgreSQL from Debian's packages (if missing), starts a throw-away cluster that listens only
# on 127.0.0.1 and a Unix socket under /tmp, creates a test database, and prints the line that makes
# the control-plane store tests run against it:
#
#   eval "$(bash .ci/postgres.sh)"     # exports X0TTA6BL4_TEST_POSTGRES
#
# Everything it prints on stdout is that export line; progress goes to stderr. Safe to run twice: a
# cluster already running in the same directory is reused.
set -euo pipefail

PGROOT=${X0TTA6BL4_PG_DIR:-/tmp/x0tta6bl4-pg}
PGPORT=${X0TTA6BL4_PG_PORT:-55432}
DB=x0tta6bl4_test
USER_NAME=x0tta6bl4

log() { echo "postgres.sh: $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    log "PostgreSQL is not installed and this is not root; install Debian's 'postgresql' package"; exit 1
  fi
  log "installing PostgreSQL from Debian's packages"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# The server refuses to run as root: run it as the 'postgres' system user the package created
# (or as the current user when not root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

mkdir -p "$PGROOT"
if [ "$(id -u)" -eq 0 ]; then chown postgres:postgres "$PGROOT"; fi
DATA="$PGROOT/data"
SOCK="$PGROOT"

if [ ! -f "$DATA/PG_VERSION" ]; then
  log "initdb in $DATA"
  as_pg "$BIN/initdb" -D "$DATA" -A trust -U postgres --no-sync >&2
fi
if ! as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "starting on 127.0.0.1:$PGPORT and $SOCK"
  as_pg "$BIN/pg_ctl" -D "$DATA" -l "$PGROOT/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $SOCK -c max_connections=200 -c fsync=on" start >&2
fi

psql_pg() { as_pg "$BIN/psql" -h "$SOCK" -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_pg -c "SELECT 1 FROM pg_roles WHERE rolname='$USER_NAME'")" != "1" ]; then
  psql_pg -c "CREATE ROLE $USER_NAME LOGIN PASSWORD '$USER_NAME'" >&2
fi
if [ "$(psql_pg -c "SELECT 1 FROM pg_database WHERE datname='$DB'")" != "1" ]; then
  psql_pg -c "CREATE DATABASE $DB OWNER $USER_NAME" >&2
fi
log "ready"
echo "export X0TTA6BL4_TEST_POSTGRES='postgres://$USER_NAME:$USER_NAME@127.0.0.1:$PGPORT/$DB?sslmode=disable'"
