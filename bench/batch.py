"""Batch scoring figures: the same batch job (40 files, then 120, mini-batches of 4, a run()
that spends 0.25 s per file) on one node and on two, from submit to every row kept, on real
Docker nodes of the scikit-learn environment (adopted in a second when this engine has its
image, built from Debian's archive otherwise). Goal: two nodes ≥ 1.8× one node."""

from __future__ import annotations

import io
import os
import time
import uuid

from django.conf import settings

from bench.jobs import wait
from compute.actions.environments import queue_build, sync_curated
from compute.inference.actions.batch import Inputs, submit_batch
from compute.inference.actions.models import register_model
from compute.inference.models import BatchJob, BatchState
from compute.lib import snapshots
from compute.models import Environment, ImageState, VmSize
from config.celery import app
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import Worker
from workspace.access import get_access

FILES, PER_MINI_BATCH, SECONDS_PER_FILE = 40, 4, 0.25
SCRIPT = f"""
import time


def init():
    pass


def run(mini_batch):
    time.sleep({SECONDS_PER_FILE} * len(mini_batch))
    return [[path.rsplit("/", 1)[-1], 1] for path in mini_batch]
"""


def run() -> None:
    queue = f"hangar-bench-{uuid.uuid4().hex[:8]}"
    app.conf.task_default_queue = queue
    settings.HANGAR_DRIVER = "docker"
    worker = Worker(queue, "docker", {"HANGAR_SWEEP_SECONDS": os.environ.get("SWEEP", "1")})
    worker.start()
    # The bench's database is new each run and its ids start again: no folder of a past
    # run may stay under this bench site's own stores.
    for store in (
        snapshots.model_store(),
        snapshots.batch_code_store(),
        snapshots.batch_input_store(),
    ):
        snapshots.remove_tree(store.root)
    team = make_team(f"batchbench{uuid.uuid4().hex[:4]}")
    access = get_access(team.admin, team.workspace.slug)
    try:
        sync_curated()
        sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
        queue_build(sklearn.image)
        wait(lambda: reload(sklearn).image.state == ImageState.READY, timeout=900, step=0.5)
        model = register_model(access, name="none", file_name="model.txt", data=b"-")
        size = VmSize.objects.get(name="Standard_D2s_v3")
        # A short batch (10 s of work on one node) twice, and a longer one (30 s) once:
        # the speed-up two nodes give, and how a start's fixed cost weighs in each.
        for count, rounds in ((FILES, 2), (3 * FILES, 1)):
            took: dict[int, list[float]] = {}
            for nodes in (1, 2) * rounds:
                seconds = score(access, model, sklearn, size, nodes, count)
                took.setdefault(nodes, []).append(seconds)
            one, two = min(took[1]), min(took[2])
            label = f"batch scoring, {count} files, submit → all rows"
            print(
                f"{label:<44} 1 node {one:5.1f} s  2 nodes {two:5.1f} s  speed-up "
                f"{one / two:4.2f}× (goal ≥ 1.80×; the work alone: "
                f"{count * SECONDS_PER_FILE:.0f} s on one node)"
            )
    finally:
        worker.stop()
        remove_all_nodes()


def score(access, model, environment, size, nodes: int, count: int) -> float:
    """One batch job of `count` files on up to `nodes` nodes: seconds to its last row."""
    files = [(f"f{n:03}.txt", io.BytesIO(b"1")) for n in range(count)]
    began = time.perf_counter()
    batch = submit_batch(
        access, name=f"bench-{nodes}-{uuid.uuid4().hex[:4]}", model=model,
        scoring_script=SCRIPT, environment=environment, vm_size=size, inputs=Inputs(files),
        node_count=nodes, mini_batch_size=PER_MINI_BATCH,
    )  # fmt: skip
    ended = wait(lambda: ended_state(batch), timeout=600, step=0.05)
    seconds = time.perf_counter() - began
    if ended != BatchState.SUCCEEDED:
        raise SystemExit(f"bench: the batch job on {nodes} node(s) ended {ended}")
    if os.environ.get("BENCH_VERBOSE"):
        timeline(batch, nodes, seconds)
    return seconds


def reload(environment: Environment) -> Environment:
    environment.refresh_from_db()
    environment.image.refresh_from_db()
    return environment


def ended_state(batch: BatchJob) -> str | None:
    state = BatchJob.objects.filter(pk=batch.pk).values_list("state", flat=True).first()
    return None if state == BatchState.RUNNING else state


def timeline(batch: BatchJob, nodes: int, seconds: float) -> None:
    """Where the time went: each mini-batch job's wait, start and run, and the ending."""
    from compute.models import Job

    jobs = Job.objects.filter(compute_id=batch.compute_id).order_by("pk")
    rows = [(j.queued_at, j.preparing_at, j.running_at, j.finished_at) for j in jobs]
    start = min(r[0] for r in rows)
    batch.refresh_from_db()
    print(f"  {nodes} node(s), {seconds:.1f} s; per job: placed, running, finished (s from submit)")
    for _queued, preparing, running, finished in rows:
        marks = [
            (t - start).total_seconds() if t else float("nan")
            for t in (preparing, running, finished)
        ]
        print("   " + "  ".join(f"{m:6.2f}" for m in marks))
    assert batch.finished_at is not None
    print(f"   ended at {(batch.finished_at - start).total_seconds():6.2f}")
