"""Quota figure: the latency a locked quota check adds to a scale-up, under 50 concurrent
scale-ups (meaningful on PostgreSQL: `DATABASE_URL=postgres://... make bench`).

Each scale-up writes its node row the autoscaler's way (quota.claim_nodes); the baseline
writes a node row in one plain INSERT sent the same way (raw SQL, one round trip), the
least any scale-up costs. The same 50-way burst runs
both ways; the difference is what the check costs, lock waits included.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import statistics
import time

from django.db import connection

from bench.jobs import percentile
from compute import quota
from compute.actions import computes as actions
from compute.models import FamilyQuota, VmFamily, VmSize
from tests.support.teams import make_team
from workspace.access import get_access

# The same commit as hangar_claim_nodes (no wait for the WAL flush), so the difference
# is the quota check alone, not a cheaper commit.
PLAIN_INSERT = """
WITH same_commit AS (SELECT set_config('synchronous_commit', 'off', true))
INSERT INTO compute_node (compute_id, index, state, container_ref, error, created_at)
SELECT %s, %s, 'preparing', '', '', now() FROM same_commit
"""


def burst(clusters: list, size: VmSize, with_check: bool) -> list[float]:
    """One process per scale-up, as web and worker processes are."""
    connection.close()
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(len(clusters)), context.Queue()

    def scale_up(cluster) -> None:
        numbers = itertools.count(1_000_000 + os.getpid() * 1000)
        connection.ensure_connection()
        quota.claim_nodes(cluster, 1)  # warm up, as a serving process is
        barrier.wait()
        began = time.perf_counter()
        if with_check:  # the autoscaler's way: quota row locked, usage read, row inserted
            quota.claim_nodes(cluster, 1)
        else:  # the floor: one node row in one plain statement, no quota, no numbering
            with connection.cursor() as cursor:
                cursor.execute(PLAIN_INSERT, [cluster.pk, next(numbers)])
        results.put((time.perf_counter() - began) * 1000)
        connection.close()

    processes = [context.Process(target=scale_up, args=(c,)) for c in clusters]
    for process in processes:
        process.start()
    timings = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join()
    return timings


def bench_quota_check(requests: int = 50, workspaces: int = 10, rounds: int = 11) -> None:
    size = VmSize.objects.select_related("family").get(name="Standard_DS3_v2")
    clusters = []
    for i in range(workspaces):
        team = make_team(f"q{workspaces}-{i}")
        FamilyQuota.objects.create(
            workspace=team.workspace,
            family=VmFamily.objects.get(name="DSv2"),
            limit=10_000,
            approved=10_000,
        )
        access = get_access(team.admin, team.workspace.slug)
        for j in range(requests // workspaces):
            clusters.append(
                actions.create_cluster(access, name=f"pool-{j}", vm_size=size, max_nodes=16)
            )
    # Bursts on 2 cores are noisy: alternate the two kinds and compare the medians.
    base_p95, checked_p95, base_p50, checked_p50 = [], [], [], []
    for _ in range(rounds):
        baseline = burst(clusters, size, with_check=False)
        checked = burst(clusters, size, with_check=True)
        base_p95.append(percentile(baseline, 0.95))
        checked_p95.append(percentile(checked, 0.95))
        base_p50.append(statistics.median(baseline))
        checked_p50.append(statistics.median(checked))
    p95_before, p95_after = statistics.median(base_p95), statistics.median(checked_p95)
    added_p50 = statistics.median(checked_p50) - statistics.median(base_p50)
    print(
        f"{f'quota check, {requests} scale-ups at once, {workspaces} rows':<44} "
        f"p50 {added_p50:+6.2f} ms  p95 {p95_after - p95_before:+6.2f} ms "
        f"(scale-up p95 {p95_before:.1f} → {p95_after:.1f} ms, median of {rounds} bursts; "
        f"{connection.vendor}; goal p95 ≤ 20 ms)"
    )


def run() -> None:
    bench_quota_check(workspaces=50)  # 50 quota rows: each scale-up checks its own
    bench_quota_check(workspaces=10)  # 10 rows: 5 scale-ups wait for each row's lock
