"""Quota rules: limits (rows or site defaults), usage, and the check every change of
cores goes through, under a row lock so concurrent changes never overshoot a limit.

Usage is the cores of nodes that exist (preparing, idle, running) plus instances that
hold a node or are about to (creating, starting, running, restarting). A stopped instance
or a cluster at zero nodes holds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.urls import reverse

from compute.models import (
    Compute,
    ComputeState,
    FamilyQuota,
    Node,
    QuotaRequest,
    RequestStatus,
    Tier,
    VmFamily,
    VmSize,
    WorkspaceQuota,
)
from compute.models.states import INSTANCE_UP, LIVE_NODE_STATES
from compute.rules.quota import Check, default_family_limit
from workspace.models import Workspace

S = ComputeState
HOLDING_INSTANCE = INSTANCE_UP  # as DEDICATED_USED_SQL and hangar_family_usage count it


def family_row(workspace: Workspace, family: VmFamily, lock: bool = False) -> FamilyQuota:
    """The row (made with the site default when missing); locked until commit if asked."""
    rows = FamilyQuota.objects.filter(workspace=workspace, family=family)
    row = (rows.select_for_update() if lock else rows).first()
    if row is None:
        default = default_family_limit(family)
        row, _ = FamilyQuota.objects.get_or_create(
            workspace=workspace, family=family, defaults={"limit": default, "approved": default}
        )
        if lock:
            row = FamilyQuota.objects.select_for_update().get(pk=row.pk)
    return row


def family_shown(workspace: Workspace, family: VmFamily) -> FamilyQuota:
    """The row as it stands, for unlocked checks: an unsaved one with the site default when
    none was made yet (reading never writes a row)."""
    row = FamilyQuota.objects.filter(workspace=workspace, family=family).first()
    if row is None:
        default = default_family_limit(family)
        row = FamilyQuota(workspace=workspace, family=family, limit=default, approved=default)
    return row


def family_limit(workspace: Workspace, family: VmFamily) -> int:
    """The limit as it stands, for display: the site default when no row was made yet
    (reading never writes a row)."""
    return family_shown(workspace, family).limit


def pool_limit(workspace: Workspace) -> int:
    """The low-priority limit as it stands, for display (reading never writes a row)."""
    return pool_shown(workspace).low_priority_limit


def pool_defaults() -> dict[str, int]:
    return {
        "low_priority_limit": settings.HANGAR_DEFAULT_LOW_PRIORITY_CORES,
        "low_priority_approved": settings.HANGAR_DEFAULT_LOW_PRIORITY_CORES,
        "max_computes": settings.HANGAR_DEFAULT_MAX_COMPUTES,
    }


def pool_shown(workspace: Workspace) -> WorkspaceQuota:
    """The pool row as it stands, for pages and unlocked checks: an unsaved one with the
    site defaults when none was made yet (reading never writes a row: a reader's GET of the
    quota page or of the what-if line made one)."""
    row = WorkspaceQuota.objects.filter(workspace=workspace).first()
    return row or WorkspaceQuota(workspace=workspace, **pool_defaults())


def pool_row(workspace: Workspace, lock: bool = False) -> WorkspaceQuota:
    """The row (made with the site defaults when missing); locked until commit if asked."""
    row, _ = WorkspaceQuota.objects.get_or_create(workspace=workspace, defaults=pool_defaults())
    if lock:
        row = WorkspaceQuota.objects.select_for_update().get(pk=row.pk)
    return row


# A family's dedicated usage: live nodes counted per cluster (an index-only scan of
# node_live_idx) times the size's vCPUs, plus one node per instance that holds one.
# On PostgreSQL this is the function hangar_family_usage (migration 0008), which the locked
# paths call under the quota row lock; this text is the same query for SQLite
# (tests/unit/test_quota_functions.py holds the two, and their state lists, alike).
DEDICATED_USED_SQL = """
SELECT COALESCE(SUM(s.vcpus * CASE WHEN c.kind = 'cluster' THEN (
    SELECT count(*) FROM compute_node n
    WHERE n.compute_id = c.id AND n.state IN ('preparing', 'idle', 'running')
  ) ELSE 1 END), 0)
