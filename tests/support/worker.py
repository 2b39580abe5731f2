"""Real Celery processes for tests and benchmarks, on the test database: a worker (with
beat embedded unless asked otherwise) and a beat alone, both with production's scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import ClassVar

from django.conf import settings
from django.db import connection

from config.celery import app
from tests.support.worker_log import LogEntry, read_entries

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# Whole seconds: production's scheduler (django-celery-beat's DatabaseScheduler) stores
# the interval as whole seconds.
SWEEP_SECONDS = "1"


def database_url() -> str:
    """The test database, for a worker in another process."""
    db = connection.settings_dict
    if not Path(str(db["NAME"])).name.startswith("test"):
        # pytest-django makes a test database only for sessions with a test that asks
        # for one: a worker here would sweep the real database.
        raise RuntimeError(f"no test database (NAME={db['NAME']}): ask for `db` first")
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def process_environment(queue: str, driver: str, extra_env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_QUEUE": queue,
        "HANGAR_DRIVER": driver,
        "HANGAR_TEST_SITE": settings.HANGAR_SITE,
        "HANGAR_NODE_IMAGE": settings.HANGAR_NODE_IMAGE,
        "HANGAR_SWEEP_SECONDS": SWEEP_SECONDS,
        **extra_env,
    }


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc: the processes it started, nobody else's."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


class CeleryProcess:
    """One celery process logging to its own file under test-artifacts/."""

    # Every one this Python process started: the session's last check stops what is left,
    # and each test's log check reads what they wrote during it (tests/conftest.py).
    started: ClassVar[list[CeleryProcess]] = []

    def __init__(self, kind: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.name = f"test-{uuid.uuid4().hex[:6]}@localhost"
        self.log_path = ARTIFACTS / f"{kind}-{self.name.split('@')[0]}.log"
        self.process: subprocess.Popen | None = None

    def _spawn(
        self, arguments: list[str], environment: dict[str, str], module: str = "celery"
    ) -> None:
        log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "-A", "config", *arguments],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        CeleryProcess.started.append(self)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_entries(self, since: int = 0) -> list[LogEntry]:
        """What it logged from byte `since` on (the lines of one test)."""
        return read_entries(self.log_path, since)

    def kill(self) -> None:
        if self.alive:
            # An embedded beat is a child process: the crash takes it too, or an orphaned
            # beat would go on sending sweeps to later tests' workers.
            for child in children(self.process.pid):
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


class Worker(CeleryProcess):
    """One `celery worker` process (`-B`: with beat); `kill()` is SIGKILL, as a crash."""

    def __init__(
        self,
        queue: str,
        driver: str,
        extra_env: dict[str, str],
        beat: bool = True,
        loglevel: str = "INFO",
    ) -> None:
        super().__init__("worker")
        self.queue = queue
        self.driver = driver
        self.extra_env = extra_env
        self.beat = beat
        # DEBUG shows Celery's lines about each sweep (received, succeeded), INFO hides them
        # (config/logfilters.py).
        self.loglevel = loglevel

    def start(self) -> Worker:
        # The scheduler is production's (settings.CELERY_BEAT_SCHEDULER, as in the
        # Procfile): what beat sends, and with which options, is what production sends.
        beat = ["-B", f"--scheduler={settings.CELERY_BEAT_SCHEDULER}"] if self.beat else []
        self._spawn(
            [
                "worker", *beat, "--pool=threads", "--concurrency=4", f"--queues={self.queue}",
                f"--hostname={self.name}", "--without-gossip", "--without-mingle",
                f"--loglevel={self.loglevel}",
            ],
            process_environment(self.queue, self.driver, self.extra_env),
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not app.control.ping(destination=[self.name], timeout=0.3):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start; see {self.log_path}")
        return self


class Beat(CeleryProcess):
    """`celery beat` alone, as the Procfile runs it; DEBUG logs the id of each task sent."""

    def __init__(self, queue: str, module: str = "celery") -> None:
        super().__init__("beat")
        self.queue = queue
        self.module = module  # what runs `celery`'s command line (tests/support/beat_*.py)

    def start(self) -> Beat:
        self._spawn(
            [
                "beat", f"--scheduler={settings.CELERY_BEAT_SCHEDULER}", "--loglevel=DEBUG",
                f"--pidfile={ARTIFACTS / (self.name.split('@')[0] + '.pid')}",
            ],
            process_environment(self.queue, "local", {}),
            self.module,
        )  # fmt: skip
        return self
