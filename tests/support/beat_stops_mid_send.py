"""`python -m tests.support.beat_stops_mid_send <celery arguments>`: celery as the Procfile
runs it, except that the process sends itself SIGTERM in the middle of sending its first
task, where a supervisor's stop (honcho's Ctrl-C, systemd) can land any second."""

from __future__ import annotations

import os
import signal
import sys

from celery import signals
from celery.__main__ import main


def stop_mid_send(**_: object) -> None:
    signals.before_task_publish.disconnect(stop_mid_send)
    os.kill(os.getpid(), signal.SIGTERM)


signals.before_task_publish.connect(stop_mid_send, weak=False)

if __name__ == "__main__":
    sys.exit(main())
