"""Computes (instances, clusters, attached targets) and their nodes."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models, transaction
from django.db.models import F, Q
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from compute.models.catalog import VmSize
from compute.models.states import (
    ADMIN_VERBS,
    ATTACHED_JOB_REFUSALS,
    GONE,
    JOB_REFUSALS,
    LIVE_NODE_STATES,
    NODE_UP,
    RESIZABLE,
    STEADY,
    TRANSITIONAL,
    TRANSITIONS,
    WANTS_NODES,
    ComputeKind,
    ComputeState,
    ComputeVerb,
    IllegalTransition,
    NodeState,
)
from workspace.models import Role, Workspace

COMPUTE_NAME_RULE = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9-]{2,23}$",
    "Use 3 to 24 letters, digits and hyphens, starting with a letter.",
)


ATTACHED_STATE_LABELS: dict[str, str] = {
    ComputeState.CREATING: "Validating",
    ComputeState.STEADY: "Ready",
    ComputeState.FAILED: "Error",
    ComputeState.DELETING: "Detaching",
    ComputeState.DELETED: "Detached",
}


class Tier(models.TextChoices):
    DEDICATED = "dedicated", "Dedicated"
    LOW_PRIORITY = "low_priority", "Low priority"


# Clusters made by and for compute/inference: a deployment's replicas, a batch job's nodes.
INFERENCE_OWNED = Q(serving__has_key="deployment") | Q(serving__has_key="batch")


class ComputeQuerySet(models.QuerySet["Compute"]):
    def of(self, workspace: Workspace) -> ComputeQuerySet:
        """This workspace's computes: every lookup from a URL starts here (DESIGN.md). A
        deployment's replicas and a batch job's nodes are not among them: their endpoint's
        or batch job's page shows them, and no job or form may pick them."""
        return self.filter(workspace=workspace).exclude(INFERENCE_OWNED)


