# Shared helpers for run.sh and test-setup.sh. Sourced, not executed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL="$ROOT/.local"
# Secrets, the database and job records: no host process (the job user) may read them.
mkdir -p "$LOCAL"
chmod 700 "$LOCAL"
for secret in "$LOCAL/secret_key" "$LOCAL/fernet_keys"; do [ -f "$secret" ] && chmod 600 "$secret"; done

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }
die() { printf '\033[1;31merror:\033[0m %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

APT_UPDATED=0
# apt_install PKG...: install Debian packages that are missing (root only).
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  is_root || die "missing Debian packages: ${missing[*]}. Install them (sudo apt-get install ${missing[*]}) or run as root."
  say "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

redis_up() {
  "$ROOT/.venv/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
PY
}

# ensure_redis URL: use a Redis that answers, else start the system's redis-server.
ensure_redis() {
  local url="$1"
  redis_up "$url" && return 0
  if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
  local port
  port=$(python3 -c "from urllib.parse import urlparse; print(urlparse('$url').port or 6379)")
  say "starting redis-server on 127.0.0.1:$port"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$LOCAL" --logfile "$LOCAL/redis.log" --pidfile "$LOCAL/redis.pid"
  for _ in $(seq 50); do redis_up "$url" && return 0; sleep 0.1; done
  die "redis-server did not answer on port $port; see $LOCAL/redis.log"
}

# ensure_job_user: host processes (local driver, local computer) never run as root. As
# root, they run as the hangar-job system user, made here when missing; as anyone else,
# as that user (config/settings.py: HANGAR_JOB_USER).
ensure_job_user() {
  is_root || return 0
  [ -n "${HANGAR_JOB_USER:-}" ] && return 0
  id hangar-job >/dev/null 2>&1 && return 0
  say "creating the hangar-job system user (host processes run as it)"
  useradd --system --no-create-home --shell /usr/sbin/nologin hangar-job
}

docker_up() { docker version >/dev/null 2>&1; }

# ensure_dockerd: a Docker engine that answers; when none does, install (root only) and
# start one without a bridge (containers use none/host). `make test` and `make run` both
# call it. Returns 1, saying why, when it cannot: the caller decides whether that is fatal.
ensure_dockerd() {
  docker_up && return 0
  if ! command -v dockerd >/dev/null; then
    is_root || { say "no Docker engine answers, and only root can install one"; return 1; }
    apt_install docker.io
  fi
  is_root || { say "no Docker engine answers, and only root can start dockerd"; return 1; }
  say "starting dockerd (no bridge, no iptables; log: .local/dockerd.log)"
  # Its own session: a Ctrl-C (or a signal to the process group) of `make run` stops the
  # dashboard, not the engine its nodes live in; it stays up like a system service.
  setsid nohup dockerd --bridge=none --iptables=false --ip6tables=false \
    >"$LOCAL/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 100); do docker_up && return 0; sleep 0.2; done
  say "dockerd did not answer within 20 s; see $LOCAL/dockerd.log"
  return 1
}

# ensure_node_image: the image Docker nodes run (HANGAR_NODE_IMAGE, else hangar/node:v2),
# built here once: Hangar never pulls. Its tools are installed before the build, not after
# it failed for want of them. Without mmdebstrap (and not root to install it), or when the
# Debian build fails, nodes get the busybox image, and HANGAR_NODE_IMAGE says so.
ensure_node_image() {
  local image="${HANGAR_NODE_IMAGE:-hangar/node:v2}"
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  if [ -n "${HANGAR_NODE_IMAGE:-}" ]; then
    case "$image" in
      hangar/node:*) python manage.py build_node_image --tag "$image" ;;
      hangar/node-tiny:*) python manage.py build_node_image --tiny --tag "$image" ;;
      *) die "HANGAR_NODE_IMAGE=$image is not on this Docker engine, and Hangar never pulls" ;;
    esac
    return
  fi
  if ! command -v mmdebstrap >/dev/null && is_root; then apt_install mmdebstrap || true; fi
  if command -v mmdebstrap >/dev/null; then
    say "building the Python node image $image (about half a minute, once)"
    if python manage.py build_node_image --if-missing; then return 0; fi
    say "the Python node image did not build (above); nodes use the busybox image instead"
  else
    say "mmdebstrap is not installed (apt-get install mmdebstrap): nodes use the busybox image"
  fi
  if ! command -v busybox >/dev/null && is_root; then apt_install busybox-static || true; fi
  python manage.py build_node_image --tiny --if-missing
  export HANGAR_NODE_IMAGE=hangar/node-tiny:v2
}

# ensure_port_free PORT [SETTING]: stop early, and clearly, when something already serves
# there (SETTING names the variable that moves it; HANGAR_PORT by default).
ensure_port_free() {
  "$ROOT/.venv/bin/python" - "$1" <<'PY' || die "port $1 is in use: set ${2:-HANGAR_PORT} to a free one"
import socket, sys
with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
PY
}

# ensure_postgres: start the local cluster when DATABASE_URL points at one that is down.
ensure_postgres() {
  case "${DATABASE_URL:-}" in postgres*) ;; *) return 0 ;; esac
  "$ROOT/.venv/bin/python" - <<'PY' >/dev/null 2>&1 && return 0
import os, psycopg
from urllib.parse import urlparse
u = urlparse(os.environ["DATABASE_URL"])
psycopg.connect(host=u.hostname, port=u.port or 5432, user=u.username, password=u.password, dbname="postgres", connect_timeout=2).close()
PY
  if command -v pg_ctlcluster >/dev/null && is_root; then
    say "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    sleep 1
  fi
}

# ensure_venv REQUIREMENTS: create .venv and install when the requirements changed. The stamp
# holds the requirements' checksum, not a time: a fresh clone of unchanged requirements
# (newer files, same content) installs nothing.
ensure_venv() {
  local req="$1" stamp="$ROOT/.venv/.installed-$(basename "$1")" sum
  [ -x "$ROOT/.venv/bin/python" ] || { say "creating .venv"; python3.11 -m venv "$ROOT/.venv" 2>/dev/null || python3 -m venv "$ROOT/.venv"; }
  sum=$(cat "$req" "$ROOT/requirements.txt" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    say "installing Python packages from $(basename "$req")"
    "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" 2> >(grep -v "is ignored: it is neither" >&2)
    echo "$sum" >"$stamp"
    # requirements-dev.txt includes requirements.txt (-r): that one is installed too.
    cat "$ROOT/requirements.txt" "$ROOT/requirements.txt" | sha256sum | cut -d' ' -f1 \
      >"$ROOT/.venv/.installed-requirements.txt"
  fi
}
