"""The emails a sweep left to its task (compute/enqueue.py `email_notifications`), sent here
by the task's own code, so a test reads them in Django's test outbox (`mail.outbox`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from compute import enqueue, tasks


def send_captured_emails(callbacks: list[Callable[[], object]]) -> None:
    """Of the on-commit callbacks a test captured, run the email tasks they would send."""
    for callback in callbacks:
        if isinstance(callback, partial) and callback.func is enqueue.send_emails:
            tasks.email_notifications(*callback.args)
