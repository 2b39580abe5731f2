"""The sweep's cost does not grow with the number of computes (real local nodes)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from compute.controllers.reconcile import reconcile
from compute.controllers.sweep import sweep
from compute.models import Compute, ComputeKind, ComputeState, VmSize
from tests.integration.helpers import driver_named
from tests.support.leftovers import remove_all_nodes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def make_clusters(team, count: int, min_nodes: int) -> list[Compute]:
    size = VmSize.objects.get(name="Standard_D2s_v3")
    return Compute.objects.bulk_create(
        Compute(
            workspace=team.workspace,
            name=f"c-{count}-{i}",
            kind=ComputeKind.CLUSTER,
            state=ComputeState.RESIZING,
            vm_size=size,
            min_nodes=min_nodes,
            max_nodes=1,
        )
        for i in range(count)
    )


@pytest.mark.parametrize("count", [3, 25])
def test_sweep_with_nothing_to_do_costs_four_queries_however_many_computes(
    team, catalog, count, settings, workers
):
    workers.stop()  # this test plays the worker itself, step by step
    settings.HANGAR_DRIVER = "local"
    driver = driver_named("local")
    try:
        clusters = make_clusters(team, count, min_nodes=1)
        for cluster in clusters:
            assert reconcile(cluster.pk, driver).state == ComputeState.STEADY
        with CaptureQueriesContext(connection) as queries:
            report = sweep(driver)
        assert report.due == [] and report.strays_removed == []
        assert len(queries) == 4  # computes, nodes, job counts, due health checks

        # Drift is found in the same four queries: a node dies, a stray appears.
        victim = driver.list_nodes(clusters[0].pk)[0]
        driver.remove_node(victim.name)
        with CaptureQueriesContext(connection) as queries:
            report = sweep(driver)
        assert report.due == [clusters[0].pk]
        assert len(queries) == 4
    finally:
        remove_all_nodes()
