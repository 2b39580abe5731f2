"""A team's years of data, for `make bench BENCH=scale` (issue 16).

200 workspaces, 10,000 computes (nodes on 2,000 of them, ended node rows included),
100,000 jobs, 500,000 events, 200,000 activity rows, on PostgreSQL. One workspace, the
*focus*, is where the bench signs in: it is the busiest (500 computes, a cluster with 316
node rows and 5,000 jobs, 20 % of the jobs and events), so its pages show the worst case.

`HANGAR_BENCH_SCALE=0.1` makes a tenth of everything (a quick look while working).
Rows are written with `bulk_create` in batches; dates are spread over two years after.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import connection, models
from django.utils import timezone

from compute.models import (
    Attachment,
    Compute,
    ComputeKind,
    ComputeSample,
    ComputeState,
    Job,
    JobRun,
    JobStatus,
    Node,
    NodeState,
    QuotaRequest,
    Schedule,
    VmSize,
)
from compute.models.events import Event, EventVerb
from workspace.models import Activity, Membership, Notification, Role, Workspace

PASSWORD = "hangar-scale"
FOCUS_SLUG = "scale"
BATCH = 5_000
HISTORY_DAYS = 730


@dataclass(frozen=True)
class Scale:
    workspaces: int = 200
    computes: int = 10_000
    computes_with_nodes: int = 2_000
    jobs: int = 100_000
    events: int = 500_000
    activity: int = 200_000
    # The focus workspace's share.
    focus_computes: int = 500
    busy_cluster_nodes: int = 316
    busy_cluster_jobs: int = 5_000

    def times(self, factor: float) -> Scale:
        def scaled(value: int, least: int) -> int:
            return max(least, int(value * factor))

        return Scale(
            workspaces=scaled(self.workspaces, 2),
            computes=scaled(self.computes, 60),
            computes_with_nodes=scaled(self.computes_with_nodes, 10),
            jobs=scaled(self.jobs, 500),
            events=scaled(self.events, 1_000),
            activity=scaled(self.activity, 500),
            focus_computes=scaled(self.focus_computes, 40),
            busy_cluster_nodes=scaled(self.busy_cluster_nodes, 20),
            busy_cluster_jobs=scaled(self.busy_cluster_jobs, 100),
        )


@dataclass(frozen=True)
class Focus:
    """What the bench opens: the focus workspace, its member, and one row of each kind."""

    slug: str
    username: str
    staff_username: str
    busy_cluster: int
    instance: int
    attached: int
    job: int
    quota_request: int


def scale_from_environment() -> Scale:
    return Scale().times(float(os.environ.get("HANGAR_BENCH_SCALE", "1")))


def batched(rows: Iterable[models.Model], size: int = BATCH) -> Iterator[list[models.Model]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def insert(model: type[models.Model], rows: Iterable[models.Model]) -> int:
    written = 0
    for chunk in batched(rows):
        model.objects.bulk_create(chunk)  # type: ignore[attr-defined]
        written += len(chunk)
    return written


def generate(scale: Scale, say=print) -> Focus:
    if connection.vendor != "postgresql":
        raise SystemExit("bench scale: PostgreSQL only (set DATABASE_URL=postgres://...)")
    started = time.perf_counter()
    rng = random.Random(16)  # noqa: S311 (the same data every run, not a secret)
    now = timezone.now()
    users, staff = make_users(scale)
    workspaces = make_workspaces(scale, users)
    focus = workspaces[0]
    computes = make_computes(scale, workspaces, rng, now)
    by_workspace: dict[int, list[Compute]] = {}
    for compute in computes:
        by_workspace.setdefault(compute.workspace_id, []).append(compute)
    focus_computes = by_workspace[focus.pk]
    busy = next(c for c in focus_computes if c.kind == ComputeKind.CLUSTER)
    make_nodes(scale, computes, busy, rng, now)
    make_jobs(scale, by_workspace, focus, busy, users, rng, now)
    make_events(scale, computes, focus_computes, busy, rng, now)
    make_activity(scale, workspaces, users, rng)
    request = make_quota_requests(workspaces, users, rng)
    make_notifications(focus, users[0], rng)
    make_samples(busy, now)
    spread_dates(now)
    say(f"scale data written in {time.perf_counter() - started:.0f} s; analyzing")
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    say(f"scale data ready in {time.perf_counter() - started:.0f} s: {counts()}")
    return Focus(
        slug=focus.slug,
        username=users[0].username,
        staff_username=staff.username,
        busy_cluster=busy.pk,
        instance=next(c.pk for c in focus_computes if c.kind == ComputeKind.INSTANCE),
        attached=next(c.pk for c in focus_computes if c.kind == ComputeKind.ATTACHED),
        job=Job.objects.filter(compute=busy).order_by("-pk").values_list("pk", flat=True)[0],
        quota_request=request,
    )


def counts() -> str:
    tables = (Workspace, Compute, Node, Job, JobRun, Event, Activity)
    return ", ".join(f"{t.objects.count():,} {t._meta.verbose_name_plural}" for t in tables)


def make_users(scale: Scale) -> tuple[list[User], User]:
    password = make_password(PASSWORD)  # hashed once: 600 users in a second
    total = scale.workspaces * 3
    insert(
        User,
        (
            User(username=f"scale-{i}", email=f"scale-{i}@example.com", password=password)
            for i in range(total)
        ),
    )
    staff = User.objects.create(
        username="scale-root", password=password, is_staff=True, is_superuser=True
    )
    return list(User.objects.filter(username__startswith="scale-").exclude(pk=staff.pk)), staff


def make_workspaces(scale: Scale, users: list[User]) -> list[Workspace]:
    insert(
        Workspace,
        (
            Workspace(
                name=f"Scale {i}" if i else "Scale",
                slug=f"{FOCUS_SLUG}-{i}" if i else FOCUS_SLUG,
                created_by=users[i * 3],
            )
            for i in range(scale.workspaces)
        ),
    )
    workspaces = sorted(
        Workspace.objects.filter(slug__startswith=FOCUS_SLUG),
        key=lambda w: (w.slug != FOCUS_SLUG, w.pk),
    )
    roles = (Role.ADMIN, Role.CONTRIBUTOR, Role.READER)
    insert(
        Membership,
        (
            Membership(workspace=workspace, user=users[(i * 3 + k) % len(users)], role=roles[k])
            for i, workspace in enumerate(workspaces)
            for k in range(3)
        ),
    )
    return workspaces


def compute_plan(scale: Scale, workspaces: list[Workspace]) -> Iterator[tuple[Workspace, int]]:
    """(workspace, its number of computes): the focus first, the rest shared evenly."""
    yield workspaces[0], scale.focus_computes
    rest = scale.computes - scale.focus_computes
    others = workspaces[1:]
    for i, workspace in enumerate(others):
        yield workspace, rest // len(others) + (1 if i < rest % len(others) else 0)


def make_computes(
    scale: Scale, workspaces: list[Workspace], rng: random.Random, now
) -> list[Compute]:
    sizes = list(VmSize.objects.filter(family__restricted=False).order_by("pk")[:8])

    def rows() -> Iterator[Compute]:
        for workspace, total in compute_plan(scale, workspaces):
            for i in range(total):
                # 60 % instances (a third of them running), 36 % clusters, 4 % attached.
                share = i % 25
                if share < 15:
                    kind, state = (
                        ComputeKind.INSTANCE,
                        (ComputeState.RUNNING if i % 3 == 0 else ComputeState.STOPPED),
                    )
                elif share < 24:
                    kind, state = ComputeKind.CLUSTER, ComputeState.STEADY
                else:
                    kind, state = ComputeKind.ATTACHED, ComputeState.STEADY
                yield Compute(
                    workspace=workspace,
                    name=f"{kind[:4]}-{i}",
                    kind=kind,
                    state=state,
                    vm_size=None if kind == ComputeKind.ATTACHED else rng.choice(sizes),
                    created_by_id=workspace.created_by_id,
                    min_nodes=0,
                    max_nodes=20 if kind == ComputeKind.CLUSTER else 1,
                    idle_shutdown_minutes=60 if kind == ComputeKind.INSTANCE else None,
                    last_activity_at=now - timedelta(minutes=rng.randint(1, 50)),
                    state_changed_at=now - timedelta(days=rng.randint(0, HISTORY_DAYS)),
                )

    insert(Compute, rows())
    computes = list(Compute.objects.order_by("pk"))
    insert(
        Attachment,
        (
            Attachment(compute=c, target_kind="remote_vm", host="10.0.0.9", username="ml")
            for c in computes
            if c.kind == ComputeKind.ATTACHED
        ),
    )
    return computes


def make_nodes(
    scale: Scale, computes: list[Compute], busy: Compute, rng: random.Random, now
) -> None:
    """Nodes on `computes_with_nodes` computes: a live one or two each and the ended rows
    of their past (the busy cluster has `busy_cluster_nodes` rows, 16 of them live)."""
    others = [
        c
        for c in computes
        if c.pk != busy.pk and (c.kind == ComputeKind.CLUSTER or c.state == ComputeState.RUNNING)
    ]
    with_nodes = [busy, *others[: scale.computes_with_nodes - 1]]
    rest = max(0, scale.jobs // 3 - scale.busy_cluster_nodes)  # ended rows to share
    per_compute = max(1, rest // max(1, len(with_nodes) - 1))
    next_index: dict[int, int] = {}

    def rows() -> Iterator[Node]:
        for compute in with_nodes:
            total = scale.busy_cluster_nodes if compute is busy else rng.randint(1, per_compute * 2)
            live = 16 if compute is busy else (1 if compute.kind == ComputeKind.INSTANCE else 2)
            live = min(live, total)
            next_index[compute.pk] = total + 1
            for index in range(1, total + 1):
                ended = index <= total - live
                yield Node(
                    compute=compute,
                    index=index,
                    state=NodeState.LEAVING
                    if ended
                    else rng.choice([NodeState.IDLE, NodeState.RUNNING]),
                    container_ref=f"scale-{compute.pk}-{index}",
                    started_at=now - timedelta(hours=total - index + 1),
                    last_busy_at=now - timedelta(minutes=1),
                    ended_at=now - timedelta(hours=total - index) if ended else None,
                )

    insert(Node, rows())
    for compute_id, index in next_index.items():
        Compute.objects.filter(pk=compute_id).update(next_node_index=index)


FINISHED = (
    JobStatus.COMPLETED,
    JobStatus.COMPLETED,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELED,
)


def make_jobs(
    scale: Scale,
    by_workspace: dict[int, list[Compute]],
    focus: Workspace,
    busy: Compute,
    users: list[User],
    rng: random.Random,
    now,
) -> list[int]:
    """`jobs` jobs: the busy cluster's `busy_cluster_jobs` (40 queued, 16 running), a fifth
    of the rest on the focus workspace's other computes, the rest everywhere else."""
    runnable = {
        ws: [c for c in computes if c.kind != ComputeKind.ATTACHED or ws == focus.pk]
        for ws, computes in by_workspace.items()
    }
    others = [ws for ws in runnable if ws != focus.pk]
    rest = scale.jobs - scale.busy_cluster_jobs
    focus_rest = rest // 5

    def placements() -> Iterator[Compute]:
        yield from itertools.repeat(busy, scale.busy_cluster_jobs)
        for _ in range(focus_rest):
            yield rng.choice(runnable[focus.pk])
        for _ in range(rest - focus_rest):
            yield rng.choice(runnable[rng.choice(others)])

    def rows() -> Iterator[Job]:
        for n, compute in enumerate(placements()):
            status = rng.choice(FINISHED)
            if compute is busy and n >= scale.busy_cluster_jobs - 56:
                status = JobStatus.QUEUED if n < scale.busy_cluster_jobs - 16 else JobStatus.RUNNING
            queued = now - timedelta(minutes=rng.randint(1, HISTORY_DAYS * 24 * 60))
            finished = status not in (JobStatus.QUEUED, JobStatus.RUNNING)
            yield Job(
                workspace_id=compute.workspace_id,
                compute=compute,
                name=f"train-{n}",
                command="python train.py --epochs 10",
                submitted_by=users[(n * 7) % len(users)],
                status=status,
                exit_code=(0 if status == JobStatus.COMPLETED else 1) if finished else None,
                queued_at=queued,
                running_at=queued + timedelta(seconds=3) if status != JobStatus.QUEUED else None,
                finished_at=queued + timedelta(minutes=20) if finished else None,
            )

    insert(Job, rows())
    jobs = list(Job.objects.order_by("pk").values_list("pk", "status", "running_at", "finished_at"))
    insert(
        JobRun,
        (
            JobRun(
                job_id=pk,
                rank=0,
                node_name="n-1",
                container="",
                exit_code=0,
                started_at=running_at,
                finished_at=finished_at,
            )
            for pk, status, running_at, finished_at in jobs
            if status != JobStatus.QUEUED
        ),
    )
    return [pk for pk, *_ in jobs]


