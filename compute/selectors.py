"""Scoped reads: what a page, a form or an action may see of a workspace, in one place.

Every lookup of a workspace's compute by an id from a URL or a form goes through here, so
"another workspace's id" is answered the same way everywhere (nothing found → 404 on a
page, "does not exist" from an action)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.db.models import Case, Count, Q, QuerySet, When

from compute.lib import output_store
from compute.lib.diskuse import DiskUse, disk_use
from compute.models import (
    Compute,
    ComputeKind,
    ComputeState,
    ComputeVerb,
    DefaultEnvironment,
    Environment,
    Job,
    JobRun,
    JobStatus,
    Node,
    NodeState,
    QuotaRequest,
    RequestStatus,
)
from compute.models.states import INSTANCE_UP, JOB_UNFINISHED, LIVE_NODE_STATES
from workspace.access import WorkspaceAccess
from workspace.models import Invitation, InvitationState, Membership, Role, Workspace


def computes_of(access: WorkspaceAccess) -> QuerySet[Compute]:
    """Every compute of the workspace (deleted ones too: their pages keep the history)."""
    return Compute.objects.of(access.workspace)


def environments_for(workspace: Workspace) -> QuerySet[Environment]:
    """The environments `workspace` may see and run: its own and the site's curated ones."""
    return Environment.objects.filter(Q(workspace=workspace) | Q(workspace=None)).select_related(
        "image"
    )


def environment_named(workspace: Workspace, text: str) -> Environment | None:
    """The environment `text` names for the API and CLI: an id, `name:version`, or a name
    (its newest version). The workspace's own comes before a curated one of that name."""
    text = text.strip()
    if ID.fullmatch(text):
        return environments_for(workspace).filter(pk=int(text)).first()
    name, colon, version = text.partition(":")
    if colon and not ID.fullmatch(version):
        return None  # "abc:", "abc:x", "abc:²": no version named
    for owner in (workspace, None):
        found = Environment.objects.filter(workspace=owner, name=name).select_related("image")
        if colon:
            found = found.filter(version=int(version))
        chosen = found.order_by("-version").first()
        if chosen is not None:
            return chosen
    return None


# An id or a version as typed: ASCII digits only ("²".isdigit() is true, int("²") fails),
# and short enough for a database integer.
ID = re.compile(r"[0-9]{1,9}")


def environment_choice(workspace: Workspace, text: str) -> str:
    """A form's choice for what `text` names: its id, or the text itself, which the form
    then refuses as not among its choices."""
    if not text.strip():
        return ""
    found = environment_named(workspace, text)
    return str(found.pk) if found else text


def default_environment_of(workspace: Workspace) -> Environment | None:
    """What the workspace's new computes start with, when its admins chose (none: the
    site's node image)."""
    found = (
        DefaultEnvironment.objects.filter(workspace=workspace)
        .select_related("environment__image")
        .first()
    )
    return found.environment if found else None


@dataclass(frozen=True)
class JobOutputs:
    """A job's output files (its last attempt's ranks) and what was not kept, and why."""

    files: list[output_store.OutputFile]
    notes: list[str]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def find(self, path: str) -> output_store.OutputFile | None:
        """The file shown at `path`: only a listed path is ever opened."""
        return next((f for f in self.files if f.path == path), None)


def job_outputs(job: Job) -> JobOutputs:
    """Read from the collected runs' manifests only once the job ended with some (or with
    a note): a job without any costs no look at the disk."""
    if not job.is_terminal or not (job.outputs_files or job.outputs_note):
        return JobOutputs([], [job.outputs_note] if job.outputs_note else [])
    runs = JobRun.objects.filter(job=job, attempt=job.retries).only(
        "job_id", "attempt", "rank", "token"
    )
    files, notes = output_store.listing([(r.rank, r.key) for r in runs], job.node_count > 1)
    if not files and not notes and job.outputs_note:
        notes = [job.outputs_note]  # a run that could not be stored has no manifest
    return JobOutputs(files, notes)


