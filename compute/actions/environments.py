"""Environments: made by a workspace's contributors, chosen by its jobs and computes; their
images built by a worker (compute/controllers/environments.py), never pulled."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from compute import enqueue
from compute.models import Environment, EnvironmentImage, ImageState
from compute.rules.environments import ImageSpec, SpecError, image_spec
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role

NAME_HELP = "Letters, digits, - and _ (up to 64), starting with a letter."


def visible(access: WorkspaceAccess) -> QuerySet[Environment]:
    """The workspace's own environments and the site's curated ones."""
    return Environment.objects.filter(
        Q(workspace=access.workspace) | Q(workspace=None)
    ).select_related("image")


def image_for(spec: ImageSpec) -> tuple[EnvironmentImage, bool]:
    """The image of `spec`, made (queued) when no environment asked for it before."""
    defaults = {
        "tag": spec.tag,
        "debian_packages": list(spec.packages_to_install),
        "pip_requirements": list(spec.pip_requirements),
    }
    try:
        with transaction.atomic():
            return EnvironmentImage.objects.get_or_create(spec_hash=spec.hash, defaults=defaults)
    except IntegrityError:  # made by a concurrent request a moment ago
        return EnvironmentImage.objects.get(spec_hash=spec.hash), False


def create_environment(
    access: WorkspaceAccess,
    *,
    name: str,
    description: str = "",
    debian_packages: str = "",
    pip_requirements: str = "",
    variables: dict[str, str] | None = None,
) -> Environment:
    """A new environment, or a new version of one of that name; its image is built now
    unless an environment with the same packages already has it."""
    require_role(access, Role.CONTRIBUTOR, "making an environment")
    try:
        spec = image_spec(debian_packages, pip_requirements)
    except SpecError as exc:
        raise ValidationError({exc.field: str(exc)}) from None
    image, made = image_for(spec)
    with transaction.atomic():
        latest = (
            Environment.objects.select_for_update()
            .filter(workspace=access.workspace, name=name)
            .aggregate(latest=Max("version"))["latest"]
        )
        environment = Environment.objects.create(
            workspace=access.workspace,
            name=name,
            version=(latest or 0) + 1,
            description=description,
            debian_packages=debian_packages,
            pip_requirements=pip_requirements,
            variables=variables or {},
            image=image,
            created_by=access.membership.user,
        )
        if made:
            enqueue.build_environment(image.pk)
    return environment


def request_build(access: WorkspaceAccess, environment: Environment) -> bool:
    """Build the environment's image: queue it again after a failure, or send a queued
    (curated, on demand) one now. False when there is nothing to build."""
    require_role(access, Role.CONTRIBUTOR, "building an environment")
    return queue_build(environment.image)


def queue_build(image: EnvironmentImage) -> bool:
    """Queue `image`'s build (from failed, or queued and not yet sent): once, however many
    ask at the same moment (a compare-and-set)."""
    now = timezone.now()
    with transaction.atomic():
        queued = EnvironmentImage.objects.filter(
            pk=image.pk, state__in=[ImageState.FAILED, ImageState.QUEUED]
        ).update(state=ImageState.QUEUED, handed_out_at=now, error="")
        if queued:
            enqueue.build_environment(image.pk)
    return bool(queued)
