"""The only way work is enqueued: once the transaction that asked for it has committed,
and by task name, so an action or a controller never imports the tasks (nor, through
them, the controllers and the drivers a web process has no use for)."""

from __future__ import annotations

from django.db import transaction

from config.celery import app

RECONCILE = "hangar.reconcile"


def reconcile(compute_id: int) -> None:
    """Bring a compute in line soon. Inside a transaction: on commit (a rollback enqueues
    nothing); outside one (a follower thread, say): at once."""
    transaction.on_commit(lambda: app.send_task(RECONCILE, args=[compute_id]))


def reconcile_each(compute_ids: list[int]) -> None:
    for compute_id in compute_ids:
        reconcile(compute_id)
