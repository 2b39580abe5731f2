"""Run a manage.py command with the wall clock frozen: `python -m tests.support.frozen_clock
ISO-MOMENT runserver ...`. Web processes a test starts then count their per-minute windows
at a moment the test chose, so a burst never straddles two windows and no test waits on
the real clock for a fresh minute. (time.monotonic is not frozen: timeouts still work.)"""

from __future__ import annotations

import os
import sys

import time_machine


def main() -> None:
    moment, *command = sys.argv[1:]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.core.management import execute_from_command_line

    with time_machine.travel(moment, tick=False):
        execute_from_command_line(["manage.py", *command])


if __name__ == "__main__":
    main()
