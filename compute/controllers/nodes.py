"""The node steps of a reconcile pass: release preempted nodes, remove strays and leaving
nodes, replace dead ones, scale (an instance keeps one node, a cluster follows the
autoscaler) and start the nodes that are preparing. A mixin of `reconcile.Pass`, which
holds the compute, the driver, the outcome and the lease these steps use."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compute import quota
from compute.controllers import hosts
from compute.controllers import jobs as job_steps
from compute.controllers.node_images import NodeImageSteps
from compute.controllers.nodespec import node_spec
from compute.drivers import Driver, DriverUnavailable, NodeObservation, NodeSpec, NodeStartError
from compute.drivers.base import container_name
from compute.lib import replicas
from compute.lib.readable import readable
from compute.models import Compute, ComputeState, Node, NodeState
from compute.models.events import EventVerb, record
from compute.models.states import GOING_AWAY, LIVE_NODE_STATES, NODE_UP

if TYPE_CHECKING:
    from compute.controllers.reconcile import Outcome

S = ComputeState
# A replica that dies before its socket appears (its scoring script's init() raised, or
# the script does not load) is replaced after a pause that doubles with each failure in a
# row, per deployment: not a new container every second for a script that cannot start.
START_BACKOFF_FIRST = 5.0  # seconds
START_BACKOFF_CAP = 300.0
START_FAILURE_LOG_BYTES = 8 * 1024  # of the dead replica's output, for its last line
START_FAILURE_LINE_CHARS = 300
# A traceback's last line: the exception's (dotted) name, then ": message" or nothing.
EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(: |$)")


class NodeSteps(NodeImageSteps):
    compute: Compute
    driver: Driver
    lost: dict[int, str]  # node id -> why its jobs must move
    outcome: Outcome

    def keep_lease(self) -> None:
        raise NotImplementedError  # reconcile.Pass renews its lease here

    def spec(self, node: Node, with_secrets: bool = False, image: str = "") -> NodeSpec:
        return node_spec(self.compute, node, with_secrets, image)

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
        """A started node whose container is gone or stopped is unusable; a new one replaces it
        (not on a failed compute, which starts nothing)."""
        replaced = "" if self.compute.state == S.FAILED else " A new node replaces it."
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
                failed_start = self.start_failure(node, observation)
                if failed_start:
                    what = f"{what}; its scoring script did not start: {failed_start}"
                if Node.objects.filter(pk=node.pk, state=node.state).update(
                    state=NodeState.UNUSABLE, error=what[:1000], ended_at=timezone.now()
                ):
                    if observation is not None:
                        self.driver.remove_node(observation.name)
                    self.outcome.replaced.append(node.name)
                    self.lost[node.pk] = f"node {node.name}'s {what}"
                    if failed_start and replaced:
                        delay = self.back_off(failed_start)
                        replaced = f" A new replica starts in {delay:.0f} s."
                    record(
                        self.compute,
                        EventVerb.NODE_UNUSABLE,
                        f"Node {node.name} is unusable: its {what}.{replaced}",
                        level="error" if failed_start else "warning",
                    )
                continue
            alive.append(node)
        return alive

    def start_failure(self, node: Node, observation: NodeObservation | None) -> str:
        """For a replica whose container stopped before its scoring server listened: the
        last line it wrote (the traceback's error), cleaned and cut; "" for any other
        dead node (a replica that served, or whose container is gone without a word)."""
        if not self.compute.is_serving or observation is None:
            return ""
        name = container_name(settings.HANGAR_SITE, self.compute.pk, node.pk)
        if os.path.lexists(replicas.socket_path(name)):
            return ""  # it served: a crash, replaced at once
        last = error_line(last_output(self.driver, observation.name))
        if len(last) > START_FAILURE_LINE_CHARS:
            last = last[: START_FAILURE_LINE_CHARS - 1] + "…"
        return last

    def back_off(self, why: str) -> float:
        """One more start failure in a row (failures further apart than the longest pause
        start a new row): the next replica waits 5 s, 10 s, 20 s … at most 5 min. Kept
        with the deployment's replicas (compute.serving); `scale` holds until then."""
        compute = self.compute
        serving = dict(compute.serving)
        now = time.time()
        failures = int(serving.get("start_failures", 0))
        if now - float(serving.get("retry_at", 0)) > 2 * START_BACKOFF_CAP:
            failures = 0
        failures += 1
        delay = min(START_BACKOFF_FIRST * 2 ** min(failures - 1, 16), START_BACKOFF_CAP)
        serving.update(start_failures=failures, retry_at=now + delay, start_error=why)
        Compute.objects.filter(pk=compute.pk).update(serving=serving)
        compute.serving = serving
        return delay

    def start_held(self, live: int) -> bool:
        """While a deployment backs off after replicas failed to start, no new one starts;
        the reason stands on its page (the autoscaler's note) and as one event."""
        serving = self.compute.serving
        retry_at = float(serving.get("retry_at", 0))
        if time.time() >= retry_at:
            return False
        failures = int(serving.get("start_failures", 1))
        at = datetime.fromtimestamp(retry_at, UTC).strftime("%H:%M:%S")
        in_a_row = "1 replica" if failures == 1 else f"{failures} replicas in a row"
        message = (
            f"Not starting a replica before {at} UTC ({live} up): {in_a_row} failed to "
            f"start; the scoring script's last error: {serving.get('start_error', '?')}"
        )
        limit = Compute._meta.get_field("autoscale_note").max_length or 300
        if len(message) > limit:
            message = message[: limit - 1] + "…"
        self.note(EventVerb.SCALING_HELD, message)
        return True

    def remove_leaving(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> list[Node]:
        staying = []
        for node in nodes:
            if node.state != NodeState.LEAVING:
                staying.append(node)
                continue
            if not self.drained(node):
                continue  # the sweep brings it back each second until it is
            self.remove(node, observed.get(node.pk), self.why_removed())
        return staying

    def drained(self, node: Node) -> bool:
        """A leaving replica goes once the longest request it may hold has had its time
        (its deployment's timeout, in compute.serving); any other leaving node at once."""
        compute = self.compute
        if not compute.is_serving or compute.state in GOING_AWAY:
            return True
        drain = float(compute.serving.get("drain_seconds", 0))
        since = node.last_busy_at or node.created_at
        return (timezone.now() - since).total_seconds() >= drain

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
        if compute.is_serving:  # replicas: as many as the deployment wants, no jobs
            need, queued = compute.replica_target, 0
        else:
            need, queued = job_steps.demand(compute)
        desired = compute.desired_node_count(busy, need)
        live = len(nodes)
        if live < desired:
            if compute.is_serving and self.start_held(live):
                return nodes
            if compute.is_serving:
                reason = f"the deployment wants {need} replica(s)"
            elif need:
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
            if compute.is_serving:
                # The replica autoscaler waited its quiet delay already. The replica first
                # drains: the gateway stops sending to it, requests under way end.
                if Node.objects.filter(pk=node.pk, state=NodeState.IDLE).update(
                    state=NodeState.LEAVING, last_busy_at=now
                ):
                    nodes.remove(node)
                    record(compute, EventVerb.NODE_REMOVED, f"Replica {node.name} draining: "
                           f"the deployment wants {compute.replica_target}.")  # fmt: skip
                continue
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

    def place_on_host(self, node: Node) -> bool:
        """A node host with room for `node`, chosen under the hosts' row lock and written
        on its row, the decision in the compute's events; False: it waits (noted)."""
        with transaction.atomic():
            placed = hosts.place(self.compute, node)
        if placed.host is None:
            self.note(EventVerb.SCALING_HELD, placed.why)
            return False
        record(self.compute, EventVerb.NODE_ADDED, f"Placed {placed.why}")
        if hosts.WAITS in self.compute.autoscale_note:  # that wait is over
            Compute.objects.filter(pk=self.compute.pk).update(autoscale_note="")
            self.compute.autoscale_note = ""
        return True

    def start_preparing(self, observed: dict[int, NodeObservation], nodes: list[Node]) -> None:
        preparing = [node for node in nodes if node.state == NodeState.PREPARING]
        if not preparing:
            return
        placing = hosts.hosts_exist()
        for node, image in self.images_of(preparing):
            if image is None:
                continue  # its environment is still building
            if placing and node.host_id is None and not self.place_on_host(node):
                continue  # no host has room: it waits, with the reason noted
            try:
                spec = self.spec(node, with_secrets=True, image=image)
                observation = self.driver.ensure_node(spec)
            except NodeStartError as exc:
                if not self.is_other_image(image):
                    raise  # the compute's own image: the compute cannot run
                self.fail_other_image(node, image, str(exc))
                continue
            now = timezone.now()
            if Node.objects.filter(pk=node.pk, state=NodeState.PREPARING).update(
                state=NodeState.IDLE,
                container_ref=observation.ref,
                image=image,
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


def last_output(driver: Driver, name: str) -> str:
    """The last of what a node's container wrote, read through its driver and cleaned (a
    tenant's output is hostile); "" when the driver keeps none or cannot say now."""
    try:
        return readable(driver.node_log(name, START_FAILURE_LOG_BYTES).output)
    except DriverUnavailable:
        return ""


def error_line(output: str) -> str:
    """The line that names the error in a replica's last output: the exception line
    after the frames of its last traceback, else its last line. The script's own output
    may come anywhere around the traceback, even amid its frames: Docker reads stdout and
    stderr apart, so their lines do not keep their order across the two."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if starts:
        after = [line.strip() for line in lines[starts[-1] + 1 :] if not line[:1].isspace()]
        named = [line for line in after if EXCEPTION_LINE.match(line)]
        if named or after:
            return (named or after)[0]
    return lines[-1].strip() if lines else "it wrote nothing"