FROM compute_compute c JOIN compute_vmsize s ON c.vm_size_id = s.id
WHERE c.workspace_id = %s AND s.family_id = %s AND (
  (c.kind = 'cluster' AND c.tier = 'dedicated')
  OR (c.kind = 'instance' AND c.state IN ('creating', 'starting', 'running', 'restarting'))
)
"""


def dedicated_used(workspace: Workspace, family: VmFamily) -> int:
    postgres = connection.vendor == "postgresql"
    sql = "SELECT hangar_family_usage(%s, %s)" if postgres else DEDICATED_USED_SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, [workspace.pk, family.pk])
        return int(cursor.fetchone()[0])


Pair = tuple[int, int]  # (workspace id, family id)


def dedicated_used_by_pair(pairs: Iterable[Pair]) -> dict[Pair, int]:
    """`dedicated_used` of many (workspace, family) pairs in one statement, whatever their
    number: the quota page's families, the admin's page of requests. The same usage query,
    evaluated for each row of a VALUES list (on PostgreSQL the function itself)."""
    wanted = sorted(set(pairs))
    if not wanted:
        return {}
    if connection.vendor == "postgresql":
        usage = "hangar_family_usage(p.column1::bigint, p.column2::bigint)"
    else:
        usage = f"({DEDICATED_USED_SQL % ('p.column1', 'p.column2')})"
    rows = ", ".join(["(%s, %s)"] * len(wanted))
    # Only placeholders and this module's constant text are put into the statement.
    sql = f"SELECT p.column1, p.column2, {usage} FROM (VALUES {rows}) AS p"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [number for pair in wanted for number in pair])
        return {(int(w), int(f)): int(used) for w, f, used in cursor.fetchall()}


def low_priority_used_by_workspace(workspace_ids: Iterable[int]) -> dict[int, int]:
    """`low_priority_used` of many workspaces in one grouped query."""
    ids = set(workspace_ids)
    if not ids:
        return {}
    rows = (
        Node.objects.filter(
            compute__workspace__in=ids,
            compute__tier=Tier.LOW_PRIORITY,
            state__in=LIVE_NODE_STATES,
        )
        .order_by()
        .values_list("compute__workspace")
        .annotate(cores=Sum("compute__vm_size__vcpus"))
    )
    return {workspace: cores or 0 for workspace, cores in rows}


def family_rows_shown(families: Mapping[Pair, VmFamily]) -> dict[Pair, FamilyQuota]:
    """`family_shown` of many pairs in one query: each row as it stands, or an unsaved one
    with the site default (reading never writes a row)."""
    if not families:
        return {}
    found = {
        (row.workspace_id, row.family_id): row
        for row in FamilyQuota.objects.filter(
            workspace__in={w for w, _ in families}, family__in={f for _, f in families}
        )
    }
    shown = {}
    for (workspace_id, family_id), family in families.items():
        row = found.get((workspace_id, family_id))
        if row is None:
            default = default_family_limit(family)
            row = FamilyQuota(
                workspace_id=workspace_id, family=family, limit=default, approved=default
            )
        shown[workspace_id, family_id] = row
    return shown


def pool_rows_shown(workspace_ids: Iterable[int]) -> dict[int, WorkspaceQuota]:
    """`pool_shown` of many workspaces in one query (reading never writes a row)."""
    ids = set(workspace_ids)
    if not ids:
        return {}
    found = {row.workspace_id: row for row in WorkspaceQuota.objects.filter(workspace__in=ids)}
    return {i: found.get(i) or WorkspaceQuota(workspace_id=i, **pool_defaults()) for i in ids}


@dataclass(frozen=True)
class Standing:
    """Where a quota stands now: its limit and the cores in use against it."""

    limit: int
    used: int


def request_standings(requests: Sequence[QuotaRequest]) -> dict[int, Standing]:
    """The limit and usage each request asks to change, by request id, in at most four
    queries whatever the number of requests (the admin's list of requests). Give requests
    with their family loaded (select_related): its default limit depends on it."""
    families = {(r.workspace_id, r.family.pk): r.family for r in requests if r.family is not None}
    pools = {r.workspace_id for r in requests if r.family_id is None}
    family_rows, family_used = family_rows_shown(families), dedicated_used_by_pair(families)
    pool_rows, pool_used = pool_rows_shown(pools), low_priority_used_by_workspace(pools)
    standings = {}
    for item in requests:
        if item.family_id is not None:
            pair = (item.workspace_id, item.family_id)
            standings[item.pk] = Standing(family_rows[pair].limit, family_used.get(pair, 0))
        else:
            pool = pool_rows[item.workspace_id]
            standings[item.pk] = Standing(
                pool.low_priority_limit, pool_used.get(item.workspace_id, 0)
            )
    return standings


def low_priority_used(workspace: Workspace) -> int:
    return (
        Node.objects.filter(
            compute__workspace=workspace,
            compute__tier=Tier.LOW_PRIORITY,
            state__in=LIVE_NODE_STATES,
        ).aggregate(cores=Sum("compute__vm_size__vcpus"))["cores"]
        or 0
    )


def compute_count(workspace: Workspace) -> int:
    return Compute.objects.of(workspace).exclude(state=S.DELETED).count()


def ensure_room_for_a_compute(workspace: Workspace) -> None:
    """Inside the creating transaction: the pool row stays locked, so two creations at
    once cannot both take the last place."""
    pool = pool_row(workspace, lock=True)
    if compute_count(workspace) >= pool.max_computes:
        raise ValidationError(
            f"{workspace.name} has reached its limit of {pool.max_computes} computes."
        )


def check(workspace: Workspace, size: VmSize, count: int, tier: str, lock: bool = False) -> Check:
    """Whether `count` nodes of `size` fit now. With lock=True (inside a transaction) the
    quota row stays locked until commit, so whoever checks next sees this change."""
    need = size.vcpus * count
    if tier == Tier.LOW_PRIORITY:
        pool = pool_row(workspace, lock) if lock else pool_shown(workspace)
        return Check("low-priority", need, pool.low_priority_limit, low_priority_used(workspace))
    family = size.family
    if lock:
        limit, approved, used = locked_dedicated(workspace, family)
    else:
        row = family_shown(workspace, family)
        limit, approved, used = row.limit, row.approved, dedicated_used(workspace, family)
    return family_check(family, need, limit, approved, used)


def family_check(family: VmFamily, need: int, limit: int, approved: int, used: int) -> Check:
    """How `need` dedicated cores sit against a family's limit, approval and usage."""
    return Check(
        family.name,
        need,
        limit,
        used,
        restricted_unapproved=family.restricted and approved == 0,
    )


def locked_dedicated(workspace: Workspace, family: VmFamily) -> tuple[int, int, int]:
    """(limit, approved, dedicated cores used) of a family, its quota row locked until the
    surrounding transaction ends: whoever checks next waits, then sees this change."""
    if connection.vendor == "postgresql":
        return locked_family_usage(workspace, family)
    row = family_row(workspace, family, lock=True)
    return row.limit, row.approved, dedicated_used(workspace, family)


def locked_family_usage(workspace: Workspace, family: VmFamily) -> tuple[int, int, int]:
    """Lock the row and read its usage in one round trip (migration 0007's function)."""
    for _ in range(2):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT * FROM hangar_lock_family_quota(%s, %s)", [workspace.pk, family.pk]
            )
            found = cursor.fetchone()
        if found:
            return int(found[0]), int(found[1]), int(found[2])
        family_row(workspace, family)  # first use of this family: make the row, then lock it
    raise RuntimeError("quota row vanished")


