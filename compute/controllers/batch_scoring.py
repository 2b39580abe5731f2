"""The sweep's step for batch scoring jobs (compute/inference/models/batch.py): each pass
reads the mini-batches whose job has ended, keeps the rows of those that succeeded, queues
the next attempt of those that failed (up to the batch job's attempts, then lists them as
failed), and once every mini-batch has ended, ends the batch job and removes its nodes.

One batch job's pass holds its row lock (skip-locked: a second sweep passes it by) and
moves each mini-batch by compare-and-set, in one transaction. A worker killed at any line
rolls the pass back whole; the next pass redoes it from the jobs' records, which are
written once. So a mini-batch's rows are kept once, and only unfinished ones run again."""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from compute.inference.models import BatchJob, BatchState, MiniBatch, MiniBatchState
from compute.inference.models.batch import OPEN, start_attempts
from compute.lib import jobfiles, snapshots
from compute.lib.downloads import text_cell
from compute.models import ComputeState, Job, JobRun, JobStatus, Node, NodeState
from compute.models.events import EventVerb, record
from compute.models.states import JOB_TERMINAL, NODE_NOT_BUSY

log = logging.getLogger(__name__)
J = JobStatus
MAX_ERROR = 500


def advance_open() -> list[int]:
    """One pass over every batch job with work left; the computes to reconcile now (new
    jobs queued, or nodes to remove)."""
    due: list[int] = []
    for batch_id in BatchJob.objects.filter(OPEN).values_list("pk", flat=True):
        try:
            due += advance(batch_id)
        except Exception:  # one broken batch job never stops the others' progress
            log.exception("batch scoring %s: pass failed", batch_id)
    return due


def advance(batch_id: int) -> list[int]:
    with transaction.atomic():
        batch = (
            BatchJob.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("compute")
            .filter(pk=batch_id)
            .first()
        )
        if batch is None or batch.compute is None:
            return []
        due = []
        if batch.state == BatchState.RUNNING:
            collect(batch)
            if start_attempts(batch):
                due.append(batch.compute.pk)
            if batch.batches_ended >= batch.batches_total:
                finish(batch)
        if batch.state == BatchState.CANCELED and not batch.nodes_released:
            # The rows of those that ended well before the cancel are kept; the rest end.
            collect(batch, retry=False)
            drop_unfinished(batch)
        if batch.state != BatchState.RUNNING and not batch.nodes_released:
            release_nodes(batch)
            due.append(batch.compute.pk)
        return due


def collect(batch: BatchJob, retry: bool = True) -> bool:
    """The mini-batches whose job ended: kept, retried (unless `retry` is off) or failed.
    True if any moved."""
    ended = list(
        batch.mini_batches.filter(state=MiniBatchState.RUNNING, job__status__in=JOB_TERMINAL)
        .select_related("job")
        .order_by("index")
    )
    now = timezone.now()
    compute = batch.compute
    assert compute is not None
    for mini_batch in ended:
        job = mini_batch.job
        assert job is not None
        outcome = read_rows(job) if job.status == J.COMPLETED else Outcome(error=why_failed(job))
        error = (outcome.error or "")[:MAX_ERROR]
        if outcome.error is None:
            state = MiniBatchState.DONE
            fields: dict[str, object] = {"rows": outcome.rows, "row_count": outcome.row_count}
        elif retry and mini_batch.attempts < batch.max_attempts:
            state, fields = MiniBatchState.PENDING, {"error": error}
        else:
            state, fields = MiniBatchState.FAILED, {"error": error}
        if state != MiniBatchState.PENDING:
            fields["finished_at"] = now
        if not MiniBatch.objects.filter(
            pk=mini_batch.pk, state=MiniBatchState.RUNNING, job=job
        ).update(state=state, **fields):
            continue  # moved by another pass (the row lock makes this never happen)
        if state == MiniBatchState.DONE:
            batch.batches_done += 1
            batch.row_count += outcome.row_count
            continue
        tries = f"attempt {mini_batch.attempts} of {batch.max_attempts}"
        if state == MiniBatchState.FAILED:
            batch.batches_failed += 1
            verb, then = EventVerb.MINI_BATCH_FAILED, "giving up"
        else:
            verb, then = EventVerb.MINI_BATCH_RETRIED, "retrying"
        message = f"Mini-batch {mini_batch.index + 1} failed ({tries}), {then}: {error}"
        record(compute, verb, message)
    if ended:
        BatchJob.objects.filter(pk=batch.pk).update(
            batches_done=batch.batches_done,
            batches_failed=batch.batches_failed,
            row_count=batch.row_count,
        )
    return bool(ended)


