"""Batch scoring on real parts: a worker with its sweep, Docker nodes of the scikit-learn
environment, the runner calling the user's run(mini_batch) over input files read-only in
each node. The mini-batch ledger keeps each mini-batch's rows once, across a worker
SIGKILL, and a mini-batch that keeps failing is listed, not retried for ever."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import docker
import pytest

from compute.actions.environments import sync_curated
from compute.inference.actions.batch import Inputs, submit_batch
from compute.inference.actions.models import register_model
from compute.inference.models import BatchJob, BatchState, MiniBatch, MiniBatchState
from compute.inference.selectors import predictions_csv
from compute.models import Compute, ComputeState, Environment, Event, Node, VmSize
from compute.models.events import EventVerb
from tests.integration.helpers import wait_for
from tests.integration.test_score_server import train
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [
    pytest.mark.integration,
    pytest.mark.image_builds,  # its nodes need Python: the scikit-learn image
    pytest.mark.django_db(transaction=True),
]

# Nearest centroid of the point in each file ("x,y"); a file named *-bad.txt breaks run().
SCRIPT = """
import json, os, time
from pathlib import Path

centroids = None


def init():
    global centroids
    centroids = json.loads(Path(os.environ["HANGAR_MODEL_DIR"], "model.json").read_text())


def nearest(point):
    return min(
        centroids,
        key=lambda label: sum((a - b) ** 2 for a, b in zip(point, centroids[label])),
    )


def run(mini_batch):
    time.sleep(float(os.environ.get("BATCH_SLEEP", "0.3")))
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name.endswith("-bad.txt"):
            raise ValueError(f"cannot read {name}")
        point = [float(v) for v in Path(path).read_text().split(",")]
        print("scored", name)  # a line of its own: never taken for a row
        rows.append([name, nearest(point)])
    return rows
