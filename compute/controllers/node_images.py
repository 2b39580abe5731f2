"""The image steps of a reconcile pass: which image each new node runs (the compute's
environment's, or that of a queued job in another environment), waiting while one builds,
making room on a cluster for the head of the queue, and what a failed image takes down.
A mixin of `nodes.NodeSteps` (and so of `reconcile.Pass`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.utils import timezone

from compute import quota
from compute.controllers import job_images, placement
from compute.controllers import jobs as job_steps
from compute.drivers import NodeStartError
from compute.models import Compute, EnvironmentImage, Node, NodeState
from compute.models.events import EventVerb, record
from compute.models.states import LIVE_NODE_STATES

if TYPE_CHECKING:
    from compute.controllers.reconcile import Outcome


class NodeImageSteps:
    compute: Compute
    outcome: Outcome

    def note(self, verb: EventVerb, message: str, force: bool = False) -> None:
        raise NotImplementedError  # nodes.NodeSteps writes an autoscaler decision

    def set_error(self, message: str) -> None:
        raise NotImplementedError  # reconcile.Pass shows it on the compute

    def remove(self, node: Node, observation: None, why: str) -> None:
        raise NotImplementedError  # nodes.NodeSteps removes a node and its container

    def announce_nodes(self, first: int, count: int, reason: str) -> list[Node]:
        raise NotImplementedError  # nodes.NodeSteps records new node rows

    def default_tag(self) -> str | None:
        """The compute's image when it is built (None while its environment builds)."""
        chosen = self.compute.environment
        if chosen is None:
            return settings.HANGAR_NODE_IMAGE
        image = EnvironmentImage.objects.get(pk=chosen.image_id)  # fresh: a build moves it
        return image.tag if image.is_ready else None

    def is_other_image(self, tag: str) -> bool:
        """A cluster node's image that is not the compute's own (a job's environment)."""
        return self.compute.is_cluster and tag != self.default_tag()

    def node_image(self) -> str | None:
        """The image new nodes run: the compute's environment's once built (None until
        then: its nodes wait, and say so), else the site's node image. An environment
        that failed to build fails the jobs that need it, and the compute with them
        unless jobs in other environments still have work on it."""
        chosen = self.compute.environment
        if chosen is None:
            return settings.HANGAR_NODE_IMAGE
        image = EnvironmentImage.objects.get(pk=chosen.image_id)  # fresh: a build moves it
        if image.is_ready:
            return image.tag
        if image.is_not_built:  # removed as unused since, or curated and never asked for
            from compute.actions.environments import queue_build  # rare: not in every worker

            queue_build(image)
        if image.is_failed:
            reason = image.first_error_line
            why = f"Environment {chosen} did not build: {reason}"
            job_steps.fail_queued(self.compute, why)
            if self.compute.is_cluster and job_images.others_unfinished(self.compute):
                self.set_error(why)  # its nodes of other images go on with their jobs
                return None
            raise NodeStartError(why)
        self.note(
            EventVerb.ENVIRONMENT_WAIT,
            f"Waiting for environment {chosen} to build ({image.get_state_display().lower()}).",
        )
        return None

    def images_of(self, preparing: list[Node]) -> list[tuple[Node, str | None]]:
        """Each preparing node with the image it starts from. A node keeps the image a
        previous pass chose (written before its container was made, so a container
        adopted after a crash is the image its row says); the others take first those
        the queue's jobs in other environments lack, in queue order, then the compute's
        own (None while it builds)."""
        fresh = [node for node in preparing if not node.image]
        keys = placement.images_lacking(self.compute, self.default_tag(), len(fresh))
        own = self.node_image() if job_images.DEFAULT in keys else None
        chosen: dict[int, str | None] = {
            node.pk: own if key == job_images.DEFAULT else key
            for node, key in zip(fresh, keys, strict=True)
        }
        for node in fresh:
            image = chosen[node.pk]
            if image is not None:
                Node.objects.filter(pk=node.pk, state=NodeState.PREPARING).update(image=image)
                node.image = image
        return [(node, node.image or chosen.get(node.pk)) for node in preparing]

    def fail_other_image(self, node: Node, image: str, why: str) -> None:
        """A node of a job's environment that cannot start: it goes, and the queued jobs
        that need that image fail with why; the cluster and its other jobs go on."""
        Node.objects.filter(pk=node.pk, state=NodeState.PREPARING).update(
            state=NodeState.UNUSABLE, error=why, ended_at=timezone.now()
        )
        failed = job_images.fail_waiting_on(self.compute, image, why)
        record(
            self.compute,
            EventVerb.NODE_UNUSABLE,
            f"Node {node.name} of image {image} did not start: {why} "
            f"({failed} queued job(s) that need it failed).",
            level="warning",
        )

    def make_room(self, unplaced: placement.Unplaced | None) -> bool:
        """Nodes for the head of the queue when it runs another image than the idle ones:
        added up to max_nodes, and past it as many idle nodes of other images as it still
        lacks make way (a node starts in under a second; the queue is FIFO, so nothing
        behind the head could use them first; a busy node is never taken). True if any
        node was added."""
        compute = self.compute
        if not compute.is_cluster or unplaced is None or unplaced.short <= 0:
            return False
        if unplaced.key == job_images.DEFAULT and self.default_tag() is None:
            return False  # the compute's own environment still builds: nothing to start
        job = unplaced.job
        runs_in = job.chosen_environment or compute.environment or "the node image"
        why = f"job {job.name} (#{job.pk}) runs in {runs_in}"
        default = self.default_tag()
        live = list(
            Node.objects.filter(compute=compute, state__in=LIVE_NODE_STATES).only("state", "image")
        )
        starting = sum(
            1
            for node in live
            if node.state == NodeState.PREPARING
            and node.image
            and job_images.node_key(default, node) == unplaced.key
        )
        short = unplaced.short - starting  # nodes of its image already on their way
        if short <= 0:
            return False
        room = max(0, compute.max_nodes - len(live))
        for node in unplaced.others[: max(0, short - room)]:
            if Node.objects.filter(pk=node.pk, state=NodeState.IDLE).update(
                state=NodeState.LEAVING
            ):
                self.remove(node, None, f"making room: {why}")
                room += 1
        wanted = min(short, room)
        if not wanted:
            return False
        fit, first, cores = quota.claim_nodes(compute, wanted)
        if not fit:
            self.note(EventVerb.SCALING_HELD, f"Not adding nodes for {why}: {cores.message}")
            return False
        self.announce_nodes(first, fit, why)
        return True
