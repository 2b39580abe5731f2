"""Building environment images (compute/models/environments.py), exactly once.

- **One build per spec.** An image row is unique on its spec's hash; a build claims it
  with a compare-and-set (queued → building, with this process as builder). Two
  requests, two workers, or a task delivered twice: one claim wins, the others return.
- **A worker killed mid-build loses nothing.** The builder's heartbeat stops. A builder
  that is provably dead (same machine, its process gone: controllers/lease.py) is taken
  over at once; one on another machine once its heartbeat is BUILD_STALE_SECONDS old. The
  sweep hands such builds out again (`unfinished_builds`); the new builder starts over
  from nothing (the root file system is a temporary file, and `docker import` is the last
  step, tagged by the hash: doing it twice makes the same tag).
- **A builder that lost its claim writes nothing**: the end is a compare-and-set on the
  builder too.
- **An unchanged spec is not built again**: a ready image is left as it is, and a tag
  Docker already has (built before this database knew of it) is adopted in a second.

Its log goes to a file per image (compute/lib/buildlogs.py), read by the environment's page
as it grows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db.models import F, Q
from django.utils import timezone

from compute.controllers.lease import Owner, new_owner
from compute.lib import buildlogs
from compute.models import EnvironmentImage, ImageState, Job, Node
from compute.models.states import JOB_UNFINISHED, NODE_WITH_CONTAINER

if TYPE_CHECKING:
    import docker

# The Docker SDK (and requests under it) is imported by the functions that build or remove
# an image, not with this module: every worker process imports the tasks, and most never
# build an image (8 MB a process, against the worker's memory goal).
log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 5.0
BUILD_STALE_SECONDS = 60.0
HAND_OUT_AT_MOST = 20
S = ImageState


def build(image_pk: int) -> str:
    """Build the image if it is this worker's to build; returns what happened, in words."""
    import docker

    from compute.lib import images

    owner = new_owner()
    image = claim(image_pk, owner)
    if image is None:
        return "not claimed: built, being built, or gone"
    client = docker.from_env(timeout=600)
    if adopt_existing(client, image, owner):
        return "adopted the image Docker already had"
    path = buildlogs.log_path(image.spec_hash)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path, "w", encoding="utf-8") as out, beating(image.pk, owner):
        written = 0

        def say(line: str) -> None:
            nonlocal written
            if written < buildlogs.LOG_LIMIT:
                out.write(line + "\n")
                out.flush()
                written += len(line) + 1

        say(f"Building {image.tag} (attempt {image.attempts})")
        try:
            image_id, size = images.build_environment_image(
                client, image.tag, list_of(image.debian_packages), list_of(image.pip_requirements),
                say,
            )  # fmt: skip
        except images.ImageBuildError as exc:
            say(f"Failed: {exc}")
            finish(image.pk, owner, state=S.FAILED, error=str(exc)[-4000:])
            return "failed"
        except docker.errors.DockerException as exc:
            say(f"Failed: Docker: {exc}")
            finish(image.pk, owner, state=S.FAILED, error=f"Docker: {exc}"[-4000:])
            return "failed"
        say(f"Ready: {image.tag} ({size / 1e6:.0f} MB)")
    finish(image.pk, owner, state=S.READY, image_id=image_id, size_bytes=size)
    return "built"


def list_of(value: object) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def claim(image_pk: int, owner: str) -> EnvironmentImage | None:
    """This process's claim on a build to do: queued, or building by a builder that is
    gone (provably dead, or silent for BUILD_STALE_SECONDS)."""
    now = timezone.now()
    stale = now - timedelta(seconds=BUILD_STALE_SECONDS)
    row = EnvironmentImage.objects.filter(pk=image_pk)
    current = row.values_list("state", "builder").first()
    if current is None:
        return None
    state, builder = current
    takeable = Q(state=S.QUEUED) | Q(state=S.BUILDING, heartbeat_at__lt=stale)  # not NOT_BUILT
    dead = Owner.parse(builder or "")
    if state == S.BUILDING and dead is not None and dead.provably_dead():
        takeable |= Q(state=S.BUILDING, builder=builder)
    claimed = row.filter(takeable, state=state, builder=builder).update(
        state=S.BUILDING, builder=owner, heartbeat_at=now, started_at=now, error=""
    )
    if not claimed:
        return None
    if state == S.BUILDING:
        log.warning("environment image %s: took over the build of %s", image_pk, builder)
    EnvironmentImage.objects.filter(pk=image_pk).update(attempts=F("attempts") + 1)
    return EnvironmentImage.objects.get(pk=image_pk)


