#!/usr/bin/env bash
# make run: everything the dashboard needs, then web + worker + beat under honcho.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_venv "$ROOT/requirements.txt"
export PATH="$ROOT/.venv/bin:$PATH"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
ensure_redis "$REDIS_URL"

ensure_job_user
if [ -z "${HANGAR_DRIVER:-}" ]; then
  if docker_up; then export HANGAR_DRIVER=docker; else
    # No engine here: nodes become host processes, which this development run allows.
    export HANGAR_DRIVER=local
    export HANGAR_ALLOW_HOST_PROCESSES="${HANGAR_ALLOW_HOST_PROCESSES:-true}"
  fi
fi
say "node driver: $HANGAR_DRIVER"
if [ "$HANGAR_DRIVER" = docker ] && [ -z "${HANGAR_NODE_IMAGE:-}" ]; then
  # Hangar never pulls: the node image is built here, once (about half a minute).
  if ! python manage.py build_node_image --if-missing; then
    if is_root && apt_install mmdebstrap && python manage.py build_node_image --if-missing; then :; else
      say "could not build the Python node image; using the busybox image instead"
      apt_install busybox-static || true
      python manage.py build_node_image --tiny --if-missing
      export HANGAR_NODE_IMAGE=hangar/node-tiny:v2
    fi
  fi
fi

python manage.py migrate --noinput >/dev/null
python manage.py seed_demo
say "Hangar on http://127.0.0.1:${HANGAR_PORT:-8000}  (Ctrl-C stops web, worker and beat)"
rm -f "$LOCAL/celerybeat.pid"
exec honcho start -f "$ROOT/Procfile"
