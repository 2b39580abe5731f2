"""What every worker process loads: the tasks, and nothing it only sometimes needs. Each
module below cost megabytes in each of the worker's processes (issue 16's memory goal:
300 MB for the worker): the API (pydantic), and the Docker SDK (requests under it), which
a worker imports when it first talks to Docker, not when it starts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_AT_START = ("docker", "requests", "ninja", "pydantic", "packaging")


def test_a_worker_process_starts_without_what_only_some_tasks_need():
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, os, sys; os.environ['CELERY_SKIP_CHECKS'] = '1'; "
            "import django; django.setup(); import config.celery, compute.tasks; "
            f"print(json.dumps([m for m in {list(NOT_AT_START)!r} if m in sys.modules]))",
        ],
        cwd=ROOT,
        env={"DJANGO_SETTINGS_MODULE": "config.settings_test", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(loaded.stdout.strip().splitlines()[-1]) == []
