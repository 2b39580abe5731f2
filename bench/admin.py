"""Admin figures at team scale: every changelist, the busy cluster's change page and the
quota page, timed (p50/p95) with their query counts, on issue 16's numbers.

`BENCH_ADMIN_SCALE` (default 1.0) scales every count: 0.1 is a quick look. Rows are made
with bulk inserts (no actions, nothing enqueued): the admin only reads them.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection, models
from django.template import Template
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from compute.models import (
    Attachment,
    Compute,
    ComputeKind,
    ComputeState,
    Event,
    EventVerb,
    FamilyQuota,
    Job,
    JobStatus,
    Node,
    NodeState,
    QuotaRequest,
    Tier,
    VmFamily,
    VmSize,
)
from workspace.models import Activity, Invitation, Membership, Role, Workspace

SCALE = float(os.environ.get("BENCH_ADMIN_SCALE", "1"))
WORKSPACES = 200
COMPUTES = 10_000
COMPUTES_WITH_NODES = 2_000
NODES_EACH = 4
BUSY_CLUSTER_NODES_EVER = 2_000  # one cluster that scaled up and down all year
JOBS = 100_000
EVENTS = 500_000
ACTIVITY = 200_000
QUOTA_REQUESTS = 2_000
MEMBERS_EACH = 10
RUNS = 30


def scaled(count: int) -> int:
    return max(1, int(count * SCALE))


def batches(rows: Iterator[models.Model], model: type[models.Model], size: int = 5000) -> int:
    made, batch = 0, []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            model.objects.bulk_create(batch)  # type: ignore[attr-defined]
            made, batch = made + len(batch), []
    if batch:
        model.objects.bulk_create(batch)  # type: ignore[attr-defined]
    return made + len(batch)


def spread(now, index: int, total: int) -> Any:
    """A moment in the past year, the newest rows last."""
    return now - timedelta(days=365) * (1 - index / total)


def populate() -> dict[str, Any]:
    """The data set; returns the ids the page timings need."""
    rng = random.Random(16)  # noqa: S311  # a repeatable data set, not a secret
    now = timezone.now()
    User = get_user_model()
    started = time.perf_counter()
    users = User.objects.bulk_create(
        User(username=f"user{i}", email=f"user{i}@example.com")
        for i in range(scaled(WORKSPACES) * MEMBERS_EACH)
    )
    workspaces = Workspace.objects.bulk_create(
        Workspace(name=f"Team {i}", slug=f"team-{i}", created_by=users[i])
        for i in range(scaled(WORKSPACES))
    )
    batches(
        (
            Membership(workspace=w, user=users[i * MEMBERS_EACH + j], role=Role.CONTRIBUTOR)
            for i, w in enumerate(workspaces)
            for j in range(MEMBERS_EACH)
        ),
        Membership,
    )
    batches(
        (
            Invitation(
                workspace=w,
                identifier=f"guest{i}-{j}",
                invited_by=users[i],
                expires_at=now + timedelta(days=7),
            )
            for i, w in enumerate(workspaces)
            for j in range(10)
        ),
        Invitation,
    )
    sizes = list(VmSize.objects.exclude(family__restricted=True))
    kinds = [ComputeKind.CLUSTER] * 5 + [ComputeKind.INSTANCE] * 4 + [ComputeKind.ATTACHED]
    computes = Compute.objects.bulk_create(
        Compute(
            workspace=workspaces[i % len(workspaces)],
            name=f"c{i}",
            kind=(kind := kinds[i % len(kinds)]),
            state=ComputeState.STEADY if kind != ComputeKind.INSTANCE else ComputeState.RUNNING,
            vm_size=None if kind == ComputeKind.ATTACHED else rng.choice(sizes),
            tier=Tier.LOW_PRIORITY if i % 7 == 0 else Tier.DEDICATED,
            max_nodes=10,
            created_by=users[i % len(users)],
        )
        for i in range(scaled(COMPUTES))
    )
    clusters = [c for c in computes if c.kind == ComputeKind.CLUSTER]
    attached = [c for c in computes if c.kind == ComputeKind.ATTACHED]
    Attachment.objects.bulk_create(
        Attachment(compute=c, target_kind="remote_vm", host=f"box{c.pk}.lab") for c in attached
    )
    busy = clusters[0]
    batches(
        (
            Node(
                compute=busy,
                index=i + 1,
                state=NodeState.IDLE if i >= BUSY_CLUSTER_NODES_EVER - 8 else NodeState.LEAVING,
                container_ref=f"ref-busy-{i}",
                ended_at=None if i >= BUSY_CLUSTER_NODES_EVER - 8 else now,
            )
            for i in range(BUSY_CLUSTER_NODES_EVER)
        ),
        Node,
    )
    batches(
        (
            Node(compute=c, index=j + 1, state=NodeState.IDLE, container_ref=f"ref-{c.pk}-{j}")
            for c in clusters[1 : scaled(COMPUTES_WITH_NODES)]
            for j in range(NODES_EACH)
        ),
        Node,
    )
    jobs = scaled(JOBS)
    batches(
        (
            Job(
                workspace_id=(c := clusters[i % len(clusters)]).workspace_id,
                compute=c,
                name=f"job{i}",
                command="python train.py",
                status=JobStatus.COMPLETED,
                submitted_by=users[i % len(users)],
                queued_at=spread(now, i, jobs),
            )
            for i in range(jobs)
        ),
        Job,
    )
    verbs = list(EventVerb)
    events = scaled(EVENTS)
    batches(
        (
            Event(
                compute=computes[i % len(computes)],
                actor=users[i % len(users)] if i % 3 == 0 else None,
                verb=verbs[i % len(verbs)],
                message=f"event {i}",
                created_at=spread(now, i, events),
            )
            for i in range(events)
        ),
        Event,
    )
    activity = scaled(ACTIVITY)
    batches(
        (
            Activity(
                workspace=workspaces[i % len(workspaces)],
                actor=users[i % len(users)],
                verb=Activity.Verb.MEMBER_ADDED,
                message=f"activity {i}",
            )
            for i in range(activity)
        ),
        Activity,
    )
    families = list(VmFamily.objects.all())
    batches(
        (
            QuotaRequest(
                workspace=workspaces[i % len(workspaces)],
                family=None if i % 5 == 0 else families[i % len(families)],
                requested_limit=100,
                justification="training",
                requested_by=users[i % len(users)],
            )
            for i in range(scaled(QUOTA_REQUESTS))
        ),
        QuotaRequest,
    )
    FamilyQuota.objects.bulk_create(
        FamilyQuota(workspace=w, family=f, limit=48, approved=48)
        for w in workspaces
        for f in families[:3]
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"  data made in {time.perf_counter() - started:.0f} s (scale {SCALE})")
    return {"busy": busy.pk, "workspace": workspaces[0].slug}


def existing() -> dict[str, Any]:
    """The ids of a data set made before (a database kept between runs while tuning)."""
    busy = Node.objects.values("compute").annotate(n=models.Count("id")).order_by("-n")[0]
    return {"busy": busy["compute"], "workspace": "team-0"}


@dataclass
class Figures:
    wall: list[float]  # ms, sorted
    cpu: list[float]  # ms of this process's CPU (rendering, ORM), sorted
    queries: int
    size: int  # bytes


def timed(client: Client, url: str) -> Figures:
    """RUNS GETs of `url` after one that is counted (queries, bytes) and not timed."""
    statements: list[str] = []

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    wall, cpu = [], []
    for _ in range(RUNS):
        began, began_cpu = time.perf_counter(), time.process_time()
        client.get(url)
        wall.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - began_cpu) * 1000)
    return Figures(sorted(wall), sorted(cpu), len(statements), len(response.content))


def report(label: str, client: Client, url: str) -> None:
    got = timed(client, url)
    p95 = got.wall[int(len(got.wall) * 0.95) - 1]
    print(
        f"{label:<40} p50={statistics.median(got.wall):6.1f} ms  p95={p95:6.1f} ms  "
        f"cpu p50={statistics.median(got.cpu):6.1f} ms  {got.queries:3d} queries  "
        f"{got.size // 1024:4d} KB"
    )


@contextmanager
def as_served() -> Iterator[None]:
    """Pages render as a server renders them. `python -m bench` runs under
    setup_test_environment, which wraps every template render to copy its context for the
    test client (a large share of an admin page) and keeps DEBUG as the environment says."""
    from django.test import utils

    saved = getattr(utils._TestState, "saved_data", None)
    plain = getattr(saved, "template_render", None)
    instrumented = Template._render
    if plain is not None:
        Template._render = plain  # type: ignore[method-assign]
    try:
        with override_settings(DEBUG=False):
            yield
    finally:
        Template._render = instrumented  # type: ignore[method-assign]


def run() -> None:
    if connection.vendor != "postgresql":
        print("admin: skipped (the figures are PostgreSQL's: DATABASE_URL=postgres://...)")
        return
    ids = populate() if not Event.objects.exists() else existing()
    root = get_user_model().objects.filter(username="bench-root").first()
    root = root or get_user_model().objects.create_superuser("bench-root", "r@example.com", "pw")
    client = Client()
    client.force_login(root)
    with as_served():
        for model in sorted(admin.site._registry, key=lambda m: m._meta.label):
            opts = model._meta
            url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
            report(opts.label, client, url)
        busy = reverse("admin:compute_compute_change", args=[ids["busy"]])
        report("busy cluster's change page", client, busy)
        report("quota page (a workspace admin's)", client, quota_page(ids["workspace"]))


def quota_page(slug: str) -> str:
    workspace = Workspace.objects.get(slug=slug)
    root = get_user_model().objects.get(username="bench-root")
    Membership.objects.get_or_create(workspace=workspace, user=root, defaults={"role": Role.ADMIN})
    return reverse("compute:quota", args=[slug])