EVENT_VERBS = [
    (EventVerb.SCALED_UP, "Scaled up to 3 nodes for 2 queued jobs."),
    (EventVerb.NODE_ADDED, "Node n-4 added."),
    (EventVerb.NODE_REMOVED, "Node n-2 removed after 120 s idle."),
    (EventVerb.JOB_SUBMITTED, "Job train-1 submitted."),
    (EventVerb.REACHED_RUNNING, "Running."),
    (EventVerb.STOP_REQUESTED, "Stop requested."),
]


def make_events(
    scale: Scale,
    computes: list[Compute],
    focus_computes: list[Compute],
    busy: Compute,
    rng: random.Random,
    now,
) -> None:
    """`events` events: a fifth on the focus workspace (a fifth of those on the busy
    cluster), the rest on every compute."""
    focus_share = scale.events // 5
    busy_share = focus_share // 5

    def targets() -> Iterator[Compute]:
        yield from itertools.repeat(busy, busy_share)
        for _ in range(focus_share - busy_share):
            yield rng.choice(focus_computes)
        for _ in range(scale.events - focus_share):
            yield rng.choice(computes)

    def rows() -> Iterator[Event]:
        for compute in targets():
            verb, message = rng.choice(EVENT_VERBS)
            yield Event(
                compute=compute,
                verb=verb,
                message=message,
                created_at=now - timedelta(minutes=rng.randint(0, HISTORY_DAYS * 24 * 60)),
            )

    insert(Event, rows())