def jobs_with_outputs(workspace: Workspace, limit: int = 50) -> QuerySet[Job]:
    """A workspace's newest completed jobs that kept output files (batch scoring inputs)."""
    return Job.objects.filter(
        workspace=workspace, outputs_files__gt=0, status=JobStatus.COMPLETED
    ).order_by("-finished_at", "-id")[:limit]


def live_computes_of(workspace: Workspace) -> QuerySet[Compute]:
    """The workspace's computes that are not deleted: what a form may offer or check."""
    return Compute.objects.of(workspace).exclude(state=ComputeState.DELETED)


def instance_of(access: WorkspaceAccess, pk: int) -> Compute | None:
    return (
        live_computes_of(access.workspace)
        .select_related("workspace")
        .filter(pk=pk, kind=ComputeKind.INSTANCE)
        .first()
    )


def attached_of(access: WorkspaceAccess, pk: int) -> Compute | None:
    return (
        live_computes_of(access.workspace)
        .select_related("attachment", "created_by")
        .filter(pk=pk, kind=ComputeKind.ATTACHED)
        .first()
    )


def workspace_disk_use(workspace: Workspace) -> DiskUse:
    """How much of Hangar's disk the workspace's own jobs take (code and output)."""
    return disk_use(
        f"hangar:disk-use:{workspace.pk}",
        lambda: Job.objects.filter(workspace=workspace).values_list("pk", flat=True).iterator(),
    )


@dataclass(frozen=True)
class Burning:
    """A running instance's cost today and the idle waste ahead, at its dedicated price."""

    compute: Compute
    idle_for: timedelta
    cost_today: float
    waste: float
    waste_note: str

    @property
    def idle_minutes(self) -> float:
        return self.idle_for.total_seconds() / 60


def burning(workspace: Workspace, now: datetime) -> list[Burning]:
    """Running instances, most idle first. The waste is the idle time so far plus what is
    ahead until the idle shutdown (or midnight, with shutdown off)."""
    instances = (
        Compute.objects.of(workspace)
        .filter(kind=ComputeKind.INSTANCE, state=ComputeState.RUNNING)
        .select_related("vm_size", "assigned_to", "created_by")
    )
    return burning_rows(instances, now)


def burning_rows(instances: Iterable[Compute], now: datetime) -> list[Burning]:
    """`burning` on instances already read (running ones, with their `vm_size`)."""
    rows = []
    for compute in instances:
        assert compute.vm_size is not None  # instances always have one
        cost = InstanceCost.of(
            now,
            compute.state_changed_at,
            compute.last_activity_at,
            compute.idle_deadline,
            compute.vm_size.price_dedicated,
        )
        rows.append(Burning(compute, cost.idle_for, cost.today, cost.waste, cost.waste_note))
    rows.sort(key=lambda row: row.idle_for, reverse=True)
    return rows


@dataclass(frozen=True)
class InstanceCost:
    """What a running instance costs today and wastes ahead: the one rule for "What is
    running" and the home page's totals."""

    idle_for: timedelta
    today: float
    waste: float
    waste_note: str

    @classmethod
    def of(
        cls,
        now: datetime,
        running_since: datetime,
        last_activity_at: datetime | None,
        idle_deadline: datetime | None,
        hourly_price: Decimal | float,
    ) -> InstanceCost:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        price = float(hourly_price)
        idle_for = now - (last_activity_at or running_since)
        running_today = (now - max(midnight, running_since)).total_seconds() / 3600
        if idle_deadline:
            ahead = max(0.0, (idle_deadline - now).total_seconds() / 3600)
            note = f"until idle shutdown at {idle_deadline:%H:%M} UTC"
        else:
            ahead = (midnight + timedelta(days=1) - now).total_seconds() / 3600
            note = "no idle shutdown: until midnight at least"
        waste = (idle_for.total_seconds() / 3600 + ahead) * price
        return cls(idle_for, running_today * price, waste, note)


# The home page: what is the signed-in user's, and what is running, across their workspaces.
# A fixed number of queries however many workspaces, computes or jobs there are, each
# reading only live or pending rows (through the partial indexes on them).

