"""Placement and collection, step by step on the no-op driver (every job it starts has
ended by the next look, with exit code 0), and collect's decisions on the driver's word
for each rank: as healthchecks tests the steps of `sendalerts` one by one."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils import timezone

from compute.actions import computes as actions
from compute.actions.jobs import cancel_job, submit_job
from compute.controllers import jobs as steps
from compute.controllers import placement
from compute.controllers.reconcile import reconcile
from compute.drivers.noop import NoopDriver
from compute.lib.jobfiles import RunState
from compute.models import (
    Compute,
    ComputeKind,
    ComputeState,
    Job,
    JobRun,
    JobStatus,
    Node,
    NodeState,
    VmSize,
)
from workspace.access import WorkspaceAccess, get_access

pytestmark = pytest.mark.django_db
J = JobStatus
RUNNING, EXITED_0 = RunState(started=True, exit_code=None), RunState(started=True, exit_code=0)
NOT_STARTED = RunState(started=False, exit_code=None)


@pytest.fixture
def driver(settings) -> NoopDriver:
    """A no-op driver of this test's own: `build_driver`'s is shared by the whole session."""
    settings.HANGAR_DRIVER = "noop"
    return NoopDriver(settings.HANGAR_SITE)


@pytest.fixture
def access(team) -> WorkspaceAccess:
    return get_access(team.admin, team.workspace.slug)


@pytest.fixture
def pool(access, driver) -> Compute:
    """A steady cluster of two idle nodes."""
    made = actions.create_cluster(
        access,
        name="pool",
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        min_nodes=2,
        max_nodes=2,
    )
    reconcile(made.pk, driver)
    made.refresh_from_db()
    assert made.state == ComputeState.STEADY
    assert Node.objects.filter(compute=made, state=NodeState.IDLE).count() == 2
    return made


def submit(access: WorkspaceAccess, pool: Compute, name: str, nodes: int = 1) -> Job:
    return submit_job(access, compute_id=pool.pk, name=name, command="true", node_count=nodes)


def status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


# Placement ---------------------------------------------------------------------------


def test_a_two_node_head_with_one_node_free_blocks_the_one_node_job_behind_it(access, pool, driver):
    busy = Node.objects.filter(compute=pool).order_by("index").first()
    Node.objects.filter(pk=busy.pk).update(state=NodeState.RUNNING)  # another job's
    big, small = submit(access, pool, "big", nodes=2), submit(access, pool, "small")

    report = steps.JobReport()
    placement.place(pool, driver, report, settings.HANGAR_NODE_IMAGE)
    assert report.placed == []
    assert (status(big), status(small)) == (J.QUEUED, J.QUEUED)

    Node.objects.filter(pk=busy.pk).update(state=NodeState.IDLE)  # that job ended
    placement.place(pool, driver, report, settings.HANGAR_NODE_IMAGE)
    assert report.placed == [big.pk]
    assert (status(big), status(small)) == (J.RUNNING, J.QUEUED)
    assert JobRun.objects.filter(job=big).count() == 2
    assert not Node.objects.filter(compute=pool, state=NodeState.IDLE).exists()


def test_assign_takes_the_queue_in_order_and_stops_at_the_first_job_that_does_not_fit():
    nodes = [Node(index=i) for i in range(3)]
    one, two, three, other = (
        Job(name=n, node_count=c) for n, c in zip("abcd", (1, 2, 3, 1), strict=True)
    )
    cluster, image = Compute(kind=ComputeKind.CLUSTER), "hangar/node:v2"
    placed, unplaced = placement.assign(cluster, image, [one, two, three, other], nodes)
    assert [(job.name, [n.index for n in taken]) for job, taken in placed] == [
        ("a", [0]),
        ("b", [1, 2]),
    ]
    assert unplaced is not None and (unplaced.job, unplaced.short) == (three, 3)
    assert placement.assign(cluster, image, [three, one], nodes[:2])[0] == []


def test_a_placement_raced_by_a_cancel_is_undone_whole(access, pool, driver):
    first, second = submit(access, pool, "first"), submit(access, pool, "second")
    free = placement.free_nodes(pool)
    image = settings.HANGAR_NODE_IMAGE
    assignments, _ = placement.assign(pool, image, placement.queue_head(pool, 10), free)
    cancel_job(access, second.pk)  # between the look and the claim
    assert placement.reserve(pool, settings.HANGAR_NODE_IMAGE, assignments, timezone.now()) is None
    assert (status(first), status(second)) == (J.QUEUED, J.CANCELED)
    assert Node.objects.filter(compute=pool, state=NodeState.IDLE).count() == 2
    assert not JobRun.objects.filter(job__in=[first, second]).exists()


# Collection: the decisions ------------------------------------------------------------


def job(state: str = J.RUNNING, canceled: bool = False, running_at: bool = True) -> Job:
    now = timezone.now()
    return Job(
        status=state,
        cancel_requested_at=now if canceled else None,
        running_at=now if running_at else None,
    )


def test_every_rank_exited_0_is_completed():
    assert steps.judge(job(), [EXITED_0, EXITED_0]) == steps.Verdict.END
    assert steps.how_it_ended(job(), [0, 0]) == (J.COMPLETED, 0, "")


def test_a_rank_exiting_non_zero_fails_the_job_naming_the_first_such_rank():
    exited_3 = RunState(started=True, exit_code=3)
    assert steps.judge(job(), [EXITED_0, exited_3]) == steps.Verdict.END
    assert steps.how_it_ended(job(), [0, 3, 7]) == (J.FAILED, 3, "Rank 1 exited with code 3.")


def test_a_canceled_job_is_stopped_while_a_rank_runs_then_ends_canceled():
    canceled = job(canceled=True)
    assert steps.judge(canceled, [EXITED_0, RUNNING]) == steps.Verdict.STOP
    assert steps.judge(canceled, [EXITED_0, EXITED_0]) == steps.Verdict.END
    assert steps.how_it_ended(canceled, [0, 137]) == (J.CANCELED, 137, "Canceled.")
    assert steps.how_it_ended(canceled, [0, 0]) == (J.CANCELED, 0, "Canceled.")


def test_a_preparing_job_started_on_its_nodes_is_shown_running_and_waited_for():
    preparing = job(J.PREPARING, running_at=False)
    assert steps.started_unseen(preparing, [], [RUNNING, NOT_STARTED])
    assert steps.judge(preparing, [RUNNING, NOT_STARTED]) == steps.Verdict.WAIT
    started = [JobRun(started_at=timezone.now())]
    assert not steps.started_unseen(job(), started, [RUNNING])  # its rows already say so
    assert steps.started_unseen(job(), [JobRun(started_at=None)], [RUNNING])  # not all of them


def test_a_preparing_job_with_no_rank_started_is_one_to_relaunch_if_lost():
    preparing = job(J.PREPARING, running_at=False)
    assert steps.judge(preparing, [NOT_STARTED, NOT_STARTED]) == steps.Verdict.RELAUNCH
    assert not steps.started_unseen(preparing, [], [NOT_STARTED, NOT_STARTED])
    assert steps.judge(preparing, []) == steps.Verdict.WAIT  # no runs: nothing to launch


# Collection on the no-op driver ------------------------------------------------------


def test_a_finished_job_is_collected_and_its_nodes_are_idle_again(access, pool, driver):
    done = submit(access, pool, "done", nodes=2)
    placement.place(pool, driver, steps.JobReport(), settings.HANGAR_NODE_IMAGE)
    report = steps.JobReport()
    steps.collect(pool, driver, report)
    done.refresh_from_db()
    assert report.finished == [done.pk]
    assert (done.status, done.exit_code, done.finished_at is not None) == (J.COMPLETED, 0, True)
    assert Node.objects.filter(compute=pool, state=NodeState.IDLE).count() == 2
    assert not JobRun.objects.filter(job=done, finished_at__isnull=True).exists()


def test_a_stale_ending_written_again_never_frees_a_node_running_the_next_job(access, pool, driver):
    """Two passes saw the same job end (the first's lease lapsed while it worked): the
    second writes its ending after the node took the next job, and must not free it."""
    first = submit(access, pool, "first")
    placement.place(pool, driver, steps.JobReport(), settings.HANGAR_NODE_IMAGE)
    first.refresh_from_db()
    stale = steps.Ending(first, J.COMPLETED, 0, "", list(first.runs.all()))
    steps.collect(pool, driver, steps.JobReport())  # the other pass: first ends, n-1 idle
    second = submit(access, pool, "second")
    placement.place(pool, driver, steps.JobReport(), settings.HANGAR_NODE_IMAGE)
    node = second.runs.get().node
    assert node.pk == stale.runs[0].node_id  # the next job took that very node
    steps.write_endings(pool, [stale], timezone.now())
    steps.free_nodes([run.node_id for run in stale.runs], timezone.now())
    assert Node.objects.get(pk=node.pk).state == NodeState.RUNNING
    assert status(second) == J.RUNNING


def test_a_job_started_by_a_worker_that_died_before_saying_so_shows_it_ran(access, pool, driver):
    late = submit(access, pool, "late")
    placement.place(pool, driver, steps.JobReport(), settings.HANGAR_NODE_IMAGE)
    # As if the placer died after starting it, before marking it running.
    Job.objects.filter(pk=late.pk).update(status=J.PREPARING, running_at=None)
    JobRun.objects.filter(job=late).update(started_at=None)
    steps.collect(pool, driver, steps.JobReport())
    late.refresh_from_db()
    assert late.status == J.COMPLETED
    assert late.running_at is not None and late.running_at <= late.finished_at
    assert not JobRun.objects.filter(job=late, started_at__isnull=True).exists()


def test_a_job_canceled_after_placing_but_before_launch_ends_without_starting(access, pool, driver):
    never = submit(access, pool, "never")
    queue, free = placement.queue_head(pool, 10), placement.free_nodes(pool)
    assignments, _ = placement.assign(pool, settings.HANGAR_NODE_IMAGE, queue, free)
    runs = placement.reserve(
        pool, settings.HANGAR_NODE_IMAGE, assignments, timezone.now()
    )  # the placer dies here
    cancel_job(access, never.pk)
    report = steps.JobReport()
    steps.collect(pool, driver, report)
    never.refresh_from_db()
    assert report.finished == [never.pk]
    assert (never.status, never.error) == (J.CANCELED, "Canceled by vision-admin.")
    assert not {run.key for run in runs} & driver.finished  # never started
    assert Node.objects.filter(compute=pool, state=NodeState.IDLE).count() == 2


def test_a_canceled_job_whose_ranks_exited_ends_canceled(access, pool, driver):
    stopped = submit(access, pool, "stopped")
    placement.place(pool, driver, steps.JobReport(), settings.HANGAR_NODE_IMAGE)
    cancel_job(access, stopped.pk)
    steps.collect(pool, driver, steps.JobReport())
    stopped.refresh_from_db()
    # Who canceled it stays on its page, as for a job canceled before it started.
    assert (stopped.status, stopped.exit_code, stopped.error) == (
        J.CANCELED,
        0,
        "Canceled by vision-admin.",
    )


def test_a_run_left_without_its_start_by_a_worker_killed_mid_write_gets_it(access, pool, driver):
    """mark_running writes the job's start, then its runs': a worker killed between the
    two left the job running with a run that never got one (the chaos test caught it)."""
    cut = submit(access, pool, "cut")
    placement.place(pool, driver, steps.JobReport(), settings.HANGAR_NODE_IMAGE)
    JobRun.objects.filter(job=cut).update(started_at=None)
    steps.collect(pool, driver, steps.JobReport())
    cut.refresh_from_db()
    assert cut.status == J.COMPLETED
    assert not JobRun.objects.filter(job=cut, started_at__isnull=True).exists()
