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
from typing import cast

from django.conf import settings
from django.utils import timezone

from compute import quota
from compute.controllers import containers, lease, placement
from compute.controllers import jobs as job_steps
from compute.controllers.attached import AttachedPass
from compute.drivers import Driver, DriverUnavailable, NodeObservation, NodeSpec, NodeStartError
from compute.drivers import get_driver as default_driver
from compute.lib import secrets
from compute.models import Compute, ComputeSample, ComputeState, Job, JobStatus, Node, NodeState
from compute.models.events import EventVerb, record
from compute.models.idle import is_busy, record_activity, refresh_deadline
from compute.models.states import (
    GOING_AWAY,
    LIVE_NODE_STATES,
    NODE_UP,
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
            Compute.objects.select_related("workspace", "vm_size", "attachment")
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


class Pass:
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
        if compute.state == S.FAILED:
            self.outcome.state = compute.state
            return False
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
            nodes = self.release_preempted(observed, nodes)
            self.remove_strays(strays, nodes)
            nodes = self.replace_dead(observed, nodes)
            job_steps.requeue_lost(compute, self.driver, self.lost, self.outcome.jobs)
            if compute.state in GOING_AWAY:
                job_steps.cancel_dropped(compute, self.why_removed().capitalize() + ".")
            job_steps.collect(compute, self.driver, self.outcome.jobs)
            nodes = self.remove_leaving(observed, nodes)
            nodes = self.scale(nodes)
            self.start_preparing(observed, nodes)
            if compute.state in PLACES_JOBS:
                placement.place(compute, self.driver, self.outcome.jobs)
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

    # Node steps ----------------------------------------------------------------------

    def release_preempted(
        self, observed: dict[int, NodeObservation], nodes: list[Node]
    ) -> list[Node]:
        """A preempted node's container goes; its jobs are requeued by the job step."""
        kept = []
        for node in nodes:
            if node.state != NodeState.PREEMPTED:
                kept.append(node)
                continue
            observation = observed.pop(node.pk, None)
            if observation is not None:
                self.driver.remove_node(observation.name)
            Node.objects.filter(pk=node.pk).update(ended_at=timezone.now())
            self.lost[node.pk] = f"node {node.name} was preempted"
            record(
                self.compute,
                EventVerb.NODE_PREEMPTED,
                f"Node {node.name} was preempted; its container is gone.",
                level="warning",
            )
        return kept

    def remove_strays(self, strays: list[NodeObservation], nodes: list[Node]) -> None:
        """Containers of this compute that are no node's: left over from a crash or a
        removed node, or a look-alike wearing a node's labels (never taken for the node)."""
        names = {node.pk: node.name for node in nodes}
        for observation in strays:
            self.driver.remove_node(observation.name)
            self.outcome.orphans.append(observation.name)
            if observation.node_id in names:
                why = (
                    f"it carries the labels of node {names[observation.node_id]} but is not "
                    "that node's container"
                )
            else:
                why = "no node of this compute expects it (left over from a crash or removed node)"
            record(
                self.compute,
                EventVerb.ORPHAN_REMOVED,
                f"Removed container {observation.name}: {why}.",
                level="warning",
            )

    def replace_dead(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> list[Node]:
        """A started node whose container is gone or stopped is unusable; a new one replaces it."""
        alive = []
        for node in nodes:
            observation = observed.get(node.pk)
            started = node.state in NODE_UP
            if started and (observation is None or not observation.running):
                what = (
                    "container is gone"
                    if observation is None
                    else f"container {observation.describe}"
                )
                if Node.objects.filter(pk=node.pk, state=node.state).update(
                    state=NodeState.UNUSABLE, error=what, ended_at=timezone.now()
                ):
                    if observation is not None:
                        self.driver.remove_node(observation.name)
                    self.outcome.replaced.append(node.name)
                    self.lost[node.pk] = f"node {node.name}'s {what}"
                    record(
                        self.compute,
                        EventVerb.NODE_UNUSABLE,
                        f"Node {node.name} is unusable: its {what}. A new node replaces it.",
                        level="warning",
                    )
                continue
            alive.append(node)
        return alive

    def remove_leaving(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> list[Node]:
        staying = []
        for node in nodes:
            if node.state != NodeState.LEAVING:
                staying.append(node)
                continue
            self.remove(node, observed.get(node.pk), self.why_removed())
        return staying

    def remove(self, node: Node, observation: NodeObservation | None, why: str) -> None:
        name = observation.name if observation else self.spec(node).container_name
        self.driver.remove_node(name)
        Node.objects.filter(pk=node.pk).delete()
        self.outcome.removed.append(node.name)
        record(self.compute, EventVerb.NODE_REMOVED, f"Node {node.name} removed: {why}.")
        self.keep_lease()

    def why_removed(self) -> str:
        return {
            S.STOPPING: "instance stopping",
            S.RESTARTING: "instance restarting",
            S.DELETING: f"{self.compute.get_kind_display().lower()} deleting",
        }.get(cast(S, self.compute.state), f"min nodes is {self.compute.min_nodes}")

    def scale(self, nodes: list[Node]) -> list[Node]:
        """Instances keep one node while they run; clusters follow the autoscaler."""
        compute = self.compute
        nodes = [n for n in nodes if n.state in LIVE_NODE_STATES]
        going_away = compute.state in GOING_AWAY
        if going_away or compute.is_instance:
            desired = compute.desired_node_count()
            for node in list(reversed(nodes))[: max(0, len(nodes) - desired)]:
                if going_away or node.state != NodeState.RUNNING:
                    self.remove(node, None, self.why_removed())
                    nodes.remove(node)
            if len(nodes) < desired:
                nodes += self.add_nodes(desired - len(nodes), "instance starting")
            return nodes
        return self.autoscale(nodes)

    def autoscale(self, nodes: list[Node]) -> list[Node]:
        compute = self.compute
        busy = sum(1 for n in nodes if n.state == NodeState.RUNNING)
        need, queued = job_steps.demand(compute)
        desired = compute.desired_node_count(busy, need)
        live = len(nodes)
        if live < desired:
            if need:
                jobs = "job" if queued == 1 else "jobs"
                reason = f"{queued} {jobs} queued need {need} node(s), {busy} busy"
            else:
                reason = f"min nodes is {compute.min_nodes}"
            fit, first, cores = quota.claim_nodes(compute, desired - live)
            if fit < desired - live:
                self.note(
                    EventVerb.SCALING_HELD,
                    f"Not scaling to {desired}: {cores.message}"
                    + (f" Scaling to {live + fit} instead." if fit else ""),
                )
            if not fit:
                return nodes
            if fit == desired - live:
                message = f"Scaled {live} → {desired}: {reason} (max {compute.max_nodes})."
                self.note(EventVerb.SCALED_UP, message, force=True)
            return nodes + self.announce_nodes(first, fit, reason)
        if live > desired:
            nodes = self.scale_down(nodes, live - desired)
        elif need and live >= compute.max_nodes and need > live - busy:
            waiting = "job waits" if queued == 1 else "jobs wait"
            self.note(
                EventVerb.SCALING_HELD,
                f"Not scaling: at max_nodes ({compute.max_nodes}); {queued} {waiting}.",
            )
        return nodes

    def scale_down(self, nodes: list[Node], surplus: int) -> list[Node]:
        """Remove idle nodes past their idle deadline (or above max): never a busy one."""
        compute = self.compute
        now = timezone.now()
        above_max = max(0, len(nodes) - compute.max_nodes)
        idle = sorted(
            (n for n in nodes if n.state == NodeState.IDLE),
            key=lambda n: n.last_busy_at or n.created_at,
        )
        for node in idle[:surplus]:
            idle_for = (now - (node.last_busy_at or node.created_at)).total_seconds()
            if above_max > 0:
                why = f"above max_nodes ({compute.max_nodes})"
                above_max -= 1
            elif idle_for >= compute.idle_seconds_before_scaledown:
                why = f"idle {idle_for:.0f} s ≥ {compute.idle_seconds_before_scaledown} s"
            else:
                continue
            if Node.objects.filter(pk=node.pk, state=NodeState.IDLE).update(
                state=NodeState.LEAVING
            ):
                self.remove(node, None, why)
                nodes.remove(node)
        return nodes

    def note(self, verb: EventVerb, message: str, force: bool = False) -> None:
        """An autoscaler decision, written once while it stands."""
        if force or message != self.compute.autoscale_note:
            Compute.objects.filter(pk=self.compute.pk).update(autoscale_note=message)
            self.compute.autoscale_note = message
            record(self.compute, verb, message)

    def add_nodes(self, count: int, reason: str) -> list[Node]:
        """Nodes outside the autoscaler (an instance's one): its quota was taken on start."""
        return self.announce_nodes(self.compute.add_node_rows(count), count, reason)

    def announce_nodes(self, first: int, count: int, reason: str) -> list[Node]:
        """Record the new rows and hand them on for their containers."""
        names = ", ".join(f"n-{i}" for i in range(first, first + count))
        record(self.compute, EventVerb.NODE_ADDED, f"Adding {names} ({reason}).")
        return list(Node.objects.filter(compute=self.compute, index__gte=first).order_by("index"))

    def start_preparing(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> None:
        for node in nodes:
            if node.state != NodeState.PREPARING:
                continue
            observation = self.driver.ensure_node(self.spec(node, with_secrets=True))
            now = timezone.now()
            if Node.objects.filter(pk=node.pk, state=NodeState.PREPARING).update(
                state=NodeState.IDLE,
                container_ref=observation.ref,
                started_at=now,
                last_busy_at=now,
            ):
                self.outcome.created.append(node.name)
                adopted = (
                    " (adopted the container a previous attempt made)"
                    if node.pk in observed
                    else ""
                )
                record(
                    self.compute, EventVerb.NODE_READY, f"Node {node.name} is up and idle{adopted}."
                )
            self.keep_lease()

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

    def spec(self, node: Node, with_secrets: bool = False) -> NodeSpec:
        """`with_secrets`: the instance's secret variables too, decrypted here in the worker
        for the node's environment (its setup script and its jobs read them); only the
        start of a node needs them, a removal needs the name alone."""
        size = self.compute.vm_size
        assert size is not None  # only attached computes have no size, and they have no nodes
        environment = {
            "HANGAR_COMPUTE": self.compute.name,
            "HANGAR_NODE": node.name,
            "HANGAR_VM_SIZE": size.name,
        }
        if with_secrets and self.compute.is_instance and self.compute.secret_environment:
            try:
                hidden = secrets.decrypt_variables(self.compute.secret_environment)
            except secrets.SecretUnreadable as exc:
                raise NodeStartError(str(exc)) from None
            environment = {**hidden, **environment}
        if self.compute.setup_script:
            environment["HANGAR_SETUP_SCRIPT"] = self.compute.setup_script
        return NodeSpec(
            site=settings.HANGAR_SITE,
            workspace=self.compute.workspace.slug,
            compute_id=self.compute.pk,
            node_id=node.pk,
            node_name=node.name,
            image=settings.HANGAR_NODE_IMAGE,
            cpus=size.vcpus * settings.HANGAR_CPU_SCALE,
            memory_bytes=int(float(size.memory_gib) * settings.HANGAR_MEMORY_SCALE * GIB),
            network=settings.HANGAR_NODE_NETWORK,
            command=node_command(self.compute.setup_script),
            environment=environment,
            pids_limit=settings.HANGAR_NODE_PIDS_LIMIT,
            tmp_mb=settings.HANGAR_NODE_TMP_MB,
        )

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


# The setup script arrives in an environment variable (never interpolated into the shell
# line), runs once in the node's working folder, and leaves setup.log and setup.exit there.
SETUP_THEN_WAIT = (
    'printf "%s\\n" "$HANGAR_SETUP_SCRIPT" > setup.sh; sh setup.sh > setup.log 2>&1; '
    'echo $? > setup.exit; exec "$@"'
)


def node_command(setup_script: str) -> tuple[str, ...]:
    wait = tuple(settings.HANGAR_NODE_COMMAND)
    if not setup_script:
        return wait
    return ("sh", "-c", SETUP_THEN_WAIT, "hangar-setup", *wait)


class LostLease(Exception):
    """Another reconciler took over (ours expired): stop acting, it will finish."""
