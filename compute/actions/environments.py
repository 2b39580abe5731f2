"""Environments: made by a workspace's contributors, chosen by its jobs and computes; their
images built by a worker (compute/controllers/environments.py), never pulled."""

from __future__ import annotations

import tomllib
from pathlib import Path

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from compute import enqueue
from compute.models import DefaultEnvironment, Environment, EnvironmentImage, ImageState
from compute.rules.environments import ImageSpec, SpecError, image_spec
from workspace.access import WorkspaceAccess, require_role
from workspace.models import Role

NAME_HELP = "Letters, digits, - and _ (up to 64), starting with a letter."


def image_for(
    spec: ImageSpec, state: ImageState = ImageState.QUEUED
) -> tuple[EnvironmentImage, bool]:
    """The image of `spec`, made (in `state`) when no environment asked for it before."""
    defaults = {
        "tag": spec.tag,
        "debian_packages": list(spec.packages_to_install),
        "pip_requirements": list(spec.pip_requirements),
        "state": state,
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
    if image.state == ImageState.NOT_BUILT:  # a curated one's, waiting for someone to ask
        queue_build(image)
    return environment


def set_default_environment(access: WorkspaceAccess, environment: Environment | None) -> None:
    """The environment new computes of the workspace start with (None: the site's node
    image). Admins choose it: it changes what everyone's next compute runs."""
    require_role(access, Role.ADMIN, "choosing the workspace's default environment")
    if environment is None:
        DefaultEnvironment.objects.filter(workspace=access.workspace).delete()
        return
    if environment.workspace_id not in (None, access.workspace.pk):
        raise ValidationError("Choose an environment from the list.")
    DefaultEnvironment.objects.update_or_create(
        workspace=access.workspace,
        defaults={"environment": environment, "set_by": access.membership.user},
    )


def request_build(access: WorkspaceAccess, environment: Environment) -> bool:
    """Build the environment's image: queue it again after a failure, or send a queued
    (curated, on demand) one now. False when there is nothing to build."""
    require_role(access, Role.CONTRIBUTOR, "building an environment")
    return queue_build(environment.image)


def queue_build(image: EnvironmentImage) -> bool:
    """Queue `image`'s build (failed, or not built yet): once, however many ask at the
    same moment (a compare-and-set)."""
    now = timezone.now()
    with transaction.atomic():
        queued = EnvironmentImage.objects.filter(
            pk=image.pk, state__in=[ImageState.FAILED, ImageState.NOT_BUILT]
        ).update(state=ImageState.QUEUED, handed_out_at=now, error="")
        if queued:
            enqueue.build_environment(image.pk)
    return bool(queued)


CURATED_FILE = Path(__file__).resolve().parent.parent / "curated_environments.toml"
CURATED_MINIMAL = "python-minimal"


def sync_curated() -> list[Environment]:
    """The curated environments of compute/curated_environments.toml in the database: a new
    one is made, one whose packages changed gets its next version; the images of those
    built on demand wait as not built. Safe to run any number of times, at once too."""
    with open(CURATED_FILE, "rb") as handle:
        entries = tomllib.load(handle)
    synced = []
    for name, entry in entries.items():
        debian_text = str(entry.get("debian_packages", ""))
        pip_text = str(entry.get("pip_requirements", ""))
        spec = image_spec(debian_text, pip_text)
        on_demand = bool(entry.get("build_on_demand", False))
        latest = Environment.objects.filter(workspace=None, name=name).order_by("-version").first()
        if latest is not None and latest.image.spec_hash == spec.hash:
            synced.append(latest)
            continue
        image, _ = image_for(spec, state=ImageState.NOT_BUILT)
        try:
            with transaction.atomic():
                synced.append(
                    Environment.objects.create(
                        workspace=None,
                        name=name,
                        version=(latest.version + 1) if latest else 1,
                        description=str(entry.get("description", "")),
                        debian_packages=debian_text,
                        pip_requirements=pip_text,
                        image=image,
                        build_on_demand=on_demand,
                    )
                )
        except IntegrityError:  # synced by a concurrent run a moment ago
            synced.append(Environment.objects.get(workspace=None, name=name, version=1))
    return synced
