"""The no-op driver keeps nodes and jobs as bookkeeping only: the scheduler runs on it
unchanged (the placement bench measures it), so it must take every call a driver takes."""

from __future__ import annotations

from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.controllers.reconcile import reconcile
from compute.drivers import build_driver
from compute.models import ComputeState, Job, JobStatus, Node, NodeState, VmSize
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


def test_an_instance_lives_its_whole_life_on_noop_bookkeeping(
    team, settings, django_capture_on_commit_callbacks
):
    """Create, stop, start, delete: the rows and the driver's own list agree at each step,
    so a bench on the no-op driver measures the real reconciler and leaves nothing."""
    settings.HANGAR_DRIVER = "noop"
    driver = build_driver("noop", settings.HANGAR_SITE)
    access = get_access(team.admin, team.workspace.slug)
    with django_capture_on_commit_callbacks():
        box = actions.create_instance(
            access, name="box", vm_size=VmSize.objects.get(name="Standard_DS3_v2")
        )
    reconcile(box.pk, driver)

    def listed() -> set[int]:
        return {o.node_id for o in driver.list_nodes(box.pk) if o.running}

    box.refresh_from_db()
    first = box.nodes.get(state=NodeState.IDLE)
    assert (box.state, listed()) == (ComputeState.RUNNING, {first.pk})
    for verb, state, nodes in (
        ("stop", ComputeState.STOPPED, 0),
        ("start", ComputeState.RUNNING, 1),
    ):
        with django_capture_on_commit_callbacks():
            actions.instance_verb(access, box.pk, verb)
        reconcile(box.pk, driver)
        box.refresh_from_db()
        live = set(box.nodes.filter(state=NodeState.IDLE).values_list("pk", flat=True))
        assert (box.state, len(live), listed()) == (state, nodes, live), verb
    assert first.pk not in listed()  # a start brings a fresh node
    with django_capture_on_commit_callbacks():
        actions.delete_compute(access, box.pk)
    reconcile(box.pk, driver)
    box.refresh_from_db()
    assert box.state == ComputeState.DELETED and driver.list_nodes(box.pk) == []


def test_a_noop_cluster_scales_back_to_zero_and_forgets_its_nodes(
    team, settings, django_capture_on_commit_callbacks
):
    """After its jobs, a cluster with min 0 scales down on noop as on docker: the driver's
    list of another compute is untouched, and only that cluster's nodes are gone."""
    settings.HANGAR_DRIVER = "noop"
    driver = build_driver("noop", settings.HANGAR_SITE)
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    with django_capture_on_commit_callbacks():
        keeper = actions.create_cluster(access, name="keeper", vm_size=size, min_nodes=1)
        burst = actions.create_cluster(
            access, name="burst", vm_size=size, max_nodes=2, idle_seconds_before_scaledown=0
        )
        job = submit_job(access, compute_id=burst.pk, name="once", command="true")
    reconcile(keeper.pk, driver)
    for _ in range(4):
        reconcile(burst.pk, driver)
    assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    assert driver.list_nodes(burst.pk) == []
    assert not Node.objects.filter(compute=burst, state__in=("preparing", "idle", "running"))
    assert [o.compute_id for o in driver.list_nodes(keeper.pk)] == [keeper.pk]


def test_noop_is_for_the_bench_and_never_serves_production():
    """`make bench` starts its worker with HANGAR_DRIVER=noop under the test settings; a
    production site on it would show nodes up and jobs completed while nothing ran."""
    from cryptography.fernet import Fernet

    from tests.unit.test_settings import manage

    show = "from django.conf import settings; print(settings.HANGAR_DRIVER)"
    bench = manage(
        "shell", "-c", show, DJANGO_SETTINGS_MODULE="config.settings_test", HANGAR_DRIVER="noop"
    )
    assert bench.returncode == 0 and bench.stdout.split()[-1] == "noop", bench.stderr
    production = manage(
        "check",
        DJANGO_SETTINGS_MODULE="config.settings_production",
        SECRET_KEY=Fernet.generate_key().decode() + "-production-secret-key",
        HANGAR_SECRET_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="hangar.example.com",
        HANGAR_DRIVER="noop",
    )
    assert production.returncode != 0
    assert "HANGAR_DRIVER=noop starts nothing" in production.stderr
