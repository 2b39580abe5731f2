"""The same job, unchanged, on a cluster, an instance, and the local computer."""

from __future__ import annotations

import docker
import pytest

from compute.actions import computes as actions
from compute.actions.jobs import Code, submit_job
from compute.drivers import hostproc, processes
from compute.lib import jobfiles
from compute.models import CodeKind, Compute, ComputeState, JobStatus, VmSize
from tests.integration.helpers import driver_named, wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SCRIPT = """echo "epochs=$EPOCHS rank=$RANK/$WORLD_SIZE"
echo "code: $(cat train.sh | wc -l) lines"
if (echo nope > train.sh) 2>/dev/null; then echo "code is writable"
else echo "code is read-only"; fi
"""


@pytest.mark.parametrize(
    ("driver", "kind"), [("docker", "cluster"), ("docker", "instance"), ("local", "cluster")]
)
def test_the_same_job_runs_unchanged_on_every_target(
    workers, catalog, node_image, settings, driver, kind
):
    settings.HANGAR_DRIVER = driver
    workers.get(driver)
    team = make_team(f"{driver}-{kind}")
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_D2s_v3")
    try:
        if kind == "cluster":
            target = actions.create_cluster(access, name="target", vm_size=size, max_nodes=1)
        else:
            target = actions.create_instance(access, name="target", vm_size=size)
        job = submit_job(
            access,
            compute_id=target.pk,
            name="portable",
            command="sh train.sh",
            environment={"EPOCHS": "3"},
            code=Code(CodeKind.SCRIPT, "train.sh", SCRIPT.encode()),
        )

        def done() -> bool:
            job.refresh_from_db()
            return job.status in (JobStatus.COMPLETED, JobStatus.FAILED)

        wait_for(done, timeout=30, what="job finished")
        assert job.status == JobStatus.COMPLETED, job.error
        run = job.runs.get()
        # Read-only everywhere: a local job runs as the unprivileged job user on a copy.
        output = jobfiles.read_output(run.key)
        assert output.startswith("epochs=3 rank=0/1\ncode: 4 lines\ncode is read-only\n")
        if kind == "instance":  # the state settles on the reconciler's next look
            wait_for(
                lambda: Compute.objects.get(pk=target.pk).state == ComputeState.RUNNING,
                timeout=10,
                what="instance running",
            )
    finally:
        remove_all_nodes()


@pytest.mark.parametrize("driver", ["docker", "local"])
def test_stopping_an_instance_cancels_its_job_and_leaves_no_process(
    workers, catalog, node_image, settings, driver
):
    settings.HANGAR_DRIVER = driver
    workers.get(driver)
    team = make_team(f"stop-{driver}")
    access = get_access(team.admin, team.workspace.slug)
    try:
        box = actions.create_instance(
            access, name="box", vm_size=VmSize.objects.get(name="Standard_D2s_v3")
        )
        # A child that ignores TERM: only the KILL that follows it ends the whole group.
        command = "(trap '' TERM; sleep 600) & sleep 600"
        job = submit_job(access, compute_id=box.pk, name="endless", command=command)

        def running() -> bool:
            job.refresh_from_db()
            run = job.runs.first()
            return job.status == JobStatus.RUNNING and run and jobfiles.read_run(run.key).started

        wait_for(running, timeout=30, what="job running")
        # A running job is lasting activity: no idle deadline while it runs.
        wait_for(
            lambda: Compute.objects.get(pk=box.pk).last_activity == "job endless started",
            timeout=10,
            what="activity recorded",
        )
        assert Compute.objects.get(pk=box.pk).idle_deadline is None
        run_key = job.runs.get().key
        if driver == "local":  # the count below sees the job's processes while it runs
            recorded = hostproc.run_identity(run_key)
            assert recorded is not None
            wait_for(lambda: len(processes.group_members(recorded)) >= 2, what="group counted")
        actions.instance_verb(access, box.pk, "stop")
        wait_for(lambda: Compute.objects.get(pk=box.pk).state == ComputeState.STOPPED, timeout=20)
        job.refresh_from_db()
        assert job.status == JobStatus.CANCELED and "instance stopping" in job.error.lower()
        if driver == "local":
            # The group the supervisor recorded, counted in /proc: its leader and any
            # member left behind (a child the job started), not a command-line marker.
            identity = hostproc.run_identity(run_key)
            assert identity is not None and identity.uid != 0
            wait_for(
                lambda: not processes.is_alive(identity) and not processes.group_members(identity),
                timeout=5,
                what="no process of the job's group left",
            )
        else:
            # The job's processes lived in the node's container: a stopped instance has
            # none (so none of the job's can be left), by the engine's word, not the rows'.
            container = job.runs.get().container
            with pytest.raises(docker.errors.NotFound):
                docker.from_env().containers.get(container)
            assert not driver_named("docker").list_nodes(box.pk)
    finally:
        remove_all_nodes()
