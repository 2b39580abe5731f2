"""Training jobs, where they run (one row per rank), and samples for the cluster chart."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import F, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from compute.models.compute import Compute, Node
from compute.models.environments import Environment
from compute.models.states import (
    JOB_ACTIVE,
    JOB_TERMINAL,
    JOB_UNFINISHED,
    JobStatus,
    check_job_move,
)
from workspace.models import Workspace

J = JobStatus


class JobQuerySet(models.QuerySet["Job"]):
    def transition(self, expected: str | Iterable[str], new: str, **fields: object) -> int:
        """The one compare-and-set of job statuses: moves the jobs of this queryset that are
        still in `expected` to `new`, returns how many moved (0: a race was lost). A move
        JOB_TRANSITIONS does not allow raises IllegalTransition, whether or not a row
        would have matched."""
        sources = (expected,) if isinstance(expected, str) else tuple(expected)
        check_job_move(sources, new)
        if len(sources) == 1:  # `=`, so the partial index on queued jobs still serves it
            return self.filter(status=sources[0]).update(status=new, **fields)
        return self.filter(status__in=sources).update(status=new, **fields)


MASK = "••••"


class CodeKind(models.TextChoices):
    NONE = "", "No code"
    SCRIPT = "script", "Typed script"
    FILE = "file", "Uploaded file"
    ZIP = "zip", "Uploaded zip"


class Job(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="jobs")
    compute = models.ForeignKey(Compute, on_delete=models.PROTECT, related_name="jobs")
    name = models.CharField(max_length=80)
    command = models.TextField()
    environment = models.JSONField(default=dict, blank=True)
    # {NAME: MultiFernet token} (compute/lib/secrets.py): names readable for the pages, values
    # decrypted only by the worker that launches the job. Never rendered, logged or sent
    # in a task message.
    secret_environment = models.JSONField(default=dict, blank=True)
    # What it runs in, when not its compute's environment (clusters only: their nodes may
    # run several images; placement matches a job to nodes of its image).
    chosen_environment = models.ForeignKey(
        "compute.Environment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="jobs",
    )
    # The image its nodes ran, written when it is placed (empty until then).
    image = models.CharField(max_length=200, blank=True)
    node_count = models.PositiveSmallIntegerField(default=1)
    code_kind = models.CharField(max_length=8, choices=CodeKind.choices, blank=True, default="")
    code_name = models.CharField(max_length=200, blank=True)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    status = models.CharField(max_length=12, choices=JobStatus.choices, default=JobStatus.QUEUED)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    master_port = models.PositiveIntegerField(null=True, blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    max_retries = models.PositiveSmallIntegerField(default=3)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(default=timezone.now, db_index=True)
    preparing_at = models.DateTimeField(null=True, blank=True)
    running_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Its output files (what it wrote under ./outputs, compute/lib/output_store.py): counted
    # when its run ended, with what was not kept and why (links left out, a cap passed).
    outputs_files = models.PositiveIntegerField(default=0)
    outputs_bytes = models.BigIntegerField(default=0)
    outputs_note = models.TextField(blank=True)

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            # Placement reads each compute's queue in FIFO order (controllers/placement.py).
            models.Index(
                fields=["compute", "queued_at", "id"],
                name="job_queue_idx",
                condition=Q(status="queued"),
            ),
            # The sweep counts queued and active jobs per compute (controllers/sweep.py).
            models.Index(
                fields=["compute", "status"],
                name="job_active_idx",
                condition=Q(status__in=["queued", "preparing", "running"]),
            ),
            # The newest first, of a workspace (the job list) or of a compute (its page, the
            # job list filtered by it): a page is read off the index, not sorted out of years.
            models.Index(
                fields=["workspace", "-queued_at", "-id"], name="job_workspace_recent_idx"
            ),
            models.Index(fields=["compute", "-queued_at", "-id"], name="job_compute_recent_idx"),
            # Batch scoring offers a workspace's newest jobs with output files as inputs
            # (compute/inference/forms/batch.py), read off this whatever the job count.
            models.Index(
                fields=["workspace", "-finished_at"],
                name="job_with_outputs_idx",
                condition=Q(outputs_files__gt=0),
            ),
            # Retention removes the oldest jobs' output files first (controllers/retention.py).
            models.Index(
                fields=["finished_at"], name="job_outputs_age_idx", condition=Q(outputs_files__gt=0)
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("compute:job", args=[self.workspace.slug, self.pk])

    def variables_shown(self, with_values: bool) -> list[tuple[str, str]]:
        """(name, what a page shows) of every variable: a secret's value is never shown,
        and without `with_values` (readers) no value is."""
        shown = [(k, str(v) if with_values else MASK) for k, v in (self.environment or {}).items()]
        return shown + [(name, MASK) for name in (self.secret_environment or {})]

    def transition(self, expected: str | Iterable[str], new: str, **fields: object) -> bool:
        """`JobQuerySet.transition` on this job; True only for the caller that moved it."""
        if not Job.objects.filter(pk=self.pk).transition(expected, new, **fields):
            return False
        self.status = new
        for name, value in fields.items():
            if not hasattr(value, "resolve_expression"):  # F(...) is the database's to know
                setattr(self, name, value)
        return True

    @property
    def is_terminal(self) -> bool:
        return self.status in JOB_TERMINAL

    @property
    def is_completed(self) -> bool:
        return self.status == J.COMPLETED

    def waiting_for_environment(self) -> Environment | None:
        """The environment a queued job waits for to build (its page says so), if any."""
        chosen = self.chosen_environment
        if not self.is_queued or chosen is None or chosen.pk == self.compute.environment_id:
            return None
        return None if chosen.image.is_ready else chosen

    def runs_in(self) -> Environment | None:
        """Its environment: its own choice, else its compute's (None: the node image)."""
        return self.chosen_environment or self.compute.environment

    # What the pages ask, so no template compares the status with a string.
    @property
    def is_queued(self) -> bool:
        return self.status == J.QUEUED

    @property
    def is_active(self) -> bool:
        return self.status in JOB_ACTIVE

    @property
    def is_unfinished(self) -> bool:
        return self.status in JOB_UNFINISHED

    @property
    def is_failed(self) -> bool:
        return self.status == J.FAILED

    @property
    def queued_for(self):
        end = self.preparing_at or (None if self.status == J.QUEUED else self.finished_at)
        return (end or timezone.now()) - self.queued_at

    @property
    def preparing_for(self):
        if not self.preparing_at:
            return None
        return (self.running_at or self.finished_at or timezone.now()) - self.preparing_at

    @property
    def running_for(self):
        if not self.running_at:
            return None
        return (self.finished_at or timezone.now()) - self.running_at