def drop_unfinished(batch: BatchJob) -> None:
    """A canceled batch job's mini-batches that had not ended: failed, so that the page
    shows none running and errors.csv lists the files that have no rows."""
    dropped = batch.mini_batches.filter(
        state__in=(MiniBatchState.PENDING, MiniBatchState.RUNNING)
    ).update(state=MiniBatchState.FAILED, error=CANCELED, finished_at=timezone.now())
    if dropped:
        batch.batches_failed += dropped
        BatchJob.objects.filter(pk=batch.pk).update(batches_failed=batch.batches_failed)


CANCELED = "Canceled before it ended: its files have no rows."


@dataclass(frozen=True)
class Outcome:
    rows: str = ""  # CSV text
    row_count: int = 0
    error: str | None = None


def read_rows(job: Job) -> Outcome:
    """The rows the runner marked in the job's output (its last attempt's, rank 0)."""
    run = JobRun.objects.filter(job=job, rank=0).order_by("-attempt").first()
    if run is None:
        return Outcome(error="its job left no output")
    mark = (job.environment.get("HANGAR_RESULT_MARK", "") + "\t").encode()
    handle = jobfiles.open_output(run.key)
    if handle is None:
        return Outcome(error="its job left no output")
    text, count, cut = io.StringIO(), 0, jobfiles.cut_marker().strip()
    # Its rows come from the user's code over hostile inputs: anything a line may hold
    # is this mini-batch's error, never the sweep's (a raise would roll back every pass).
    writer = csv.writer(text, lineterminator="\n")
    with handle:
        for line in handle:
            if line.strip() == cut:
                return Outcome(error="its output passed HANGAR_JOB_OUTPUT_LIMIT_MB; rows lost")
            if not line.startswith(mark):
                continue
            try:
                fields = json.loads(line[len(mark) :])
            except ValueError:
                return Outcome(error="a result line was cut short (output limit?)")
            except RecursionError:
                return Outcome(error="a result line nests its fields too deep")
            if not isinstance(fields, list):
                return Outcome(error="a result line is not a list of fields")
            writer.writerow(["" if value is None else text_cell(value) for value in fields])
            count += 1
    rows = text.getvalue()
    if "\x00" in rows or (not rows.isascii() and not encodable(rows)):
        return Outcome(error="a result line holds a NUL or a lone surrogate (not text)")
    return Outcome(rows=rows, row_count=count)


def encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def why_failed(job: Job) -> str:
    if job.status == J.CANCELED:
        return job.error or "its job was canceled"
    code = f"exit code {job.exit_code}" if job.exit_code is not None else "no exit code"
    last = last_error_line(job)
    return f"{code}: {last}" if last else (job.error or code)


def last_error_line(job: Job) -> str:
    """The last line of its output that says something (a traceback's last line, say)."""
    run = JobRun.objects.filter(job=job, rank=0).order_by("-attempt").first()
    if run is None:
        return ""
    for line in reversed(jobfiles.read_output(run.key, limit=4000).splitlines()):
        line = "".join(ch for ch in line if ch.isprintable()).strip()
        if line and not line.startswith("[hangar]"):
            return line[:300]
    return ""


def finish(batch: BatchJob) -> None:
    if batch.batches_failed == 0:
        state, error = BatchState.SUCCEEDED, ""
    elif batch.batches_done == 0:
        state, error = BatchState.FAILED, "Every mini-batch failed: see the errors file."
    else:
        state = BatchState.PARTIAL
        error = f"{batch.batches_failed} of {batch.batches_total} mini-batches failed."
    BatchJob.objects.filter(pk=batch.pk, state=BatchState.RUNNING).update(
        state=state, error=error, finished_at=timezone.now()
    )
    batch.state = state
    assert batch.compute is not None
    record(
        batch.compute,
        EventVerb.BATCH_ENDED,
        f"Batch scoring {batch.name} {BatchState(state).label.lower()}: {batch.row_count} rows "
        f"from {batch.batches_done} of {batch.batches_total} mini-batches.",
    )


def release_nodes(batch: BatchJob) -> None:
    """Its cluster goes (the reconciler cancels what still runs on it, removes its nodes)."""
    compute = batch.compute
    assert compute is not None
    if compute.state not in (ComputeState.DELETING, ComputeState.DELETED):
        compute.transition(compute.state, ComputeState.DELETING)
        Node.objects.filter(compute=compute, state__in=NODE_NOT_BUSY).update(
            state=NodeState.LEAVING
        )
        record(
            compute, EventVerb.DELETE_REQUESTED, f"Batch scoring {batch.name} ended: its nodes go."
        )
    BatchJob.objects.filter(pk=batch.pk).update(nodes_released=True)
    batch.nodes_released = True
    # Its inputs and scripts are of no more use (its rows are in the ledger): their disk
    # goes too, once this is committed (a rollback keeps them for the next pass).
    key = batch.pk
    for store in (snapshots.batch_code_store(), snapshots.batch_input_store()):
        folder = store.folder(key)
        transaction.on_commit(functools.partial(snapshots.remove_tree, folder))
