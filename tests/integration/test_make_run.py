"""`make run` on a fresh clone (issue 15): it serves the login page on the port it was
given, prints that URL and no other, prints no error line on the way there (a step that
then succeeds must not look like a failure), keeps Celery's every-second sweep lines out of
the output, and leaves no process behind after a Ctrl-C.

What is fresh and what is not, to keep this under a minute:
- the clone is of the committed HEAD of this checkout (`git clone`, then that commit):
  uncommitted changes are not in it, so commit before trusting a pass;
- its `.venv` is a link to this checkout's, already installed: a truly fresh virtualenv
  and apt install is what `.ci/run` on a clean machine exercises;
- the database is the clone's own SQLite file in its `.local/` (make run's default), the
  Redis database is the suite's with a queue and a site label of the test's own;
- HANGAR_NODE_IMAGE is the suite's busybox image, so the Debian node image (mmdebstrap,
  network) is not built here; Docker is this machine's engine, already up.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from tests.integration.helpers import wait_for
from tests.support.worker import children

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SWEEP_LINE = re.compile(r"\(hangar\.sweep\)|hangar\.sweep\[")
URL = re.compile(r"https?://(?:127\.0\.0\.1|localhost)(?::(\d+))?")


def free_port() -> int:
    """A free port whose next one is free too: make run's scoring gateway takes it."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with socket.socket() as beside:
            try:
                beside.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def fresh_clone(into: Path) -> Path:
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    clone = into / "hangar"
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", head], check=True)
    (clone / ".venv").symlink_to((ROOT / ".venv").resolve())
    return clone


def make_run_environment(port: int) -> dict[str, str]:
    """What a person's shell would have: none of the suite's own settings (settings_test
    sets HANGAR_DRIVER, CELERY_QUEUE, ... in this process's environment)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "TMPDIR")
    return {
        **{name: os.environ[name] for name in keep if name in os.environ},
        "HANGAR_PORT": str(port),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": f"hangar-makerun-{uuid.uuid4().hex[:8]}",
        "HANGAR_NODE_IMAGE": settings.HANGAR_NODE_IMAGE,
    }


class Output:
    """The lines `make run` printed, read as they come, each with when it came."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[tuple[float, str]] = []
        self.thread = threading.Thread(target=self.read, args=(process,), daemon=True)
        self.thread.start()

    def read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.lines.append(
                (time.monotonic(), ANSI.sub("", raw.decode(errors="replace")).rstrip())
            )

    def before(self, moment: float) -> list[str]:
        return [line for at, line in self.lines if at <= moment]

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), None once it is gone: with the pid,
    it names one process, never a later one that reused the pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except OSError:
        return None


def descendants(pid: int) -> dict[int, str]:
    """Every process under `pid` now, by pid and start time."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if (started := start_time(child)) is not None:
                found[child] = started
                todo.append(child)
    return found


def still_running(recorded: dict[int, str]) -> dict[int, str]:
    return {pid: started for pid, started in recorded.items() if start_time(pid) == started}


def login_page_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as response:
            return response.status == 200 and b"password" in response.read().lower()
    except (urllib.error.URLError, OSError):
        return False


def test_make_run_on_a_fresh_clone_serves_quietly_and_stops_cleanly(tmp_path, node_image):
    clone = fresh_clone(tmp_path)
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=clone,
        env=make_run_environment(port),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, as a terminal gives it
    )
    output = Output(process)
    recorded: dict[int, str] = {}
    try:
        wait_for(
            lambda: login_page_answers(port) or process.poll() is not None,
            timeout=120,
            what="the login page",
        )
        served = time.monotonic()
        assert process.poll() is None, f"make run exited ({process.returncode}):\n{output.text()}"
        # The worker comes up after the web server: wait for it and a few of beat's sweeps.
        wait_for(lambda: " ready." in output.text(), timeout=60, what="the Celery worker")
        time.sleep(3)
        recorded = descendants(process.pid)

        before = output.before(served)
        printed = "\n".join(before)
        # The real URL, on the given port, wherever a URL is printed.
        assert f"Hangar on http://127.0.0.1:{port}/" in printed, printed
        assert f"Demo logins (http://127.0.0.1:{port}):" in printed, printed
        # runserver's own line shows (not held in a pipe's buffer until it stops).
        assert f"Starting development server at http://127.0.0.1:{port}/" in output.text()
        # The pages' port, and the scoring gateway's beside it.
        ports = {m[1] for m in URL.finditer(output.text())}
        assert ports == {str(port), str(port + 1)}, output.text()
        # Nothing that reads as a failure on the way to a page that works.
        errors = [line for line in before if re.search(r"error|traceback", line, re.I)]
        assert errors == [], printed
        assert "node driver: docker" in printed, printed  # the engine answers here
        # Beat sends a sweep every second: Celery's lines about it are DEBUG, not shown.
        # (Sent: "... (hangar.sweep)"; received, discarded, succeeded: "hangar.sweep[id]".)
        routine = [line for line in output.before(time.monotonic()) if SWEEP_LINE.search(line)]
        assert routine == [], output.text()
        assert "AXES: BEGIN" not in output.text()
        # One honcho process per Procfile line, each with whatever it started.
        assert len(recorded) >= 4, recorded

        # Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
        output.thread.join(timeout=5)
        # Every process it started is gone (honcho signals each one's group and waits).
        wait_for(lambda: not still_running(recorded), timeout=15, what="make run's processes")
        assert "Traceback" not in output.text(), output.text()
        assert time.monotonic() - started < 120
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        for pid in still_running(recorded):  # only what this test started, by pid and start
            os.kill(pid, signal.SIGKILL)
