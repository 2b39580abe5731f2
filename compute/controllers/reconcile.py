"""The reconciler: make one compute's nodes match what its state asks for.

Level-triggered: it reads the desired state from the database, observes the containers
through the driver, and closes the difference. Running it twice, concurrently (the lease
turns the second away) or after a crash does no harm: node rows are written before their
containers, and containers have deterministic names, so a half-done step is adopted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from compute.controllers import lease
from compute.drivers import Driver, DriverUnavailable, NodeObservation, NodeSpec, NodeStartError
from compute.drivers import get_driver as default_driver
from compute.events import record
from compute.models import Compute, ComputeState, Node, NodeState
from compute.models.states import LIVE_NODE_STATES

log = logging.getLogger(__name__)
GIB = 1024**3
S = ComputeState
MAX_PASSES = 3

# Where a transitional state goes once the nodes match.
SETTLES_TO = {
    S.CREATING: {"instance": S.RUNNING, "cluster": S.STEADY},
    S.STARTING: {"instance": S.RUNNING},
    S.RESTARTING: {"instance": S.RUNNING},
    S.RESIZING: {"cluster": S.STEADY},
    S.STOPPING: {"instance": S.STOPPED},
    S.DELETING: {"instance": S.DELETED, "cluster": S.DELETED},
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
    state: str = ""
    error: str = ""


def reconcile(compute_id: int, driver: Driver | None = None) -> Outcome:
    driver = driver or default_driver()
    owner = lease.new_owner()
    if not lease.take(compute_id, owner):
        return Outcome(compute_id, skipped=True)
    try:
        outcome = Outcome(compute_id)
        for _ in range(MAX_PASSES):
            compute = (
                Compute.objects.select_related("workspace", "vm_size").filter(pk=compute_id).first()
            )
            if compute is None:
                return outcome
            if not Pass(compute, driver, owner, outcome).run():
                break
        return outcome
    finally:
        lease.release(compute_id, owner)


class Pass:
    """One look at the world and the steps that follow from it."""

    def __init__(self, compute: Compute, driver: Driver, owner: str, outcome: Outcome) -> None:
        self.compute = compute
        self.driver = driver
        self.owner = owner
        self.outcome = outcome

    def run(self) -> bool:
        """Returns True if the state moved and another pass should look again."""
        compute = self.compute
        started_state = compute.state
        if compute.state == S.FAILED:
            self.outcome.state = compute.state
            return False
        try:
            observed = {o.node_id: o for o in self.driver.list_nodes(compute.pk)}
            nodes = list(
                compute.nodes.filter(state__in=(*LIVE_NODE_STATES, NodeState.LEAVING)).order_by(
                    "index"
                )
            )
            self.remove_orphans(observed, nodes)
            nodes = self.replace_dead(observed, nodes)
            nodes = self.remove_leaving(observed, nodes)
            nodes = self.scale(nodes)
            self.start_preparing(observed, nodes)
        except DriverUnavailable as exc:
            self.set_error(f"{exc}. Hangar retries automatically; nothing is lost.")
            return False
        except NodeStartError as exc:
            self.fail(str(exc))
            return False
        except LostLease:
            return False
        self.settle()
        self.outcome.state = self.compute.state
        return self.compute.state != started_state and self.compute.state in SETTLES_TO

    # Steps ---------------------------------------------------------------------------

    def remove_orphans(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> None:
        expected = {node.pk for node in nodes}
        for node_id, observation in observed.items():
            if node_id not in expected:
                self.driver.remove_node(observation.name)
                self.outcome.orphans.append(observation.name)
                record(
                    self.compute,
                    "node.orphan_removed",
                    f"Removed container {observation.name}: no node of {self.compute.name} "
                    "expects it (left over from a crash or removed node).",
                    level="warning",
                )

    def replace_dead(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> list[Node]:
        """A started node whose container is gone or stopped is unusable; a new one replaces it."""
        alive = []
        for node in nodes:
            observation = observed.get(node.pk)
            started = node.state in (NodeState.IDLE, NodeState.RUNNING)
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
                    record(
                        self.compute,
                        "node.unusable",
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
            self.remove(node, observed.get(node.pk))
        return staying

    def remove(self, node: Node, observation: NodeObservation | None) -> None:
        name = observation.name if observation else self.spec(node).container_name
        self.driver.remove_node(name)
        Node.objects.filter(pk=node.pk).delete()
        self.outcome.removed.append(node.name)
        record(self.compute, "node.removed", f"Node {node.name} removed ({self.why_removed()}).")
        self.keep_lease()

    def why_removed(self) -> str:
        return {
            S.STOPPING: "instance stopping",
            S.RESTARTING: "instance restarting",
            S.DELETING: f"{self.compute.get_kind_display().lower()} deleting",
        }.get(self.compute.state, f"min nodes is {self.compute.min_nodes}")

    def scale(self, nodes: list[Node]) -> list[Node]:
        desired = self.compute.desired_node_count()
        if len(nodes) > desired:
            # Newest first. A busy node is never removed to resize, only to stop or delete.
            going_away = self.compute.state in (S.STOPPING, S.DELETING)
            spare = [n for n in reversed(nodes) if going_away or n.state != NodeState.RUNNING]
            for node in spare[: len(nodes) - desired]:
                if Node.objects.filter(pk=node.pk, state=node.state).update(
                    state=NodeState.LEAVING
                ):
                    self.remove(node, None)
                    nodes.remove(node)
        elif len(nodes) < desired:
            nodes = nodes + self.add_nodes(desired - len(nodes), desired)
        return nodes

    def add_nodes(self, count: int, desired: int) -> list[Node]:
        with transaction.atomic():
            Compute.objects.filter(pk=self.compute.pk).update(
                next_node_index=F("next_node_index") + count
            )
            end = Compute.objects.values_list("next_node_index", flat=True).get(pk=self.compute.pk)
            new = Node.objects.bulk_create(
                [Node(compute=self.compute, index=i) for i in range(end - count, end)]
            )
        if self.compute.is_instance:
            reason = "instance starting"
        else:
            reason = f"min nodes is {desired}"
        names = ", ".join(node.name for node in new)
        record(self.compute, "node.adding", f"Adding {names} ({reason}).")
        return list(
            Node.objects.filter(compute=self.compute, index__gte=end - count).order_by("index")
        )

    def start_preparing(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> None:
        for node in nodes:
            if node.state != NodeState.PREPARING:
                continue
            observation = self.driver.ensure_node(self.spec(node))
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
                record(self.compute, "node.ready", f"Node {node.name} is up and idle{adopted}.")
            self.keep_lease()

    def settle(self) -> None:
        compute = self.compute
        target = SETTLES_TO.get(compute.state, {}).get(compute.kind)
        live = list(compute.nodes.filter(state__in=LIVE_NODE_STATES))
        converged = len(live) == compute.desired_node_count() and all(
            n.state != NodeState.PREPARING for n in live
        )
        if compute.state == S.DELETING:
            converged = not live and not self.driver.list_nodes(compute.pk)
        if not converged:
            return
        if compute.last_error:
            Compute.objects.filter(pk=compute.pk).update(last_error="")
            compute.last_error = ""
            record(compute, "compute.recovered", "Recovered: the nodes match again.")
        if target and compute.transition(compute.state, target):
            record(compute, f"compute.{target}", self.settled_message(target))

    def settled_message(self, state: str) -> str:
        compute = self.compute
        if state == S.STEADY:
            return f"Cluster steady at {compute.desired_node_count()} node(s)."
        return {
            S.RUNNING: "Instance running.",
            S.STOPPED: "Instance stopped: it holds no node and costs nothing.",
            S.DELETED: f"{compute.get_kind_display()} deleted: every node is gone.",
        }[state]

    # Helpers -------------------------------------------------------------------------

    def spec(self, node: Node) -> NodeSpec:
        size = self.compute.vm_size
        environment = {
            "HANGAR_COMPUTE": self.compute.name,
            "HANGAR_NODE": node.name,
            "HANGAR_VM_SIZE": size.name,
        }
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
        )

    def keep_lease(self) -> None:
        if not lease.renew(self.compute.pk, self.owner):
            raise LostLease

    def set_error(self, message: str) -> None:
        if self.compute.last_error != message:
            Compute.objects.filter(pk=self.compute.pk).update(last_error=message)
            self.compute.last_error = message
            record(self.compute, "compute.error", message, level="error")
        self.outcome.error = message

    def fail(self, message: str) -> None:
        compute = self.compute
        Node.objects.filter(compute=compute, state=NodeState.PREPARING).update(
            state=NodeState.UNUSABLE, error=message, ended_at=timezone.now()
        )
        if compute.can_move(S.FAILED) and compute.transition(
            compute.state, S.FAILED, last_error=message
        ):
            record(compute, "compute.failed", f"Failed: {message}", level="error")
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