"""


def inputs(count: int, bad: tuple[int, ...] = ()) -> tuple[Inputs, dict[str, str]]:
    """`count` files, each a point near one centroid; the labels they should get."""
    files, expected = [], {}
    for number in range(count):
        large = number % 3 == 0
        name = f"point-{number:03}{'-bad' if number in bad else ''}.txt"
        text = "9.1,8.9" if large else "1.0,1.1"
        files.append((name, io.BytesIO(text.encode())))
        expected[name] = "large" if large else "small"
    return Inputs(files), expected


def setup(tmp_path: Path, label: str):
    team = make_team(label)
    access = get_access(team.contributor, team.workspace.slug)
    sync_curated()
    sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    train(tmp_path)
    weights = (tmp_path / "model.json").read_bytes()
    model = register_model(access, name="centroids", file_name="model.json", data=weights)
    return access, model, sklearn


def rows_of(batch: BatchJob) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(predictions_csv(batch)))))


def test_a_hundred_files_on_two_nodes_across_a_worker_sigkill_give_a_hundred_rows_once(
    workers, catalog, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    worker = workers.get("docker")
    access, model, sklearn = setup(tmp_path, "batch")
    files, expected = inputs(100)
    batch = submit_batch(
        access, name="nightly", model=model, scoring_script=SCRIPT, environment=sklearn,
        vm_size=VmSize.objects.get(name="Standard_D2s_v3"), inputs=files, node_count=2,
        mini_batch_size=10, max_attempts=3,
    )  # fmt: skip
    assert (batch.file_count, batch.batches_total) == (100, 10)
    compute = batch.compute
    assert compute is not None and compute.is_batch
    try:
        # Mid-way, the worker (and the beat within it) dies at whatever line it was on.
        wait_for(
            lambda: BatchJob.objects.get(pk=batch.pk).batches_done >= 3,
            timeout=600,
            what="three mini-batches done (the environment built first, if need be)",
        )
        worker.kill()
        done_before = set(
            MiniBatch.objects.filter(batch=batch, state=MiniBatchState.DONE).values_list(
                "index", flat=True
            )
        )
        workers.get("docker")
        wait_for(
            lambda: BatchJob.objects.get(pk=batch.pk).state != BatchState.RUNNING,
            timeout=300,
            what="the batch job ended",
        )
        batch.refresh_from_db()
        assert (batch.state, batch.batches_done, batch.row_count) == (
            BatchState.SUCCEEDED,
            10,
            100,
        )
        rows = rows_of(batch)
        # Every file once, with the label its point should get, in input order.
        assert [name for name, _ in rows] == sorted(expected)
        assert dict(rows) == expected
        # What was done before the crash was not run again.
        again = MiniBatch.objects.filter(batch=batch, index__in=done_before, attempts__gt=1)
        assert not again.exists()
        # Two nodes at most, ran at once; then the batch job's nodes go.
        assert Event.objects.filter(compute=compute, verb=EventVerb.SCALED_UP).exists()
        wait_for(
            lambda: Compute.objects.get(pk=compute.pk).state == ComputeState.DELETED,
            timeout=60,
            what="the batch job's nodes removed",
        )
        assert not Node.objects.filter(compute=compute).exists()
        client = docker.from_env()
        assert not client.containers.list(
            all=True, filters={"label": f"hangar.compute={compute.pk}"}
        )
    finally:
        remove_all_nodes()


def test_a_mini_batch_that_keeps_failing_is_listed_and_the_rest_are_kept(
    workers, catalog, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    access, model, sklearn = setup(tmp_path, "flaky")
    files, expected = inputs(20, bad=(7,))
    batch = submit_batch(
        access, name="flaky", model=model, scoring_script=SCRIPT, environment=sklearn,
        vm_size=VmSize.objects.get(name="Standard_D2s_v3"), inputs=files, node_count=1,
        mini_batch_size=5, max_attempts=2,
    )  # fmt: skip
    try:
        wait_for(
            lambda: BatchJob.objects.get(pk=batch.pk).state != BatchState.RUNNING,
            timeout=600,
            what="the batch job ended",
        )
        batch.refresh_from_db()
        assert (batch.state, batch.batches_done, batch.batches_failed, batch.row_count) == (
            BatchState.PARTIAL,
            3,
            1,
            15,
        )
        failed = MiniBatch.objects.get(batch=batch, state=MiniBatchState.FAILED)
        assert (failed.index, failed.attempts) == (1, 2)
        assert "ValueError: cannot read point-007-bad.txt" in failed.error
        kept = {name: label for name, label in expected.items() if name not in failed.files}
        assert dict(rows_of(batch)) == kept and len(rows_of(batch)) == 15
        retried = Event.objects.filter(compute=batch.compute, verb=EventVerb.MINI_BATCH_RETRIED)
        assert retried.count() == 1
        assert json.dumps(failed.files) == json.dumps(
            [f"point-{n:03}{'-bad' if n == 7 else ''}.txt" for n in range(5, 10)]
        )
    finally:
        remove_all_nodes()


def test_a_preempted_low_priority_node_redoes_only_its_mini_batch_and_no_row_twice(
    workers, catalog, settings, tmp_path
):
    from compute.actions.jobs import preempt_node
    from compute.models import NodeState

    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    access, model, sklearn = setup(tmp_path, "cheap")
    from django.contrib.auth import get_user_model

    admin = get_access(get_user_model().objects.get(username="cheap-admin"), "cheap")
    files, expected = inputs(30)
    batch = submit_batch(
        access, name="cheap", model=model, scoring_script=SCRIPT, environment=sklearn,
        vm_size=VmSize.objects.get(name="Standard_D2s_v3"), inputs=files, node_count=2,
        tier="low_priority", mini_batch_size=5, max_attempts=1,
    )  # fmt: skip
    try:
        busy = wait_for(
            lambda: Node.objects.filter(compute=batch.compute, state=NodeState.RUNNING).first(),
            timeout=600,
            what="a node running a mini-batch",
        )
        preempt_node(admin, busy.pk)
        wait_for(
            lambda: BatchJob.objects.get(pk=batch.pk).state != BatchState.RUNNING,
            timeout=300,
            what="the batch job ended",
        )
        batch.refresh_from_db()
        # One attempt allowed, yet nothing failed: a preempted mini-batch's job went back
        # to the queue (as any job of a lost node) and ran once more, elsewhere.
        assert (batch.state, batch.row_count) == (BatchState.SUCCEEDED, 30)
        assert dict(rows_of(batch)) == expected and len(rows_of(batch)) == 30
        requeued = MiniBatch.objects.filter(batch=batch, job__retries__gt=0)
        assert requeued.exists()
        assert not MiniBatch.objects.filter(batch=batch, attempts__gt=1).exists()
    finally:
        remove_all_nodes()


# Where it ran: the worker's pid, how many init() calls and run() calls its node had seen
# (counted in the node's /tmp, which outlives each mini-batch job); a file saying "exit"
# ends the worker in run() the first time it is seen.
COUNTING = """
import os
from pathlib import Path

