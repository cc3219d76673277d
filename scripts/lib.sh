#!/usr/bin/env bash
# Set-up shared by ./scripts/run and ./scripts/test: Debian packages, local Postgres and Redis under .data/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="$ROOT/.data"
PG_PORT="${SKIFF_PG_PORT:-55432}"
REDIS_PORT="${SKIFF_REDIS_PORT:-56379}"
PG_BIN="${SKIFF_PG_BIN:-/usr/lib/postgresql/15/bin}"
PGDATA="$DATA/postgres"

log() { printf '\033[1m[skiff]\033[0m %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Postgres refuses to run as root: run it as the `postgres` system user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

ensure_packages() {
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  [ -f /usr/include/hiredis/hiredis.h ] || missing+=(libhiredis-dev)
  [ -x "$PG_BIN/initdb" ] || missing+=(postgresql-15)
  [ -f /usr/include/postgresql/libpq-fe.h ] || missing+=(libpq-dev)
  [ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
  [ -f /usr/include/zlib.h ] || missing+=(zlib1g-dev)
  command -v psql >/dev/null || missing+=(postgresql-client-15)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  command -v wrk >/dev/null || missing+=(wrk)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
}

start_postgres() {
  mkdir -p "$DATA"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    log "creating Postgres cluster in .data/postgres"
    mkdir -p "$PGDATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
    as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PGDATA"
  if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    log "starting Postgres on 127.0.0.1:$PG_PORT"
    STARTED_POSTGRES=1
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PGDATA -c max_connections=300 -c fsync=off" start >/dev/null
  fi
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='skiff'" | grep -q 1 \
    || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -qc "CREATE DATABASE skiff" >/dev/null
}

start_redis() {
  mkdir -p "$DATA/redis"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    log "starting Redis on 127.0.0.1:$REDIS_PORT"
    STARTED_REDIS=1
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$DATA/redis" --daemonize yes \
      --pidfile "$DATA/redis/redis.pid" --logfile "$DATA/redis/redis.log" --save "" --appendonly yes >/dev/null
    for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

# Stops only what this script started (a developer's running ./scripts/run keeps its servers).
stop_started_infra() {
  [ "${STARTED_REDIS:-0}" = 1 ] && { redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; }
  [ "${STARTED_POSTGRES:-0}" = 1 ] && { as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true; }
  return 0
}

stop_infra() {
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null 2>&1 || true
}

secret_file() {
  local file="$DATA/$1"
  if [ ! -s "$file" ]; then
    mkdir -p "$DATA"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$file"
  fi
  cat "$file"
}

export_runtime_env() {
  export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/skiff}"
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
  export WEBUI_SECRET_KEY="${WEBUI_SECRET_KEY:-$(secret_file secret_key)}"
  export SKIFF_INTERNAL_SECRET="${SKIFF_INTERNAL_SECRET:-$(secret_file internal_secret)}"
}
