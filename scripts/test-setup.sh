#!/usr/bin/env bash
# make test, part one: the packages and services the suite needs, on a fresh machine too.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

apt_install chromium docker.io busybox-static openssh-server mmdebstrap
ensure_venv "$ROOT/requirements-dev.txt"
ensure_redis "${REDIS_URL:-redis://127.0.0.1:6379/15}"
ensure_dockerd || die "the suite needs a Docker engine"
ensure_postgres
ensure_job_user
