#!/usr/bin/env bash
# make run: everything the dashboard needs, then web + worker + beat under honcho.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

export HANGAR_PORT="${HANGAR_PORT:-8000}"
# The scoring gateway listens beside the pages, on the next port unless told otherwise.
export HANGAR_GATEWAY_PORT="${HANGAR_GATEWAY_PORT:-$((HANGAR_PORT + 1))}"
URL="http://127.0.0.1:$HANGAR_PORT"
ensure_venv "$ROOT/requirements.txt"
export PATH="$ROOT/.venv/bin:$PATH"
ensure_port_free "$HANGAR_PORT"
ensure_port_free "$HANGAR_GATEWAY_PORT" HANGAR_GATEWAY_PORT
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
ensure_redis "$REDIS_URL"

ensure_job_user
if [ -z "${HANGAR_DRIVER:-}" ]; then
  # Docker nodes are isolated: start an engine (as root) when none answers, as `make test` does.
  if ensure_dockerd; then export HANGAR_DRIVER=docker; else
    # No engine here: nodes become host processes, which this development run allows.
    export HANGAR_DRIVER=local
    export HANGAR_ALLOW_HOST_PROCESSES="${HANGAR_ALLOW_HOST_PROCESSES:-true}"
  fi
fi
if [ "$HANGAR_DRIVER" = docker ]; then ensure_node_image; fi
say "node driver: $HANGAR_DRIVER${HANGAR_NODE_IMAGE:+ (image $HANGAR_NODE_IMAGE)}"

if is_root; then
  # Said once here instead of Celery's ten-line SecurityWarning (whose source line reads
  # "..._error(" and looks like a failure). Host processes still run as the job user.
  say "running as root: so do web, worker and beat; host processes run as ${HANGAR_JOB_USER:-hangar-job}"
  export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:You're running the worker with superuser privileges"
fi

python manage.py migrate --noinput >/dev/null
# Static files as production serves them: hashed names cached for a year, gzip made once
# here (WhiteNoise). A CSS or JS edit shows after the next `make run`; to see edits live,
# run with HANGAR_STATIC_BUILT=false.
if [ "${HANGAR_STATIC_BUILT:-true}" = true ]; then
  export HANGAR_STATIC_BUILT=true
  HANGAR_STATIC_BUILT=true python manage.py collectstatic --noinput >/dev/null
fi
python manage.py seed_demo
# python-minimal is the Debian node image built above: it takes it, with no second build.
# The other curated environments wait as "not built", with a Build button.
node_image="${HANGAR_NODE_IMAGE:-hangar/node:v2}"
if [ "$HANGAR_DRIVER" = docker ] && [ "${node_image%%:*}" = hangar/node ]; then
  python manage.py environments adopt python-minimal --image "$node_image"
fi
say "Hangar on $URL/, scoring gateway on http://127.0.0.1:$HANGAR_GATEWAY_PORT/score/  (Ctrl-C stops them all)"
rm -f "$LOCAL/celerybeat.pid"
# Lines as they are written: block-buffered into honcho's pipes, runserver's "Starting
# development server at ..." and beat's banner only showed when they stopped.
export PYTHONUNBUFFERED=1
# honcho starts each process in a group of its own and, on Ctrl-C or SIGTERM, signals
# every group (a worker's pool, runserver's reloader child) and waits for them.
exec honcho start -f "$ROOT/Procfile"
