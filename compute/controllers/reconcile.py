"""The reconciler: make one compute's nodes and jobs match what its state asks for.

Level-triggered: it reads the desired state from the database, observes the containers
through the driver, and closes the difference. Running it twice, concurrently (the lease
turns the second away) or after a crash does no harm: node rows are written before their
containers, and containers have deterministic names, so a half-done step is adopted; job
output and exit codes are files on disk, collected whenever a pass comes by.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone

from compute.controllers import containers, job_images, lease, placement
from compute.controllers import jobs as job_steps
from compute.controllers.attached import AttachedPass
from compute.controllers.hosts import current_driver as default_driver
from compute.controllers.nodes import NodeSteps
from compute.drivers import Driver, DriverUnavailable, NodeObservation, NodeStartError
from compute.models import Compute, ComputeSample, ComputeState, Job, JobStatus, Node, NodeState
from compute.models.events import EventVerb, record
from compute.models.idle import is_busy, record_activity, refresh_deadline
from compute.models.states import (
    GOING_AWAY,
    LIVE_NODE_STATES,
    NODE_WITH_CONTAINER,
    PLACES_JOBS,
    SETTLES_WITHIN_BOUNDS,
)

log = logging.getLogger(__name__)
GIB = 1024**3
S = ComputeState
MAX_PASSES = 3

# Where a transitional state goes once the nodes match.
SETTLES_TO: dict[str, dict[str, ComputeState]] = {
    S.CREATING: {"instance": S.RUNNING, "cluster": S.STEADY},
    S.STARTING: {"instance": S.RUNNING},
    S.RESTARTING: {"instance": S.RUNNING},
    S.RESIZING: {"cluster": S.STEADY},
    S.STOPPING: {"instance": S.STOPPED},
    S.DELETING: {"instance": S.DELETED, "cluster": S.DELETED},
}
# The event of each state a compute settles in.
SETTLED: dict[str, EventVerb] = {
    S.RUNNING: EventVerb.REACHED_RUNNING,
    S.STOPPED: EventVerb.REACHED_STOPPED,
    S.STEADY: EventVerb.REACHED_STEADY,
    S.DELETED: EventVerb.DELETED,
}


@dataclass
class Outcome:
    """What one reconcile did: returned for tests and logs."""

    compute_id: int
    skipped: bool = False
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    jobs: job_steps.JobReport = field(default_factory=job_steps.JobReport)
    state: str = ""
    error: str = ""


def reconcile(compute_id: int, driver: Driver | None = None) -> Outcome:
    driver = driver or default_driver()
    owner = lease.new_owner()
    outcome = Outcome(compute_id)
    for _ in range(MAX_PASSES):
        if not lease.take(compute_id, owner):
            # Ask the holder to look once more. It may be letting go at this very moment,
            # after its last look at the flag: then the hold is free now, so try again.
            Compute.objects.filter(pk=compute_id).update(rerun_requested=True)
            if not lease.take(compute_id, owner):
                outcome.skipped = True
                return outcome
        try:
            with lease.kept(compute_id, owner):
                if not run_passes(compute_id, driver, owner, outcome):
                    return outcome
        finally:
            lease.release(compute_id, owner)
        # Asked for after our last look but before we let go: nobody else would come.
        if not Compute.objects.filter(pk=compute_id, rerun_requested=True).exists():
            return outcome
    return outcome


def run_passes(compute_id: int, driver: Driver, owner: str, outcome: Outcome) -> bool:
    """Passes until the state stops moving; False if the compute is gone."""
    passes = 0
    while passes < MAX_PASSES * 3:
        passes += 1
        compute = (
            Compute.objects.select_related("workspace", "vm_size", "attachment", "environment")
            .filter(pk=compute_id)
            .first()
        )
        if compute is None:
            return False
        if compute.is_attached:
            moved = AttachedPass(compute, outcome).run()
        else:
            moved = Pass(compute, driver, owner, outcome).run()
        asked = Compute.objects.filter(pk=compute_id, rerun_requested=True).update(
            rerun_requested=False
        )
        if not moved and not asked:
            break
    return True


class Pass(NodeSteps):
    """One look at the world and the steps that follow from it."""

    def __init__(self, compute: Compute, driver: Driver, owner: str, outcome: Outcome) -> None:
        self.compute = compute
        self.driver = driver
        self.owner = owner
        self.outcome = outcome
        self.lost: dict[int, str] = {}  # node id -> why its jobs must move

    def run(self) -> bool:
        """Returns True if the state moved and another pass should look again."""
        compute = self.compute
        started_state = compute.state
        try:
            nodes = list(
                compute.nodes.filter(
                    state__in=NODE_WITH_CONTAINER,
                    ended_at__isnull=True,
                ).order_by("index")
            )
            observed, strays = containers.match(
                settings.HANGAR_SITE,
                self.driver.list_nodes(compute.pk),
                [containers.NodeRef(n.pk, compute.pk, n.container_ref) for n in nodes],
            )
            if compute.state == S.FAILED:
                # Nothing starts on a failed compute, but what the sweep hands it must go:
                # a stray container, or a node whose container died (else it comes back
                # every second).
                self.remove_strays(strays, nodes)
                self.replace_dead(observed, nodes)
                self.outcome.state = compute.state
                return False
            nodes = self.release_preempted(observed, nodes)
            self.remove_strays(strays, nodes)
            nodes = self.replace_dead(observed, nodes)
            job_steps.requeue_lost(compute, self.driver, self.lost, self.outcome.jobs)
            if compute.state in GOING_AWAY:
                job_steps.cancel_dropped(compute, self.why_removed().capitalize() + ".")
            job_steps.collect(compute, self.driver, self.outcome.jobs)
            nodes = self.remove_leaving(observed, nodes)
            if compute.is_cluster:
                job_images.check_waiting(compute)
            nodes = self.scale(nodes)
            self.start_preparing(observed, nodes)
            if compute.state in PLACES_JOBS:
                self.place(observed)
        except DriverUnavailable as exc:
            self.set_error(f"{exc}. Hangar retries automatically; nothing is lost.")
            return False
        except NodeStartError as exc:
            self.fail(str(exc))
            return False
        except LostLease:
            return False
        self.settle()
        if compute.is_cluster:
            self.sample()
        self.outcome.state = self.compute.state
        return self.compute.state != started_state and self.compute.state in SETTLES_TO

    def place(self, observed: dict[int, NodeObservation]) -> None:
        """Queued jobs onto idle nodes; if the head of the queue runs another image than
        the idle nodes, nodes of its image are added (idle ones of other images making way
        at max_nodes) and start in this same pass."""
        compute = self.compute
        unplaced = placement.place(compute, self.driver, self.outcome.jobs, self.default_tag())
        if self.make_room(unplaced):
            nodes = list(compute.nodes.filter(state__in=LIVE_NODE_STATES).order_by("index"))
            self.start_preparing(observed, nodes)
            placement.place(compute, self.driver, self.outcome.jobs, self.default_tag())

    # State ---------------------------------------------------------------------------

    def settle(self) -> None:
        compute = self.compute
        target = SETTLES_TO.get(compute.state, {}).get(compute.kind)
        live = list(compute.nodes.filter(state__in=LIVE_NODE_STATES))
        ready = all(n.state != NodeState.PREPARING for n in live)
        if compute.state == S.DELETING:
            converged = not live and not self.driver.list_nodes(compute.pk)
        elif compute.is_cluster and compute.state in SETTLES_WITHIN_BOUNDS:
            converged = ready and compute.min_nodes <= len(live) <= compute.max_nodes
        else:
            converged = ready and len(live) == compute.desired_node_count()
        if not converged:
            return
        if compute.last_error:
            Compute.objects.filter(pk=compute.pk).update(last_error="")
            compute.last_error = ""
            record(compute, EventVerb.RECOVERED, "Recovered: the nodes match again.")
        if target and compute.transition(compute.state, target):
            record(compute, SETTLED[target], self.settled_message(target, len(live)))
            if target == S.RUNNING and is_busy(compute):
                refresh_deadline(compute)  # a job already runs: that is the activity
            elif target == S.RUNNING:
                record_activity(compute.pk, "instance started")

    def settled_message(self, state: ComputeState, nodes: int) -> str:
        compute = self.compute
        if state == S.STEADY:
            return f"Cluster steady at {nodes} node(s)."
        return {
            S.RUNNING: "Instance running.",
            S.STOPPED: "Instance stopped: it holds no node and costs nothing.",
            S.DELETED: f"{compute.get_kind_display()} deleted: every node is gone.",
        }[state]

    def sample(self) -> None:
        """A point for the cluster chart, whenever node count or queue length changed."""
        nodes = self.compute.nodes.filter(state__in=LIVE_NODE_STATES).count()
        queued = Job.objects.filter(compute=self.compute, status=JobStatus.QUEUED).count()
        last = self.compute.samples.order_by("-at").values_list("nodes", "queued").first()
        if last != (nodes, queued):
            ComputeSample.objects.create(compute=self.compute, nodes=nodes, queued=queued)

    # Helpers -------------------------------------------------------------------------

    def keep_lease(self) -> None:
        if not lease.renew(self.compute.pk, self.owner):
            raise LostLease

    def set_error(self, message: str) -> None:
        if self.compute.last_error != message:
            Compute.objects.filter(pk=self.compute.pk).update(last_error=message)
            self.compute.last_error = message
            record(self.compute, EventVerb.ERRORED, message, level="error")
        self.outcome.error = message

    def fail(self, message: str) -> None:
        compute = self.compute
        Node.objects.filter(compute=compute, state=NodeState.PREPARING).update(
            state=NodeState.UNUSABLE, error=message, ended_at=timezone.now()
        )
        if compute.can_move(S.FAILED) and compute.transition(
            compute.state, S.FAILED, last_error=message
        ):
            record(compute, EventVerb.FAILED, f"Failed: {message}", level="error")
        self.outcome.error = message
        self.outcome.state = compute.state


class LostLease(Exception):
    """Another reconciler took over (ours expired): stop acting, it will finish."""