def nodes_that_fit(workspace: Workspace, size: VmSize, wanted: int, tier: str) -> tuple[int, Check]:
    """For a scale-up (call inside a transaction): how many of `wanted` nodes fit."""
    result = check(workspace, size, wanted, tier, lock=True)
    if result.restricted_unapproved:
        return 0, result
    return min(wanted, result.free // max(1, size.vcpus)), result


def claims_on_server(vendor: str, tier: str, in_transaction: bool) -> bool:
    """Whether a scale-up claim is the one-statement function of migration 0008.

    Only on PostgreSQL, only for dedicated cores (the function knows family quotas), and
    only outside a caller's transaction: the function switches `synchronous_commit` off
    for the transaction it runs in, which inside an `atomic()` block is the caller's whole
    transaction, and its quota row lock would be held until the caller commits anyway.
    Everything else takes the plain path: an `atomic()` block (a savepoint inside a
    caller's transaction) with the row locked until the rows exist.
    """
    return vendor == "postgresql" and tier == Tier.DEDICATED and not in_transaction


def claim_nodes(cluster: Compute, wanted: int) -> tuple[int, int, Check]:
    """A scale-up: insert the rows of as many of `wanted` nodes as the quota allows.

    Returns (nodes added, first new node number, the check). Best called outside a
    transaction: on PostgreSQL a dedicated claim is then one statement (migration 0008)
    that commits on the server, so the quota row is never held across a client round
    trip. Inside one it takes the plain path (see `claims_on_server`).
    """
    workspace, size = cluster.workspace, cluster.vm_size
    assert size is not None  # only attached computes have no size, and they have no nodes
    if claims_on_server(connection.vendor, cluster.tier, connection.in_atomic_block):
        family = size.family
        for _ in range(2):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT * FROM hangar_claim_nodes(%s, %s, %s, %s, %s, %s)",
                    [workspace.pk, family.pk, cluster.pk, wanted, size.vcpus, family.restricted],
                )
                found = cursor.fetchone()
            if found:
                fit, limit, approved, used, first = found
                result = Check(
                    family.name,
                    size.vcpus * wanted,
                    limit,
                    int(used),
                    restricted_unapproved=family.restricted and approved == 0,
                )
                return fit, first, result
            family_row(workspace, family)  # first use of this family: make the row
        raise RuntimeError("quota row vanished")
    with transaction.atomic():  # the quota row stays locked until the rows exist
        fit, result = nodes_that_fit(workspace, size, wanted, cluster.tier)
        first = cluster.add_node_rows(fit) if fit else 0
    return fit, first, result


