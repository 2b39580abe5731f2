"""The sweep's steps, each asked one question with the clock under control (time-machine),
on the no-op driver: as healthchecks tests the steps of `sendalerts` one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from compute import enqueue
from compute.actions import computes as actions
from compute.actions.jobs import submit_job
from compute.controllers import sweep as steps
from compute.controllers.reconcile import reconcile
from compute.drivers.noop import NoopDriver
from compute.models import Compute, ComputeState, Job, JobStatus, Node, NodeState, VmSize
from workspace.access import WorkspaceAccess, get_access

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
IDLE_SECONDS = 120
DEADLINE_REASON = "an idle node reached its scale-down deadline"


@pytest.fixture
def driver(settings) -> NoopDriver:
    """A no-op driver of this test's own: `build_driver`'s is shared by the whole session,
    and containers an earlier test left in it would be strays here."""
    settings.HANGAR_DRIVER = "noop"
    return NoopDriver(settings.HANGAR_SITE)


@pytest.fixture
def access(team) -> WorkspaceAccess:
    return get_access(team.admin, team.workspace.slug)


def cluster(access: WorkspaceAccess, **bounds: int) -> Compute:
    return actions.create_cluster(
        access, name="pool", vm_size=VmSize.objects.get(name="Standard_DS3_v2"), **bounds
    )


@pytest.fixture
def idle_since_t0(access, driver) -> Compute:
    """A scale-from-zero cluster whose one node ran a job that ended at T0: idle since."""
    with time_machine.travel(T0, tick=False):
        pool = cluster(access, min_nodes=0, max_nodes=1, idle_seconds_before_scaledown=IDLE_SECONDS)
        job = submit_job(access, compute_id=pool.pk, name="train", command="true")
        reconcile(pool.pk, driver)  # scales up and places the job
        reconcile(pool.pk, driver)  # collects it: the no-op driver ends every job at once
    assert Job.objects.get(pk=job.pk).status == JobStatus.COMPLETED
    node = Node.objects.get(compute=pool)
    assert (node.state, node.last_busy_at) == (NodeState.IDLE, T0)
    return pool


def why_due_at(moment: datetime, compute: Compute) -> str:
    """The decision step alone, on the rows the sweep reads."""
    row = next(r for r in steps.live_computes() if r.pk == compute.pk)
    nodes = [n for n in steps.live_nodes(moment) if n.compute_id == compute.pk]
    return steps.why_due(row, nodes, steps.computes_with_unfinished_jobs(), set())


def sweep_at(moment: datetime, driver: NoopDriver) -> steps.SweepReport:
    with time_machine.travel(moment, tick=False):
        return steps.sweep(driver)


def test_an_idle_node_reaches_its_scale_down_deadline_at_idle_seconds_not_one_before(
    idle_since_t0,
):
    just_before = T0 + timedelta(seconds=IDLE_SECONDS - 1)
    assert why_due_at(just_before, idle_since_t0) == ""
    assert why_due_at(T0 + timedelta(seconds=IDLE_SECONDS), idle_since_t0) == DEADLINE_REASON


@pytest.mark.parametrize("ended_at", [T0 + timedelta(microseconds=250_500), T0])
def test_the_deadline_is_read_in_sql_to_the_millisecond_with_or_without_a_fraction(
    idle_since_t0, ended_at
):
    """The query decides "idle long enough" (no timestamp is loaded): a job that ended at
    a fraction of a second, or on the second, is due `IDLE_SECONDS` later, not 10 ms
    before (SQLite keeps the two as differently shaped text)."""
    Node.objects.filter(compute=idle_since_t0).update(last_busy_at=ended_at)
    deadline = ended_at + timedelta(seconds=IDLE_SECONDS)
    assert why_due_at(deadline - timedelta(milliseconds=10), idle_since_t0) == ""
    assert why_due_at(deadline, idle_since_t0) == DEADLINE_REASON
    assert why_due_at(deadline + timedelta(microseconds=1), idle_since_t0) == DEADLINE_REASON


def test_the_sweep_sends_the_cluster_to_scale_down_at_its_deadline(idle_since_t0, driver):
    assert sweep_at(T0 + timedelta(seconds=IDLE_SECONDS - 1), driver).due == []
    report = sweep_at(T0 + timedelta(seconds=IDLE_SECONDS), driver)
    assert report.due == [idle_since_t0.pk]
    assert report.reasons == {idle_since_t0.pk: DEADLINE_REASON}
    # What the sweep sent it for is what the reconcile then does: the node goes.
    with time_machine.travel(T0 + timedelta(seconds=IDLE_SECONDS), tick=False):
        reconcile(idle_since_t0.pk, driver)
    assert not Node.objects.filter(compute=idle_since_t0, state__in=steps.LIVE_NODE_STATES)
    assert driver.list_nodes(idle_since_t0.pk) == []


def test_a_busy_node_is_never_due_for_scale_down_however_long_it_runs(idle_since_t0):
    Node.objects.filter(compute=idle_since_t0).update(state=NodeState.RUNNING)
    a_day_later = T0 + timedelta(days=1)
    # Running with no job on it (an ended job's release failed): due to be collected and
    # freed, never to be scaled down while it runs.
    assert why_due_at(a_day_later, idle_since_t0) == "jobs to place or collect"


def test_a_node_whose_container_vanished_makes_its_compute_due(idle_since_t0, driver):
    (container,) = driver.list_nodes(idle_since_t0.pk)
    driver.remove_node(container.name)  # behind Hangar's back
    report = sweep_at(T0 + timedelta(seconds=1), driver)
    assert report.reasons == {idle_since_t0.pk: "a node's container is gone or stopped"}


def test_queued_jobs_and_stalled_transitions_are_due_and_a_failed_compute_is_not(access):
    pool = cluster(access, min_nodes=0, max_nodes=1)
    with_jobs = {pool.pk}
    row = next(r for r in steps.live_computes() if r.pk == pool.pk)
    assert steps.why_due(row, [], set(), set()) == "creating in progress"

    steady = row._replace(state=ComputeState.STEADY)
    assert steps.why_due(steady, [], set(), set()) == ""
    assert steps.why_due(steady, [], with_jobs, set()) == "jobs to place or collect"

    failed = row._replace(state=ComputeState.FAILED)
    assert steps.why_due(failed, [], with_jobs, set()) == ""


def test_a_cluster_below_its_minimum_is_due_at_once(access):
    pool = cluster(access, min_nodes=2, max_nodes=2)
    Compute.objects.filter(pk=pool.pk).update(state=ComputeState.STEADY)
    (row,) = [r for r in steps.live_computes() if r.pk == pool.pk]
    assert steps.why_due(row, [], set(), set()) == "node count differs from desired"


def test_a_node_whose_start_was_put_off_is_due_in_a_steady_cluster(idle_since_t0):
    # The driver was unavailable when the pass came to start it: the count is as desired,
    # and only this brings a pass back to start it.
    Node.objects.filter(compute=idle_since_t0).update(state=NodeState.PREPARING)
    Compute.objects.filter(pk=idle_since_t0.pk).update(state=ComputeState.STEADY)
    assert why_due_at(T0 + timedelta(seconds=1), idle_since_t0) == "a node to start"


class CreatesAComputeWhileListed(NoopDriver):
    """Another worker creates a cluster and starts its first node at the very moment this
    sweep lists containers (the no-op driver, with that interleaving made certain)."""

    def __init__(self, site: str, access: WorkspaceAccess) -> None:
        super().__init__(site)
        self.access = access
        self.made: Compute | None = None

    def list_nodes(self, compute_id: int | None = None) -> list:
        if self.made is None:
            self.made = cluster(self.access, min_nodes=1, max_nodes=1)
            reconcile(self.made.pk, self)  # its node row, then its container
        return super().list_nodes(compute_id)


def test_a_compute_born_while_the_sweep_looks_keeps_its_first_node(access, settings):
    driver = CreatesAComputeWhileListed(settings.HANGAR_SITE, access)
    report = steps.sweep(driver)
    assert driver.made is not None
    assert report.strays_removed == []
    assert [o.compute_id for o in driver.list_nodes()] == [driver.made.pk]


@pytest.mark.parametrize(("due", "most"), [(0, 20), (3, 20), (20, 20), (21, 20), (5000, 20)])
def test_the_hand_out_deals_due_computes_into_at_most_so_many_even_batches(due, most):
    batches = enqueue.deal(list(range(due)), most)
    assert len(batches) == min(due, most)
    assert sorted(pk for batch in batches for pk in batch) == list(range(due))  # each once
    assert max(map(len, batches), default=0) - min(map(len, batches), default=0) <= 1


@pytest.mark.parametrize("left", ["stray container", "dead node"])
def test_a_failed_compute_is_handed_out_once_for_what_it_left_not_every_second(
    access, driver, left
):
    """A stray container, or a node whose container died, of a failed compute: its pass
    removes the stray (or writes the node off) instead of returning at once, so the next
    sweep has nothing to hand it again."""
    pool = cluster(access, min_nodes=1, max_nodes=1)
    reconcile(pool.pk, driver)
    node = Node.objects.get(compute=pool)
    Compute.objects.filter(pk=pool.pk).update(state=ComputeState.FAILED, last_error="broke")
    name = next(iter(driver.nodes))
    if left == "stray container":
        Node.objects.filter(pk=node.pk).update(state=NodeState.UNUSABLE, ended_at=T0)
    else:
        driver.nodes.pop(name)  # the container died
    assert pool.pk in steps.sweep(driver).due
    reconcile(pool.pk, driver)
    assert pool.pk not in steps.sweep(driver).due
    assert not driver.nodes
    assert Compute.objects.get(pk=pool.pk).state == ComputeState.FAILED
