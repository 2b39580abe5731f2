"""Tests whose worker logs an error (not collected: no `test_` prefix). Run in a pytest of
its own by test_leftovers.py: the first must fail at teardown, the second, which expects
the error, must pass."""

from __future__ import annotations

import pytest

from config.celery import app
from tests.integration.helpers import wait_for

UNREGISTERED = "Received unregistered task of type 'hangar.no-such-task'"


def make_the_worker_log_an_error(worker) -> None:
    app.send_task("hangar.no-such-task", queue=worker.queue)
    wait_for(
        lambda: any(UNREGISTERED in e.text for e in worker.log_entries()),
        what="the worker logged it",
    )


def test_an_unexpected_worker_error(db, workers):
    make_the_worker_log_an_error(workers.get("noop"))


@pytest.mark.worker_errors_expected(r"unregistered task of type 'hangar\.no-such-task'")
def test_an_expected_worker_error(db, workers):
    make_the_worker_log_an_error(workers.get("noop"))
