"""Batch scoring: a model's scoring script over many input files, on a managed cluster of
the job's own. The inputs are split into mini-batches of N files; each mini-batch is one
job on that cluster whose process calls `run(mini_batch)`. The mini-batch ledger (one row
each, moved by compare-and-set under the batch job's row lock) is what makes a crashed
worker or a preempted node redo only unfinished mini-batches and never write a row twice:
each mini-batch's rows are kept once, with the attempt that made them."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.urls import reverse

from compute.inference.models.endpoints import NAME_RULE
from compute.inference.models.registry import RegisteredModel
from compute.models import Compute, Environment, Job, Tier, VmSize
from workspace.models import Workspace

MAX_MINI_BATCH = 1000
MAX_ATTEMPTS = 10


class BatchState(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    # Every mini-batch ended, some failed past their attempts (listed in the errors file).
    PARTIAL = "partial", "Completed with errors"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"


BATCH_ENDED = (BatchState.SUCCEEDED, BatchState.PARTIAL, BatchState.FAILED, BatchState.CANCELED)


class MiniBatchState(models.TextChoices):
    PENDING = "pending", "Pending"  # no job yet (new, or its last attempt failed)
    RUNNING = "running", "Running"  # its job is queued or running
    DONE = "done", "Done"
    FAILED = "failed", "Failed"  # out of attempts


# A batch job the sweep still has work on: running, or ended with its nodes not yet gone.
OPEN = Q(state="running") | Q(nodes_released=False)


class BatchJob(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="batch_jobs")
    name = models.CharField(max_length=32, validators=[NAME_RULE])
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="batch_jobs")
    scoring_script = models.TextField()
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.PROTECT, related_name="batch_jobs"
    )
    vm_size = models.ForeignKey(VmSize, on_delete=models.PROTECT, related_name="batch_jobs")
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.DEDICATED)
    node_count = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(100)]
    )
    mini_batch_size = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1), MaxValueValidator(MAX_MINI_BATCH)]
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(MAX_ATTEMPTS)]
    )
    input_name = models.CharField(max_length=200)  # what was uploaded, as the page says it
    file_count = models.PositiveIntegerField(default=0)
    input_bytes = models.BigIntegerField(default=0)
    state = models.CharField(max_length=12, choices=BatchState.choices, default=BatchState.RUNNING)
    error = models.TextField(blank=True)
    # Written with each mini-batch that ends (same transaction): the page's progress bar.
    batches_total = models.PositiveIntegerField(default=0)
    batches_done = models.PositiveIntegerField(default=0)
    batches_failed = models.PositiveIntegerField(default=0)
    row_count = models.PositiveIntegerField(default=0)
    # Its nodes: a cluster of its own (hidden from compute lists and job forms), removed
    # once every mini-batch has ended.
    compute = models.OneToOneField(
        Compute, null=True, blank=True, on_delete=models.SET_NULL, related_name="batch_job"
    )
    # Once it has ended, its cluster goes (the sweep's step, under the row lock).
    nodes_released = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["workspace", "-created_at", "-id"], name="batchjob_recent_idx"),
            # The sweep reads those with work left every second, out of years of them.
            models.Index(fields=["id"], name="batchjob_open_idx", condition=OPEN),
        ]
        constraints = [
            # A name says which batch job (the CLI and the API take it): one per workspace.
            models.UniqueConstraint(fields=["workspace", "name"], name="batchjob_name_unique")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("inference:batch", args=[self.workspace.slug, self.pk])

    @property
    def is_running(self) -> bool:
        return self.state == BatchState.RUNNING

    @property
    def tone(self) -> str:
        """Its badge's (and error box's) Bootstrap colour."""
        return {
            BatchState.RUNNING: "primary",
            BatchState.SUCCEEDED: "success",
            BatchState.PARTIAL: "warning",
            BatchState.CANCELED: "secondary",
        }.get(BatchState(self.state), "danger")

    @property
    def batches_ended(self) -> int:
        return self.batches_done + self.batches_failed

    @property
    def percent(self) -> int:
        if not self.batches_total:
            return 0
        return int(100 * self.batches_ended / self.batches_total)


class MiniBatch(models.Model):
    batch = models.ForeignKey(BatchJob, on_delete=models.CASCADE, related_name="mini_batches")
    index = models.PositiveIntegerField()  # 0-based: its place in predictions.csv
    files = models.JSONField(default=list)  # paths relative to the inputs' folder
    state = models.CharField(
        max_length=8, choices=MiniBatchState.choices, default=MiniBatchState.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The CSV rows its run() returned, kept once (the attempt that made them): the
    # download joins them in index order.
    rows = models.TextField(blank=True)
    row_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="minibatch_index_unique")
        ]
        indexes = [models.Index(fields=["batch", "state"], name="minibatch_state_idx")]

    def __str__(self) -> str:
        return f"{self.batch} mini-batch {self.index + 1}"

    @property
    def is_done(self) -> bool:
        return self.state == MiniBatchState.DONE


# Mini-batches a batch job has queued or running at once, per node: enough to keep its
# nodes busy between two passes of the sweep, never its thousands of mini-batches as jobs
# at once (past the workspace's HANGAR_MAX_QUEUED_JOBS, for every scheduler pass to walk).
JOBS_PER_NODE = 2


def start_attempts(batch: BatchJob) -> list[int]:
    """A job on the batch job's cluster for each pending mini-batch (its next attempt) in
    index order, while it has fewer than JOBS_PER_NODE × its nodes queued or running; each
    moved to running by compare-and-set in the caller's transaction: a mini-batch another
    pass started already keeps its one job. The ids of the jobs queued."""
    assert batch.compute is not None
    running = batch.mini_batches.filter(state=MiniBatchState.RUNNING).count()
    room = max(0, JOBS_PER_NODE * batch.node_count - running)
    pending = list(
        batch.mini_batches.filter(state=MiniBatchState.PENDING)
        .order_by("index")
        .only("pk", "index", "attempts")[:room]
    )
    queued = []
    for mini_batch in pending:
        attempt = mini_batch.attempts + 1
        job = Job.objects.create(
            workspace_id=batch.workspace_id,
            compute=batch.compute,
            name=f"{batch.name} · mini-batch {mini_batch.index + 1} of {batch.batches_total}",
            command=RUNNER_COMMAND,
            environment={
                "HANGAR_MINI_BATCH": str(mini_batch.index),
                # Marks its result lines: a line the script prints is never a result.
                "HANGAR_RESULT_MARK": f"hangar-row-{secrets.token_hex(8)}",
            },
            submitted_by_id=batch.created_by_id,
        )
        moved = MiniBatch.objects.filter(
            pk=mini_batch.pk, state=MiniBatchState.PENDING, attempts=mini_batch.attempts
        ).update(state=MiniBatchState.RUNNING, attempts=attempt, job=job)
        if not moved:
            job.delete()
            continue
        queued.append(job.pk)
    return queued


RUNNER_COMMAND = "python3 /hangar/batch/batch_runner.py"
