"""Jobs that run in another environment than their cluster's.

A cluster's nodes run its environment's image, except nodes started for a queued job that
chose another environment: those run that job's image. Placement matches a job to idle
nodes of its image (`image_key`); when the head of the queue finds none, idle nodes of
other images make room for it (`make_room`), as new ones start in under a second.

A job waits while its environment builds (it is not counted as demand, and jobs behind it
are not held up), and fails with the build's reason if the build failed.
"""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from compute.models import Compute, Environment, ImageState, Job, JobStatus, Node
from compute.models.states import JOB_UNFINISHED

J = JobStatus
DEFAULT = ""  # the key of the compute's own image


def placeable(compute: Compute) -> Q:
    """Queued jobs that can run now: in the compute's environment, or in one whose image
    is built."""
    # A subquery of the few environments built, not a join per queued job.
    built = Environment.objects.filter(image__state=ImageState.READY).values("pk")
    return (
        Q(chosen_environment=None)
        | Q(chosen_environment_id=compute.environment_id)
        | Q(chosen_environment__in=built)
    )


def image_key(compute: Compute, default_tag: str | None, job: Job) -> str:
    """The image a queued job needs, DEFAULT for its compute's. `queue_head` loaded the
    chosen environment and its image with the job."""
    chosen = job.chosen_environment
    if chosen is None or chosen.pk == compute.environment_id:
        return DEFAULT
    tag = chosen.image.tag
    return DEFAULT if tag == default_tag else tag


def node_key(default_tag: str | None, node: Node) -> str:
    """The image a node runs, DEFAULT for its compute's (a node from before environments
    has none written down)."""
    return DEFAULT if node.image in ("", default_tag) else node.image


def check_waiting(compute: Compute) -> None:
    """Queued jobs whose environment is not built: a build is asked for if none is on its
    way, and jobs whose build failed fail with its reason rather than wait for ever."""
    waiting = (
        Job.objects.filter(compute=compute, status=J.QUEUED)
        .exclude(placeable(compute))
        .values_list("chosen_environment", flat=True)
        .distinct()
    )
    ids = list(waiting)
    if not ids:  # the usual case: one query on the queue index
        return
    for environment in Environment.objects.filter(pk__in=ids).select_related("image"):
        image = environment.image
        if image.is_failed:
            reason = image.first_error_line
            Job.objects.filter(compute=compute, chosen_environment=environment).transition(
                J.QUEUED,
                J.FAILED,
                error=f"Environment {environment} did not build: {reason}",
                finished_at=timezone.now(),
            )
        elif image.is_not_built:  # removed as unused since, or curated and never asked for
            from compute.actions.environments import queue_build  # rare: not in every worker

            queue_build(image)


def needs_own_image(compute: Compute) -> Q:
    """Jobs that run in their compute's own environment."""
    return Q(chosen_environment=None) | Q(chosen_environment_id=compute.environment_id)


def others_unfinished(compute: Compute) -> bool:
    """Whether jobs in other environments than the compute's still have work on it."""
    return (
        Job.objects.filter(compute=compute, status__in=JOB_UNFINISHED)
        .exclude(needs_own_image(compute))
        .exists()
    )


def fail_waiting_on(compute: Compute, tag: str, why: str) -> int:
    """The queued jobs of `compute` that need image `tag` (of their own environment) fail
    with why: a node of it cannot start."""
    return (
        Job.objects.filter(compute=compute, chosen_environment__image__tag=tag)
        .exclude(needs_own_image(compute))
        .transition(J.QUEUED, J.FAILED, error=why, finished_at=timezone.now())
    )
