"""The sweep hands out work in bounded batches (issue 16): with more computes due than
HANGAR_SWEEP_MAX_MESSAGES it puts that many messages on the broker, each a batch; a real
worker reconciles every compute of every batch, and one compute that fails does not stop
the rest of its batch. Real PostgreSQL, Redis, Celery worker and local nodes."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from datetime import datetime

import pytest
import redis
from django.utils import timezone

from compute import enqueue, tasks
from compute.models import Compute, ComputeKind, ComputeState, Node, NodeState, VmSize
from tests.integration.helpers import wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import Team, make_team
from tests.support.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
S = ComputeState


@pytest.fixture
def broker(workers, catalog, celery_queue, settings) -> Iterator[redis.Redis]:
    """The session's queue with no worker on it (the test starts its own, without beat:
    only the messages of the sweep it runs in-process are ever sent)."""
    workers.stop()
    settings.HANGAR_DRIVER = "local"
    # The test's worker starts after the sweep ran, which takes well over the ten seconds
    # a hand-out lives on a loaded machine: here it lives ten minutes (the in-process
    # sweep's period only; no beat runs).
    settings.HANGAR_SWEEP_SECONDS = 60
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(celery_queue)
    yield client
    remove_all_nodes()  # stops the test's worker first
    client.delete(celery_queue)


def clusters(team: Team, count: int, min_nodes: int, prefix: str = "c") -> list[Compute]:
    """Clusters being created, made without an action: only a sweep hands them out."""
    return Compute.objects.bulk_create(
        Compute(
            workspace=team.workspace,
            name=f"{prefix}-{i}",
            kind=ComputeKind.CLUSTER,
            state=S.CREATING,
            vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
            min_nodes=min_nodes,
            max_nodes=1,
        )
        for i in range(count)
    )


def queued_messages(client: redis.Redis, queue: str) -> list[tuple[str, list, str]]:
    """(task name, args, expires) of each message waiting on the queue."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args, message["headers"]["expires"]))
    return found


def settled(compute: Compute, nodes: int) -> bool:
    compute.refresh_from_db()
    idle = Node.objects.filter(compute=compute, state=NodeState.IDLE).count()
    return compute.state == S.STEADY and idle == nodes


def test_thirty_due_go_out_in_ten_batches_and_a_worker_settles_every_one(
    broker, celery_queue, settings
):
    settings.HANGAR_SWEEP_MAX_MESSAGES = 10
    team = make_team("batches")
    due = clusters(team, 30, min_nodes=1)
    result = tasks.reconcile_sweep()  # the task beat sends, run here
    assert (result["due"], result["messages"]) == (30, 10)

    messages = queued_messages(broker, celery_queue)
    assert len(messages) == math.ceil(30 / 3) == 10
    assert {name for name, _, _ in messages} == {enqueue.RECONCILE_BATCH}
    handed_out = [pk for _, (batch,), _ in messages for pk in batch]
    assert sorted(handed_out) == sorted(c.pk for c in due)  # each once, none left out
    assert {len(batch) for _, (batch,), _ in messages} == {3}
    # A hand-out unstarted after ten sweep periods is dropped: later sweeps handed it out again.
    lifetime = settings.HANGAR_SWEEP_SECONDS * enqueue.HAND_OUT_EXPIRES_PERIODS
    for _, _, expires in messages:
        left = (datetime.fromisoformat(expires) - timezone.now()).total_seconds()
        assert lifetime - 30 < left <= lifetime

    # With beat, as in production: a node still coming up when its batch's pass ends is
    # settled by a later sweep (level-triggered), not by the hand-out above.
    worker = Worker(celery_queue, "local", {}, beat=True).start()
    for cluster in due:
        wait_for(lambda c=cluster: settled(c, 1), timeout=120, what=f"{cluster.name} settled")
    ran = [e for e in worker.log_entries() if "hangar.reconcile_batch[" in e.first_line]
    assert ran  # the batches ran as batches, on a real worker


def test_a_few_due_go_out_one_task_each(broker, celery_queue, settings):
    settings.HANGAR_SWEEP_MAX_MESSAGES = 10
    due = clusters(make_team("few"), 3, min_nodes=0)
    assert tasks.reconcile_sweep()["messages"] == 3
    messages = queued_messages(broker, celery_queue)
    assert sorted((name, args) for name, args, _ in messages) == [
        (enqueue.RECONCILE, [c.pk]) for c in due
    ]


@pytest.mark.worker_errors_expected(r"reconcile failed; the rest of its batch goes on")
def test_one_failing_compute_does_not_stop_the_rest_of_its_batch(broker, celery_queue, settings):
    settings.HANGAR_SWEEP_MAX_MESSAGES = 1  # everything due in one batch
    team = make_team("failing")
    first = clusters(team, 1, min_nodes=0, prefix="first")[0]
    broken = broken_instance(team)
    last = clusters(team, 1, min_nodes=0, prefix="last")[0]
    assert tasks.reconcile_sweep()["messages"] == 1
    [(_, (batch,), _)] = queued_messages(broker, celery_queue)
    assert batch == [first.pk, broken.pk, last.pk]

    worker = Worker(celery_queue, "local", {}, beat=False).start()
    wait_for(lambda: settled(first, 0) and settled(last, 0), timeout=60, what="both settled")
    failure = f"compute {broken.pk}: reconcile failed; the rest of its batch goes on"
    wait_for(
        lambda: any(failure in e.text and "IntegrityError" in e.text for e in worker.log_entries()),
        what="the failure logged, with its traceback",
    )
    broken.refresh_from_db()
    assert broken.state == S.STARTING  # the next sweep tries it again


def broken_instance(team: Team) -> Compute:
    """An instance to start whose node counter lags behind its rows (as after restoring an
    old backup): its reconcile raises an IntegrityError adding node n-0."""
    box = Compute.objects.create(
        workspace=team.workspace,
        name="broken",
        kind=ComputeKind.INSTANCE,
        state=S.STARTING,
        vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
    )
    Node.objects.create(compute=box, index=0, state=NodeState.UNUSABLE, ended_at=timezone.now())
    Compute.objects.filter(pk=box.pk).update(next_node_index=0)
    return box