class Compute(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="computes")
    name = models.CharField(max_length=24, validators=[COMPUTE_NAME_RULE])
    kind = models.CharField(max_length=16, choices=ComputeKind.choices)
    state = models.CharField(
        max_length=16, choices=ComputeState.choices, default=ComputeState.CREATING
    )
    last_error = models.TextField(blank=True)
    # None only for attached computes: their machine is whatever it is.
    vm_size = models.ForeignKey(
        VmSize, null=True, blank=True, on_delete=models.PROTECT, related_name="computes"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    state_changed_at = models.DateTimeField(default=timezone.now)
    # Instance
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assigned_instances",
    )
    idle_shutdown_minutes = models.PositiveIntegerField(null=True, blank=True)
    setup_script = models.TextField(blank=True)
    # What its nodes run (compute/models/environments.py): none, the site's node image.
    environment = models.ForeignKey(
        "compute.Environment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="computes",
    )
    # A deployment's replicas (compute/inference): {"deployment": id, "model": id}; its
    # nodes run the scoring server, not jobs; `replica_target` is how many the deployment
    # wants now (its min replicas until the load says more). A batch job's nodes:
    # {"batch": id, "model": id}; they run its mini-batches as jobs. Else empty.
    serving = models.JSONField(default=dict, blank=True)
    replica_target = models.PositiveSmallIntegerField(default=0)
    # Instances: {NAME: MultiFernet token} (compute/lib/secrets.py), put into the node's
    # environment by the worker, so its setup script and every job on it see them.
    secret_environment = models.JSONField(default=dict, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    last_activity = models.CharField(max_length=200, blank=True)
    # "Keep running" pushes the idle deadline to at least this moment.
    keep_running_until = models.DateTimeField(null=True, blank=True)
    # When the idle sweep stops this instance: None while off, busy, or not running.
    idle_deadline = models.DateTimeField(null=True, blank=True)
    # The next moment the idle sweep must look: a reminder's lead time or the deadline.
    idle_next_check_at = models.DateTimeField(null=True, blank=True)
    activity_token_hash = models.CharField(max_length=64, blank=True)
    # Cluster
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.DEDICATED)
    min_nodes = models.PositiveSmallIntegerField(default=0)
    max_nodes = models.PositiveSmallIntegerField(default=1, validators=[MinValueValidator(1)])
    idle_seconds_before_scaledown = models.PositiveIntegerField(
        default=120, validators=[MinValueValidator(0), MaxValueValidator(7 * 24 * 3600)]
    )
    # The autoscaler's last word, so a standing reason ("at max_nodes") is written once.
    autoscale_note = models.CharField(max_length=300, blank=True)
    # Nodes are numbered n-1, n-2, ... never reusing a number, so events stay unambiguous.
    next_node_index = models.PositiveIntegerField(default=1)
    # The reconciler's lease: one worker at a time per compute. The owner is named (host,
    # boot, pid, process start) so a dead one's hold is taken over at once
    # (compute/controllers/lease.py); otherwise it lapses at lease_until.
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=160, blank=True)
    # Set by a reconcile that found the lease taken: the holder looks once more before
    # letting go, so a request arriving mid-pass is never left for the next sweep.
    rerun_requested = models.BooleanField(default=False)

    objects = ComputeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # A deleted compute keeps its row (and history) but frees its name.
            # Case-insensitive, as the form checks it: "Train" and "train" would read as
            # one compute on every page.
            models.UniqueConstraint(
                Lower("name"),
                "workspace",
                condition=~Q(state="deleted"),
                name="compute_name_unique_live",
                violation_error_message="A compute with this name already exists here.",
            ),
            models.CheckConstraint(
                condition=Q(min_nodes__lte=F("max_nodes")), name="compute_min_le_max"
            ),
        ]
        indexes = [
            # The reconcile sweep reads every compute that is not deleted (controllers/sweep.py).
            models.Index(fields=["state"], name="compute_live_idx", condition=~Q(state="deleted")),
            # The idle sweep claims running instances whose next check is due, every second
            # (controllers/idle.py): a range on this index, not a scan of every compute.
            models.Index(
                fields=["idle_next_check_at"],
                name="compute_idle_due_idx",
                condition=Q(state="running", idle_next_check_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        if self.is_batch:  # its own page is the batch job's (the job page links here)
            return reverse("inference:batch", args=[self.workspace.slug, self.serving["batch"]])
        return reverse("compute:detail", args=[self.workspace.slug, self.pk])

    @property
    def owner(self):  # a User, or None for a compute nobody created (seeded rows)
        """Whose compute this is: the member it is assigned to, else whoever created it
        (reminders go to them; the home page and "What is running" name them)."""
        return self.assigned_to or self.created_by

    @property
    def owner_id(self) -> int | None:
        """`owner`'s id, read without loading either user."""
        return self.assigned_to_id or self.created_by_id

    @property
    def is_instance(self) -> bool:
        return self.kind == ComputeKind.INSTANCE

    @property
    def is_cluster(self) -> bool:
        return self.kind == ComputeKind.CLUSTER

    @property
    def is_serving(self) -> bool:
        """A deployment's replicas: a cluster that serves a model instead of running jobs."""
        return "deployment" in self.serving

    @property
    def is_batch(self) -> bool:
        """A batch job's nodes: a cluster that runs its mini-batches (with the model and
        the inputs read-only in each node)."""
        return "batch" in self.serving

    @property
    def is_attached(self) -> bool:
        return self.kind == ComputeKind.ATTACHED

    @property
    def state_label(self) -> str:
        """What users call the state: an attached target validates and is ready."""
        if self.is_attached:
            return ATTACHED_STATE_LABELS.get(self.state, self.get_state_display())
        return self.get_state_display()

    @property
    def is_steady(self) -> bool:
        return self.state in STEADY

    # What the pages ask, so no template compares the state with a string.
    @property
    def is_transitional(self) -> bool:
        return self.state in TRANSITIONAL

    @property
    def is_creating(self) -> bool:
        return self.state == ComputeState.CREATING

    @property
    def is_running(self) -> bool:
        return self.state == ComputeState.RUNNING

    @property
    def is_stopped(self) -> bool:
        return self.state == ComputeState.STOPPED

    @property
    def is_failed(self) -> bool:
        return self.state == ComputeState.FAILED

    def can_move(self, new_state: str) -> bool:
        return new_state in TRANSITIONS[ComputeKind(self.kind)][ComputeState(self.state)]

    def job_refusal(self) -> str | None:
        """Why this compute takes no new job now, or None if it does: the one rule for the
        Submit job button and for `submit_job`."""
        refusals = ATTACHED_JOB_REFUSALS if self.is_attached else JOB_REFUSALS
        reason = refusals.get(self.state)
        return f"{self.name} {reason}." if reason else None

    def state_verbs(self) -> frozenset[str]:
        """What this compute's kind and state allow now, whoever asks: the pages offer these
        (by role, `allowed_verbs`) and the actions accept only these. Moves come from the
        transition tables."""
        V, S = ComputeVerb, ComputeState
        verbs: set[str] = set()
        if self.job_refusal() is None:
            verbs.add(V.SUBMIT)
        if self.is_instance:
            moves = {V.START: S.STARTING, V.STOP: S.STOPPING, V.RESTART: S.RESTARTING}
            verbs |= {verb for verb, target in moves.items() if self.can_move(target)}
            if self.is_running and self.idle_deadline:
                verbs.add(V.KEEP_RUNNING)
            if self.state != S.DELETED:
                verbs |= {V.IDLE_SETTINGS, V.TOKEN}
        elif self.is_cluster:
            if self.state in RESIZABLE:
                verbs.add(V.RESIZE)
            if self.tier == Tier.LOW_PRIORITY and self.state not in GONE:  # a cloud's doing
                verbs.add(V.PREEMPT)
        elif self.is_attached:
            if self.state not in GONE:
                verbs.add(V.EDIT)
            if self.can_move(S.CREATING):
                verbs.add(V.VALIDATE)
            if self.can_move(S.DELETING):  # detaching is a contributor's, not only an admin's
                verbs.add(V.DETACH)
        if not self.is_attached and self.can_move(S.DELETING):  # attached ones detach
            verbs.add(V.DELETE)
        return frozenset(verbs)

    def allowed_verbs(self, role: str) -> frozenset[str]:
        """What a member with `role` may ask of this compute now: the buttons its page
        shows. Readers change nothing; some verbs are an admin's only."""
        if Role.rank(role) < Role.rank(Role.CONTRIBUTOR):
            return frozenset()
        verbs = self.state_verbs()
        if Role.rank(role) < Role.rank(Role.ADMIN):
            verbs -= ADMIN_VERBS
        return verbs

    def transition(self, expected: str, new: str, **fields: object) -> bool:
        """Compare-and-set the state; True only for the caller that made the change."""
        if new not in TRANSITIONS[ComputeKind(self.kind)][ComputeState(expected)]:
            raise IllegalTransition(f"{self.kind} cannot go from {expected} to {new}")
        changed = Compute.objects.filter(pk=self.pk, state=expected).update(
            state=new, state_changed_at=timezone.now(), **fields
        )
        if changed:
            self.state = new
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(changed)

    def add_node_rows(self, count: int) -> int:
        """Insert `count` preparing node rows under fresh numbers; returns the first number.
        (PostgreSQL's dedicated scale-up does the same inside hangar_claim_nodes.)"""
        with transaction.atomic():
            Compute.objects.filter(pk=self.pk).update(next_node_index=F("next_node_index") + count)
            end = Compute.objects.values_list("next_node_index", flat=True).get(pk=self.pk)
            Node.objects.bulk_create([Node(compute=self, index=i) for i in range(end - count, end)])
        return end - count

    def desired_node_count(self, busy: int = 0, queued_demand: int = 0) -> int:
        """How many live nodes the compute should have: an instance one while it runs; a
        cluster what its busy nodes and queued jobs need, within min_nodes..max_nodes."""
        return desired_count(
            self.kind, self.state, self.min_nodes, self.max_nodes, busy, queued_demand
        )


def desired_count(
    kind: str, state: str, min_nodes: int, max_nodes: int, busy: int = 0, demand: int = 0
) -> int:
    """The one rule for node counts, on plain values (the sweep has no model per row)."""
    if state not in WANTS_NODES:
        return 0
    if kind == ComputeKind.INSTANCE:
        return 1
    return max(min_nodes, min(busy + demand, max_nodes))


class Node(models.Model):
    compute = models.ForeignKey(Compute, on_delete=models.CASCADE, related_name="nodes")
    index = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=NodeState.choices, default=NodeState.PREPARING)
    container_ref = models.CharField(max_length=128, blank=True)
    # The image its container was made from (an environment's, or the site's node image).
    # A database default: the scale-up's SQL function (migration 0008) inserts node rows.
    image = models.CharField(max_length=200, blank=True, default="", db_default="")
    # The Docker engine it runs on (compute/models/hosts.py); None: the default engine.
    host = models.ForeignKey(
        "compute.NodeHost", null=True, blank=True, on_delete=models.PROTECT, related_name="nodes"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_busy_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["compute", "index"]
        constraints = [
            models.UniqueConstraint(fields=["compute", "index"], name="node_index_unique"),
        ]
        indexes = [
            # The sweep loads every live node of every compute at once (controllers/sweep.py).
            models.Index(
                fields=["compute", "state"],
                name="node_live_idx",
                condition=Q(state__in=["preparing", "idle", "running", "leaving"]),
            ),
            # Retention deletes ended node rows, oldest first (controllers/retention.py).
            models.Index(
                fields=["ended_at"], name="node_ended_idx", condition=Q(ended_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return f"n-{self.index}"

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_NODE_STATES

    @property
    def is_up(self) -> bool:
        return self.state in NODE_UP