HOME_JOBS_SHOWN = 20
HOME_ROWS_SHOWN = 50
# The dashboard's lists stop at a glance's worth; the compute pages hold the rest.
HOME_INSTANCES_SHOWN = 10
HOME_CLUSTERS_SHOWN = 10
# An instance of the user's shows on the home page while it is up, coming up or going down.
HOME_INSTANCE_STATES = (*INSTANCE_UP, ComputeState.STOPPING)


def owned_by(user: User) -> Q:
    """The user's instances (`Compute.owner` as a query): assigned to them, or created by
    them and assigned to nobody."""
    return Q(assigned_to=user) | Q(assigned_to__isnull=True, created_by=user)


@dataclass(frozen=True)
class MyInstance:
    compute: Compute
    role: str
    now: datetime

    @property
    def can_keep_running(self) -> bool:
        return ComputeVerb.KEEP_RUNNING in self.compute.allowed_verbs(self.role)

    @property
    def stops_in_minutes(self) -> int | None:
        """Whole minutes until the idle shutdown (rounded up), if one is due."""
        deadline = self.compute.idle_deadline
        if deadline is None or not self.compute.is_running:
            return None
        return max(0, math.ceil((deadline - self.now).total_seconds() / 60))


@dataclass
class WorkspaceToday:
    """One of the user's workspaces: what runs there, what it costs today."""

    membership: Membership
    running_instances: int = 0
    cost_today: float = 0.0
    waste: float = 0.0
    queued_jobs: int = 0
    active_jobs: int = 0
    nodes_up: int = 0

    @property
    def workspace(self) -> Workspace:
        return self.membership.workspace

    @property
    def can_contribute(self) -> bool:
        return self.membership.has_role(Role.CONTRIBUTOR)


@dataclass(frozen=True)
class BusyCluster:
    compute: Compute
    live_nodes: int
    busy_nodes: int


@dataclass
class Home:
    workspaces: list[WorkspaceToday]
    my_instances: list[MyInstance]  # the few stopping soonest, read whole
    my_instance_count: int  # all of the user's instances up, coming up or going down
    my_jobs: list[Job]
    my_queued: int
    my_active: int
    clusters: list[BusyCluster]  # the busiest few
    clusters_up: int  # every cluster with a node up
    quota_requests: list[QuotaRequest]
    invitations: list[Invitation]

    @property
    def cost_today(self) -> float:
        return sum(row.cost_today for row in self.workspaces)

    @property
    def waste(self) -> float:
        return sum(row.waste for row in self.workspaces)

    @property
    def nodes_up(self) -> int:
        return sum(row.nodes_up for row in self.workspaces)

    @property
    def contributes_somewhere(self) -> WorkspaceToday | None:
        """A workspace where the user may create compute and submit jobs (for the empty
        states' "how to start")."""
        return next((row for row in self.workspaces if row.can_contribute), None)


