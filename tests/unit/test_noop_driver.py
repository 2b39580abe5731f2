"""The no-op driver keeps nodes and jobs as bookkeeping only: the scheduler runs on it
unchanged (the placement bench measures it), so it must take every call a driver takes."""

from __future__ import annotations

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.controllers.reconcile import reconcile
from compute.drivers import build_driver
from compute.models import Job, JobStatus, Node, NodeState, VmSize
from workspace.access import get_access


def test_jobs_placed_on_noop_nodes_complete(team, settings, django_capture_on_commit_callbacks):
    settings.HANGAR_DRIVER = "noop"
    driver = build_driver("noop", settings.HANGAR_SITE)
    access = get_access(team.admin, team.workspace.slug)
    with django_capture_on_commit_callbacks():
        cluster = actions.create_cluster(
            access,
            name="bookkeeping",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            min_nodes=2,
            max_nodes=2,
        )
        jobs = [
            submit_job(access, compute_id=cluster.pk, name=f"j{i}", command="true")
            for i in range(3)
        ]
    for _ in range(6):
        reconcile(cluster.pk, driver)
    assert Node.objects.filter(compute=cluster, state=NodeState.IDLE).count() == 2
    statuses = set(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", flat=True))
    assert statuses == {JobStatus.COMPLETED}