def make_activity(
    scale: Scale, workspaces: list[Workspace], users: list[User], rng: random.Random
) -> None:
    focus_share = scale.activity // 10

    def rows() -> Iterator[Activity]:
        for n in range(scale.activity):
            workspace = workspaces[0] if n < focus_share else rng.choice(workspaces)
            yield Activity(
                workspace=workspace,
                actor=users[n % len(users)],
                verb=Activity.Verb.MEMBER_ROLE_CHANGED,
                message="changed scale-7's role to contributor",
            )

    insert(Activity, rows())


def make_quota_requests(workspaces: list[Workspace], users: list[User], rng: random.Random) -> int:
    from compute.models import VmFamily

    families = list(VmFamily.objects.order_by("pk"))
    insert(
        QuotaRequest,
        (
            QuotaRequest(
                workspace=workspace,
                family=rng.choice(families),
                requested_limit=rng.choice([24, 48, 96, 192]),
                justification="Fine-tuning runs for the next quarter.",
                requested_by=users[(i * 3) % len(users)],
            )
            for i, workspace in enumerate(workspaces * 5)
        ),
    )
    return QuotaRequest.objects.filter(workspace=workspaces[0]).values_list("pk", flat=True)[0]


def make_notifications(focus: Workspace, user: User, rng: random.Random) -> None:
    insert(
        Notification,
        (
            Notification(
                user=user,
                workspace=focus,
                title=f"inst-{n} stops in about 15 min (an idle shutdown)",
                url="/",
            )
            for n in range(2_000)
        ),
    )
    Schedule.objects.bulk_create(
        Schedule(compute_id=pk, action="stop", cron="0 19 * * 1-5", timezone="UTC")
        for pk in Compute.objects.filter(workspace=focus, kind=ComputeKind.INSTANCE).values_list(
            "pk", flat=True
        )[:50]
    )


def make_samples(busy: Compute, now) -> None:
    """A month of the busy cluster's chart, a sample a minute."""
    insert(
        ComputeSample,
        (
            ComputeSample(compute=busy, at=now - timedelta(minutes=m), nodes=m % 17, queued=m % 40)
            for m in range(30 * 24 * 60)
        ),
    )


def spread_dates(now) -> None:
    """`auto_now_add` stamped every row with today: spread them over two years."""
    with connection.cursor() as cursor:
        for table in ("workspace_activity", "workspace_notification", "compute_quotarequest"):
            cursor.execute(
                f"UPDATE {table} SET created_at = %s - (id %% {HISTORY_DAYS}) * interval '1 day'"  # noqa: S608
                " - (id %% 1440) * interval '1 minute'",
                [now],
            )
        cursor.execute("UPDATE compute_node SET created_at = COALESCE(started_at, %s)", [now])