TMP = Path("/tmp")


def count(name):
    with open(TMP / name, "a") as log:
        log.write(f"{os.getpid()}\\n")
    return len((TMP / name).read_text().split())


def init():
    count("inits.txt")


def run(mini_batch):
    runs = count("runs.txt")
    inits = len((TMP / "inits.txt").read_text().split())
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        if Path(path).read_text() == "exit" and not (TMP / f"ended-{name}").exists():
            (TMP / f"ended-{name}").touch()
            os._exit(3)
        rows.append([name, os.getpid(), inits, runs])
    return rows
"""


def counted(tmp_path: Path, label: str, crash_at: int | None):
    access, model, sklearn = setup(tmp_path, label)
    files = [(f"in-{n:02}.txt", io.BytesIO(b"exit" if n == crash_at else b"ok")) for n in range(12)]
    batch = submit_batch(
        access, name=label, model=model, scoring_script=COUNTING, environment=sklearn,
        vm_size=VmSize.objects.get(name="Standard_D2s_v3"), inputs=Inputs(files),
        node_count=1, mini_batch_size=2, max_attempts=2,
    )  # fmt: skip
    wait_for(
        lambda: BatchJob.objects.get(pk=batch.pk).state != BatchState.RUNNING,
        timeout=600,
        what="the batch job ended",
    )
    batch.refresh_from_db()
    return batch, rows_of(batch)


def test_init_runs_once_per_node_worker_not_once_per_mini_batch(
    workers, catalog, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    try:
        batch, rows = counted(tmp_path, "once", crash_at=None)
        assert (batch.state, batch.batches_done, batch.row_count) == (BatchState.SUCCEEDED, 6, 12)
        assert [row[0] for row in rows] == [f"in-{n:02}.txt" for n in range(12)]
        # Six mini-batch jobs, one node: one worker process, one init(), six run() calls.
        assert len({row[1] for row in rows}) == 1
        assert {row[2] for row in rows} == {"1"}
        assert sorted({row[3] for row in rows}, key=int) == ["1", "2", "3", "4", "5", "6"]
        assert not MiniBatch.objects.filter(batch=batch, attempts__gt=1).exists()
    finally:
        remove_all_nodes()


def test_a_worker_ended_by_run_fails_only_its_mini_batch_and_the_retry_gets_a_fresh_one(
    workers, catalog, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    try:
        batch, rows = counted(tmp_path, "crash", crash_at=7)  # in mini-batch 4 (index 3)
        assert (batch.state, batch.batches_done, batch.row_count) == (BatchState.SUCCEEDED, 6, 12)
        # Every file once: the crashed mini-batch kept its retry's rows only.
        assert [row[0] for row in rows] == [f"in-{n:02}.txt" for n in range(12)]
        retried = MiniBatch.objects.get(batch=batch, attempts__gt=1)
        assert (retried.index, retried.attempts) == (3, 2)
        events = Event.objects.filter(compute=batch.compute, verb=EventVerb.MINI_BATCH_RETRIED)
        assert [e.message for e in events if "exited with code 3" in e.message], list(events)
        # Two workers in all: the first until the crash, a fresh one (init again) after.
        workers_seen = {(row[1], row[2]) for row in rows}
        assert len(workers_seen) == 2 and {inits for _, inits in workers_seen} == {"1", "2"}
        by_file = {row[0]: row for row in rows}
        assert by_file["in-07.txt"][2] == "2" and by_file["in-00.txt"][2] == "1"
    finally:
        remove_all_nodes()
