"""Where a job's code and output live on this machine, and how a node runs a job.

Runs write to HANGAR_JOBS_DIR/runs/<job>/a<attempt>-r<rank>/ (output.log, pid, exit_code);
code snapshots sit read-only in HANGAR_JOBS_DIR/code/<job>/. Docker nodes see these two
folders at /hangar/runs (read-write) and /hangar/code (read-only); local nodes use them as
they are. Because output and exit code land on disk, a worker that dies loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from compute.snapshots import (  # noqa: F401  (re-exported: callers import them from here)
    CodeError,
    check_zip,
    code_dir,
    code_root,
    safe_name,
    store_file,
    store_script,
    store_zip,
)

NODE_RUNS = "/hangar/runs"
NODE_CODE = "/hangar/code"

# Runs the job's command in its own process group (so cancel reaches every child), with
# output to output.log, and records the exit code atomically. "$1" is the run folder.
JOB_WRAPPER = r"""
run="$1"
cd "${HANGAR_WORKDIR:-$run}" || cd "$run"
setsid sh -c "$HANGAR_COMMAND" > "$run/output.log" 2>&1 < /dev/null &
echo $! > "$run/pid"
wait $!
echo $? > "$run/exit_code.tmp" && mv "$run/exit_code.tmp" "$run/exit_code"
"""

# TERM to the job's process group, KILL a second later for whatever ignored it.
JOB_CANCEL = r"""
p=$(cat "$1/pid" 2>/dev/null) || exit 0
kill -TERM -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
( sleep 1; kill -KILL -"$p" 2>/dev/null ) > /dev/null 2>&1 &
"""


def jobs_root() -> Path:
    return Path(settings.HANGAR_JOBS_DIR)


def runs_root() -> Path:
    return jobs_root() / "runs"


def run_dir(run_key: str) -> Path:
    return runs_root() / run_key


def prepare_run_dir(run_key: str) -> Path:
    path = run_dir(run_key)
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)  # the job may run as another user inside its node
    for stale in ("exit_code", "pid", "output.log"):
        (path / stale).unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class RunState:
    started: bool
    exit_code: int | None


def read_run(run_key: str) -> RunState:
    path = run_dir(run_key)
    try:
        exit_code = int((path / "exit_code").read_text().strip())
    except (OSError, ValueError):
        exit_code = None
    return RunState(started=(path / "pid").exists(), exit_code=exit_code)


def output_path(run_key: str) -> Path:
    return run_dir(run_key) / "output.log"


def read_output(run_key: str, limit: int = 200_000) -> str:
    """The end of a run's output (the page shows the tail; the download has it all)."""
    path = output_path(run_key)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.seek(max(0, size - limit))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text if size <= limit else "…" + text.split("\n", 1)[-1]
