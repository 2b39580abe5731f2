"""Crashes at a chosen line, and a count of job starts kept outside Hangar.

`reconcile_until` runs a real reconcile of one compute in a separate process on the test
database and SIGKILLs that process the moment it enters the named function: a worker
killed at that line, with its threads, connections and row locks gone with it.

`StartCounter` is a TCP listener the test owns: a job whose command is `counter.command()`
connects once per process start (nodes on the host network), so "started exactly once" is
counted from outside Hangar's own bookkeeping.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from pathlib import Path

from django.conf import settings

from tests.support.worker import process_environment

ROOT = Path(__file__).resolve().parents[2]

CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    import django
    django.setup()
    module, function, compute_id = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def crash(frame, event, arg):
        here = frame.f_code.co_name, frame.f_globals.get("__name__")
        if event == "call" and here == (function, module):
            os.kill(os.getpid(), signal.SIGKILL)

    sys.setprofile(crash)
    import threading
    threading.setprofile(crash)
    from compute.controllers.reconcile import reconcile
    reconcile(compute_id)
    sys.exit(3)  # the function was never entered
    """
)


def reconcile_until(compute_id: int, module: str, function: str, **extra_env: str) -> None:
    """Reconcile `compute_id` in another process, SIGKILLed on entering module.function."""
    # The same environment a test worker gets (the crashed process never sends a task:
    # its queue does not matter).
    environment = process_environment(
        getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "hangar-crash"),
        settings.HANGAR_DRIVER,
        {"HANGAR_NODE_NETWORK": settings.HANGAR_NODE_NETWORK, **extra_env},
    )
    done = subprocess.run(
        [sys.executable, "-c", CRASHER, module, function, str(compute_id)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        timeout=60,
    )
    if done.returncode != -signal.SIGKILL:
        raise AssertionError(
            f"the reconcile did not reach {module}.{function} (exit {done.returncode}): "
            + done.stderr.decode(errors="replace")[-2000:]
        )


class StartCounter:
    """Counts job starts by HANGAR_JOB_ID, over loopback TCP."""

    def __init__(self) -> None:
        self.starts: Counter[int] = Counter()
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self.port = self._server.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def command(self, then: str = "sleep 0.3", nc: str = "nc") -> str:
        """`nc`: on the host (host processes) Debian's busybox-static provides it."""
        return f'echo "$HANGAR_JOB_ID" | {nc} 127.0.0.1 {self.port}; {then}'

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                data = b""
                try:
                    while b"\n" not in data:
                        chunk = connection.recv(64)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
            line = data.split(b"\n", 1)[0].strip()
            if line.isdigit():
                with self._lock:
                    self.starts[int(line)] += 1

    def count(self, job_id: int) -> int:
        with self._lock:
            return self.starts[job_id]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.close()