def request_url(workspace: Workspace, result: Check, family: VmFamily | None) -> str:
    url = reverse("compute:quota-request", args=[workspace.slug])
    wanted = result.limit + result.short if result.short else result.limit
    if family is not None and result.pool != "low-priority":
        return f"{url}?family={family.pk}&cores={wanted}"
    return f"{url}?cores={wanted}"


def overview(workspace: Workspace) -> dict:
    """The quota page: every family in use or with a limit, the pool, the compute count."""
    rows = {row.family_id: row for row in FamilyQuota.objects.filter(workspace=workspace)}
    in_use = set(
        Compute.objects.of(workspace)
        .exclude(state=S.DELETED)
        .values_list("vm_size__family_id", flat=True)
    )
    families = VmFamily.objects.filter(Q(pk__in=in_use) | Q(pk__in=rows)).order_by("name")
    asked = set(
        QuotaRequest.objects.filter(
            workspace=workspace, status=RequestStatus.PENDING, family__isnull=False
        ).values_list("family_id", flat=True)
    )
    usage = dedicated_used_by_pair((workspace.pk, family.pk) for family in families)
    bars = []
    for family in families:
        row = rows.get(family.pk)
        limit = row.limit if row else default_family_limit(family)
        approved = row.approved if row else limit
        used = usage[workspace.pk, family.pk]
        bars.append(
            {
                "family": family,
                "limit": limit,
                "approved": approved,
                "used": used,
                "percent": min(100, round(100 * used / limit)) if limit else (100 if used else 0),
                # Restricted and never approved: no cores to show or cap, only to request.
                "needs_approval": family.restricted and approved == 0,
                "request_pending": family.pk in asked,
            }
        )
    pool = pool_shown(workspace)
    return {
        "bars": bars,
        "pool": pool,
        "pool_used": low_priority_used(workspace),
        "computes": compute_count(workspace),
        "stopped_holding": Compute.objects.of(workspace)
        .filter(state=S.STOPPED)
        .aggregate(n=Count("id"))["n"],
    }