def adopt_existing(client: docker.DockerClient, image: EnvironmentImage, owner: str) -> bool:
    import docker

    try:
        found = client.images.get(image.tag)
    except docker.errors.ImageNotFound:
        return False
    size = int(found.attrs.get("Size") or 0)
    finish(image.pk, owner, state=S.READY, image_id=found.id, size_bytes=size)
    return True


def finish(image_pk: int, owner: str, **values: object) -> bool:
    """The build's end, written only by the builder that still holds the claim."""
    return bool(
        EnvironmentImage.objects.filter(pk=image_pk, state=S.BUILDING, builder=owner).update(
            builder="", heartbeat_at=None, finished_at=timezone.now(), **values
        )
    )


@contextmanager
def beating(image_pk: int, owner: str) -> Iterator[None]:
    """Renew the builder's heartbeat while the build runs (a build takes minutes)."""
    stop = threading.Event()

    def beat() -> None:
        from django.db import connection

        try:
            while not stop.wait(HEARTBEAT_SECONDS):
                EnvironmentImage.objects.filter(pk=image_pk, builder=owner).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connection.close()

    heart = threading.Thread(target=beat, name=f"env-build-{image_pk}", daemon=True)
    heart.start()
    try:
        yield
    finally:
        stop.set()
        heart.join(timeout=HEARTBEAT_SECONDS)


def builds_to_hand_out(now: datetime | None = None) -> list[int]:
    """Builds whose task may be lost: queued and not handed out for BUILD_STALE_SECONDS
    (a build asked for is enqueued at once; this is for a message lost with a broker or
    a worker), or building by a builder that stopped beating. Each is marked handed out,
    so the next sweeps do not send it again while a worker works through a queue."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=BUILD_STALE_SECONDS)
    due = EnvironmentImage.objects.filter(
        Q(state=S.QUEUED, handed_out_at__lt=stale) | Q(state=S.BUILDING, heartbeat_at__lt=stale)
    ).filter(Q(handed_out_at__lt=stale))
    pks = list(due.order_by().values_list("pk", flat=True)[:HAND_OUT_AT_MOST])
    if pks:
        EnvironmentImage.objects.filter(pk__in=pks).update(handed_out_at=now)
    return pks


def images_in_use() -> set[int]:
    """Images a live node runs, or that an unfinished job will run (its own environment's,
    or its compute's): never removed."""
    live_tags = Node.objects.filter(
        state__in=NODE_WITH_CONTAINER, ended_at__isnull=True
    ).values_list("image", flat=True)
    by_tag = set(EnvironmentImage.objects.filter(tag__in=live_tags).values_list("pk", flat=True))
    unfinished = Job.objects.filter(status__in=JOB_UNFINISHED)
    awaited = [
        *unfinished.values_list("compute__environment__image", flat=True),
        *unfinished.values_list("chosen_environment__image", flat=True),
    ]
    return by_tag | {int(pk) for pk in awaited if pk is not None}


def prune(image_pks: list[int] | None = None) -> list[str]:
    """Remove the ready images (of `image_pks`, or all) that nothing uses: their disk comes
    back, and each is built again when next asked for. Returns the tags removed."""
    import docker

    client = docker.from_env(timeout=120)
    used = images_in_use()
    ready = EnvironmentImage.objects.filter(state=S.READY).exclude(pk__in=used)
    if image_pks is not None:
        ready = ready.filter(pk__in=image_pks)
    removed = []
    for image in ready:
        # Marked first (a compare-and-set on its state), so no node starts on it meanwhile.
        if not EnvironmentImage.objects.filter(pk=image.pk, state=S.READY).update(
            state=S.NOT_BUILT, image_id="", size_bytes=None
        ):
            continue
        try:
            client.images.remove(image.tag)  # not forced: Docker keeps one a container uses
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.APIError as exc:
            EnvironmentImage.objects.filter(pk=image.pk).update(
                state=S.READY, image_id=image.image_id, size_bytes=image.size_bytes
            )
            log.warning("environment image %s kept: %s", image.tag, exc.explanation)
            continue
        removed.append(image.tag)
    return removed