def new_run_token() -> str:
    return secrets.token_hex(6)


class JobRun(models.Model):
    """One rank of one attempt of a job, on one node."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="runs")
    attempt = models.PositiveSmallIntegerField(default=0)
    rank = models.PositiveSmallIntegerField()
    node = models.ForeignKey(Node, null=True, on_delete=models.SET_NULL, related_name="runs")
    node_name = models.CharField(max_length=32)
    container = models.CharField(max_length=128)
    exit_code = models.IntegerField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Names this run's record and its folder in the node: a job id that comes back (a
    # rolled-back SQLite id, a database restored from backup) never finds another run's
    # output or exit code. Empty for runs made before it existed.
    token = models.CharField(max_length=16, default=new_run_token, editable=False)
    # Launches written down before each start (compare-and-set), so two reconcilers never
    # both launch it and a relaunch can tell "never launched" from "launched, not started".
    launches = models.PositiveSmallIntegerField(default=0, editable=False)
    launched_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["job", "attempt", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt", "rank"], name="jobrun_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.job} rank {self.rank} on {self.node_name}"

    @property
    def key(self) -> str:
        """The folder of this run's output and exit code, under HANGAR_JOBS_DIR/runs."""
        suffix = f"-{self.token}" if self.token else ""
        return f"{self.job_id}/a{self.attempt}-r{self.rank}{suffix}"


class ComputeSample(models.Model):
    """Node count and queue length when they change, for the cluster chart."""

    compute = models.ForeignKey(Compute, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(default=timezone.now)
    nodes = models.PositiveSmallIntegerField()
    queued = models.PositiveIntegerField()

    class Meta:
        ordering = ["compute", "at"]
        indexes = [
            models.Index(fields=["compute", "at"], name="sample_compute_at_idx"),
            # Retention looks at samples oldest first (controllers/retention.py).
            models.Index(fields=["at"], name="sample_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.compute_id} at {self.at}: {self.nodes} nodes, {self.queued} queued"


def node_holders() -> QuerySet[JobRun]:
    """The runs holding their node: the current attempt of an active job. A running node
    none of them holds is held by an ended job, until its release."""
    return JobRun.objects.filter(job__status__in=JOB_ACTIVE, attempt=F("job__retries"))