def home_for(user: User, now: datetime) -> Home:
    memberships = list(
        Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")
    )
    rows = {m.workspace_id: WorkspaceToday(m) for m in memberships}
    ids = list(rows)
    if not ids:
        return Home([], [], 0, [], 0, 0, [], 0, [], list(pending_invitations(user, now)))
    roles = {m.workspace_id: m.role for m in memberships}

    # Instances: what every running one of the workspaces costs, and which are the user's
    # own on the way up or down, read as plain values (a team may have hundreds up); only
    # the few the page lists are read whole.
    light = (
        Compute.objects.filter(workspace_id__in=ids, kind=ComputeKind.INSTANCE)
        .filter(
            Q(state=ComputeState.RUNNING) | (owned_by(user) & Q(state__in=HOME_INSTANCE_STATES))
        )
        .order_by("name", "id")
        .values_list(
            "pk",
            "workspace_id",
            "state",
            "state_changed_at",
            "last_activity_at",
            "idle_deadline",
            "vm_size__price_dedicated",
            "assigned_to_id",
            "created_by_id",
        )
    )
    mine: list[tuple[bool, datetime | None, int]] = []
    for pk, workspace_id, state, since, active_at, deadline, price, assigned, creator in light:
        running = state == ComputeState.RUNNING
        if running:
            cost = InstanceCost.of(now, since, active_at, deadline, price)
            today = rows[workspace_id]
            today.running_instances += 1
            today.cost_today += cost.today
            today.waste += cost.waste
        if state in HOME_INSTANCE_STATES and (assigned or creator) == user.pk:
            # The soonest idle shutdown first, then the rest in name order (a stable sort).
            stops_at = deadline if running else None
            mine.append((stops_at is None, stops_at, pk))
    mine.sort(key=lambda row: row[:2])
    shown_ids = [pk for *_, pk in mine[:HOME_INSTANCES_SHOWN]]

    # Jobs: counted per workspace and status (the user's among them); only unfinished rows.
    unfinished = Job.objects.filter(workspace_id__in=ids, status__in=JOB_UNFINISHED)
    my_queued = my_active = 0
    counts = unfinished.values_list("workspace_id", "status").annotate(
        n=Count("id"), mine=Count("id", filter=Q(submitted_by=user))
    )
    for workspace_id, status, n, n_mine in counts.order_by():
        if status == JobStatus.QUEUED:
            rows[workspace_id].queued_jobs += n
            my_queued += n_mine
        else:
            rows[workspace_id].active_jobs += n
            my_active += n_mine
    running_first = Case(When(status=JobStatus.QUEUED, then=1), default=0)
    my_jobs = list(
        unfinished.filter(submitted_by=user)
        .select_related("compute")
        .order_by(running_first, "-queued_at", "-id")[:HOME_JOBS_SHOWN]
    )
    for job in my_jobs:
        job.workspace = job.compute.workspace = rows[job.workspace_id].workspace

    # Clusters with nodes up: the live nodes counted per cluster (the live nodes' partial
    # index only), which gives each workspace's totals and the busiest few.
    per_cluster = list(
        Node.objects.filter(
            compute__workspace_id__in=ids,
            compute__kind=ComputeKind.CLUSTER,
            state__in=LIVE_NODE_STATES,
        )
        .order_by()
        .values_list("compute_id", "compute__workspace_id", "compute__name")
        .annotate(live_nodes=Count("id"), busy_nodes=Count("id", filter=Q(state=NodeState.RUNNING)))
    )
    for _pk, workspace_id, _name, live_nodes, _busy in per_cluster:
        rows[workspace_id].nodes_up += live_nodes
    per_cluster.sort(key=lambda row: (-row[4], -row[3], row[2], row[0]))
    busiest = per_cluster[:HOME_CLUSTERS_SHOWN]

    # The rows the page lists, read whole in one query: the user's instances stopping
    # soonest and the busiest clusters (no user rows, no scripts or secrets).
    whole = (
        Compute.objects.select_related("vm_size")
        .defer("setup_script", "secret_environment")
        .in_bulk(shown_ids + [pk for pk, *_ in busiest])
    )
    for compute in whole.values():
        compute.workspace = rows[compute.workspace_id].workspace
    my_instances = [MyInstance(whole[pk], roles[whole[pk].workspace_id], now) for pk in shown_ids]
    shown = [
        BusyCluster(whole[pk], live_nodes, busy_nodes)
        for pk, _workspace_id, _name, live_nodes, busy_nodes in busiest
    ]

    quota_requests = list(
        QuotaRequest.objects.filter(workspace_id__in=ids, status=RequestStatus.PENDING)
        .select_related("family", "requested_by")
        .order_by("-created_at", "-id")[:HOME_ROWS_SHOWN]
    )
    for item in quota_requests:
        item.workspace = rows[item.workspace_id].workspace

    return Home(
        workspaces=list(rows.values()),
        my_instances=my_instances,
        my_instance_count=len(mine),
        my_jobs=my_jobs,
        my_queued=my_queued,
        my_active=my_active,
        clusters=shown,
        clusters_up=len(per_cluster),
        quota_requests=quota_requests,
        invitations=list(pending_invitations(user, now)),
    )


def pending_invitations(user: User, now: datetime) -> QuerySet[Invitation]:
    """The user's invitations still open (an expired one is moved lazily, so the date
    decides here too)."""
    return (
        Invitation.objects.filter(
            invitee_id=user.pk, state=InvitationState.PENDING, expires_at__gt=now
        )
        .select_related("workspace", "invited_by")
        .order_by("-created_at", "-id")[:HOME_ROWS_SHOWN]
    )
