#!/usr/bin/env bash
# Set-up shared by ./scripts/run and ./scripts/test: Debian packages and pgvector, local Postgres and Redis
# under .data/.
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
  command -v pdftotext >/dev/null || missing+=(poppler-utils)
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

# Debian 12 has no pgvector for PostgreSQL 15: build the one from Debian 13's (trixie) source package.
# `make install` only adds files under PostgreSQL's own directories, so a running server needs no restart.
PGVECTOR_SUITE="${SKIFF_PGVECTOR_SUITE:-trixie}"

ensure_pgvector() {
  [ -f "$("$PG_BIN/pg_config" --sharedir 2>/dev/null)/extension/vector.control" ] && return 0
  local work
  work="$(mktemp -d)"
  log "building pgvector for PostgreSQL 15 from Debian $PGVECTOR_SUITE's source package"
  # Every step is chained with && : errexit does not apply inside an `if` condition.
  if install_pgvector_build_needs && fetch_pgvector_source "$work" && build_pgvector "$work"/pgvector-*/ &&
    [ -f "$("$PG_BIN/pg_config" --sharedir)/extension/vector.control" ]; then
    rm -rf "$work"
  else
    rm -rf "$work"
    log "ERROR: could not build and install pgvector for PostgreSQL 15 (see the messages above)"
    exit 1
  fi
}

# The server headers are taken at the running server's version when the archive still has it: the newest
# postgresql-server-dev-15 would otherwise pull a postgresql-15 upgrade in under a running cluster.
install_pgvector_build_needs() {
  local missing=() dev=postgresql-server-dev-15 server
  [ -f "$("$PG_BIN/pg_config" --includedir-server 2>/dev/null)/postgres.h" ] || missing+=("$dev")
  { command -v make && command -v gcc; } >/dev/null || missing+=(build-essential)
  command -v dpkg-source >/dev/null || missing+=(dpkg-dev)  # apt-get source unpacks with it
  [ ${#missing[@]} -eq 0 ] && return 0
  as_root apt-get update -qq || return 1
  server="$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)"
  if [ -n "$server" ] && apt-cache madison "$dev" | grep -qF " $server "; then
    missing=("${missing[@]/#$dev/$dev=$server}")
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# A throw-away sources list and lists directory: the system's apt sources and package lists stay as they are.
fetch_pgvector_source() {
  local dir=$1
  local apt=(apt-get -qq -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o Dir::State::Lists="$dir/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o APT::Sandbox::User="$(id -un)")  # the _apt user cannot write into a private mktemp directory
  mkdir -p "$dir/lists/partial" &&
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
      "http://deb.debian.org/debian $PGVECTOR_SUITE main" >"$dir/sources.list" &&
    "${apt[@]}" update && (cd "$dir" && "${apt[@]}" source pgvector >/dev/null)
}

# with_llvm=no: skip the LLVM bitcode copies, which the server only uses for JIT and which need clang.
build_pgvector() {
  local make=(make -C "$1" -s -j"$(nproc)" PG_CONFIG="$PG_BIN/pg_config" with_llvm=no)
  "${make[@]}" >/dev/null && as_root "${make[@]}" install >/dev/null
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

# The stock Open WebUI 0.12.4 web app, from its official wheel on PyPI (unmodified): only `frontend/`, `static/`
# and CHANGELOG.md are unpacked, into .data/webui, once. FRONTEND_BUILD_DIR / STATIC_DIR name a build the
# operator already has instead.
WEBUI_VERSION="0.12.4"
ensure_webui() {
  if [ -n "${FRONTEND_BUILD_DIR:-}" ] && [ -f "$FRONTEND_BUILD_DIR/index.html" ]; then return 0; fi
  if [ -f "$DATA/webui/frontend/index.html" ] && [ "$(cat "$DATA/webui/VERSION" 2>/dev/null)" = "$WEBUI_VERSION" ]; then
    return 0
  fi
  log "fetching the Open WebUI $WEBUI_VERSION web app from PyPI (once; about 110 MB)"
  local work wheel
  work="$(mktemp -d)"
  python3 -m pip download -q --no-deps --only-binary=:all: "open-webui==$WEBUI_VERSION" -d "$work" || true
  wheel="$(find "$work" -maxdepth 1 -name 'open_webui-*.whl' | head -n 1)"
  if [ -z "$wheel" ]; then
    log "WARNING: could not download open-webui==$WEBUI_VERSION; the gateway serves the API only"
    rm -rf "$work"
    return 0
  fi
  rm -rf "$DATA/webui.partial"
  python3 - "$wheel" "$DATA/webui.partial" <<'PY'
import sys, zipfile, shutil, os
wheel, dest = sys.argv[1], sys.argv[2]
wanted = {"open_webui/frontend/": "frontend/", "open_webui/static/": "static/"}
with zipfile.ZipFile(wheel) as archive:
    for info in archive.infolist():
        name = info.filename
        target = None
        for prefix, folder in wanted.items():
            if name.startswith(prefix) and not name.endswith("/"):
                target = folder + name[len(prefix):]
        if name == "open_webui/CHANGELOG.md":
            target = "CHANGELOG.md"
        if target is None or ".." in target.split("/"):
            continue
        path = os.path.join(dest, target)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with archive.open(info) as source, open(path, "wb") as out:
            shutil.copyfileobj(source, out)
PY
  echo "$WEBUI_VERSION" > "$DATA/webui.partial/VERSION"
  rm -rf "$DATA/webui" && mv "$DATA/webui.partial" "$DATA/webui"
  rm -rf "$work"
}

# For the browser test: Debian's chromium, driven by Playwright for Python (never `playwright install`, which
# downloads a browser of its own).
PLAYWRIGHT_VERSION="1.65.2"
ensure_browser() {
  if [ ! -x /usr/lib/chromium/chromium ]; then
    log "installing chromium (for the browser test)"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
  fi
  python3 -c 'import playwright' 2>/dev/null || python3 -m pip install -q "playwright==$PLAYWRIGHT_VERSION"
}

export_runtime_env() {
  export DATABASE_URL="${DATABASE_URL:-postgresql://postgres@127.0.0.1:$PG_PORT/skiff}"
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
  export WEBUI_SECRET_KEY="${WEBUI_SECRET_KEY:-$(secret_file secret_key)}"
  export SKIFF_INTERNAL_SECRET="${SKIFF_INTERNAL_SECRET:-$(secret_file internal_secret)}"
  export FRONTEND_BUILD_DIR="${FRONTEND_BUILD_DIR:-$DATA/webui/frontend}"
  export STATIC_DIR="${STATIC_DIR:-$DATA/webui/static}"
}
