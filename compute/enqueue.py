"""The only way work is enqueued: once the transaction that asked for it has committed,
and by task name, so an action or a controller never imports the tasks (nor, through
them, the controllers and the drivers a web process has no use for)."""

from __future__ import annotations

import random
from functools import partial

from django.conf import settings
from django.db import transaction

from config.celery import app

RECONCILE = "hangar.reconcile"
RECONCILE_BATCH = "hangar.reconcile_batch"
EMAIL_NOTIFICATIONS = "hangar.email_notifications"
BUILD_ENVIRONMENT = "hangar.build_environment"
AUTOSCALE_REPLICAS = "hangar.autoscale_replicas"
# The gateway's call for the replica autoscaler: past this, the next sweep has run it.
AUTOSCALE_EXPIRES_SECONDS = 2
PRUNE_ENVIRONMENT_IMAGES = "hangar.prune_environment_images"
# A sweep's hand-out still unstarted after this many sweep periods has been handed out
# again by every sweep since (the computes are still due): the workers drop it unrun
# instead of working through a backlog of repeats after an outage. Ten periods, not one,
# so clocks a little apart between the machines of the sweep and of the worker drop nothing.
HAND_OUT_EXPIRES_PERIODS = 10
ARGS_REPR_MAX = 1024  # Celery's own limit (amqp.argsrepr_maxsize)


def reconcile(compute_id: int) -> None:
    """Bring a compute in line soon. Inside a transaction: on commit (a rollback enqueues
    nothing); outside one (a follower thread, say): at once."""
    transaction.on_commit(lambda: app.send_task(RECONCILE, args=[compute_id]))


def autoscale_replicas() -> None:
    """Run the replica autoscaler now (the gateway, when load passes what the ready
    replicas take): a load step need not wait for the next sweep. Not in a transaction."""
    app.send_task(AUTOSCALE_REPLICAS, ignore_result=True, expires=AUTOSCALE_EXPIRES_SECONDS)


def build_environment(image_pk: int) -> None:
    """Build an environment's image soon (once committed); a worker builds each spec once."""
    # robust: a send that fails is made again by the sweep (`builds_to_hand_out`).
    transaction.on_commit(lambda: app.send_task(BUILD_ENVIRONMENT, args=[image_pk]), robust=True)


def prune_environment_images(image_pks: list[int] | None) -> None:
    """Remove unused environment images (of `image_pks`, or all), in a worker: only
    workers talk to Docker."""
    transaction.on_commit(lambda: app.send_task(PRUNE_ENVIRONMENT_IMAGES, args=[image_pks]))


def email_notifications(notification_ids: list[int]) -> None:
    """Email these inbox entries from a task, once the transaction that wrote them has
    committed (a rollback emails nothing about what did not happen)."""
    if notification_ids:
        # robust: a broker that fails the send loses these emails (the inbox has the
        # notifications), never the rest of the sweep that called this.
        transaction.on_commit(partial(send_emails, notification_ids), robust=True)


def send_emails(notification_ids: list[int]) -> None:
    args = [notification_ids]
    app.send_task(
        EMAIL_NOTIFICATIONS, args=args, argsrepr=repr(args)[:ARGS_REPR_MAX], ignore_result=True
    )


def reconcile_due(compute_ids: list[int]) -> int:
    """The sweep's hand-out: reconcile every compute it found due, in at most
    HANGAR_SWEEP_MAX_MESSAGES messages (each a broker round trip). Returns how many.

    Nothing is lost if a worker dies mid-batch or a message expires: the work is
    level-triggered, so the next sweep finds whatever is still due and hands it out again,
    and a compute in two batches (or a batch and its own task) is reconciled by one worker
    at a time (the lease, controllers/lease.py)."""
    batches = deal(compute_ids, settings.HANGAR_SWEEP_MAX_MESSAGES)
    # Under a backlog the first messages of each sweep run first: shuffled, no compute waits
    # behind the same others every time.
    random.shuffle(batches)
    transaction.on_commit(lambda: send_batches(batches))
    return len(batches)


def deal(compute_ids: list[int], most: int) -> list[list[int]]:
    """`compute_ids` in at most `most` batches of sizes differing by one at most: all
    alone when they are that few, so each starts at once, on any free worker."""
    count = min(len(compute_ids), most)
    return [compute_ids[start::count] for start in range(count)]


def send_batches(batches: list[list[int]]) -> None:
    expires = settings.HANGAR_SWEEP_SECONDS * HAND_OUT_EXPIRES_PERIODS  # seconds from now
    # One producer (one pooled broker connection) for the whole hand-out; no result
    # subscription: these tasks ignore their results. The args' repr (for logs and
    # monitors) is the C one, cut as Celery cuts it: Celery's own saferepr walked each id in
    # Python and cost more than the round trip.
    with app.producer_or_acquire() as producer:
        for batch in batches:
            name, args = (RECONCILE, batch) if len(batch) == 1 else (RECONCILE_BATCH, [batch])
            app.send_task(
                name,
                args=args,
                argsrepr=repr(args)[:ARGS_REPR_MAX],
                expires=expires,
                ignore_result=True,
                producer=producer,
            )
