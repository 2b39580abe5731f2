"""Environments: the packages a job's node runs with, and the images built for them.

An `Environment` is what a workspace names and chooses (name, version, packages,
variables). Its packages reduce to a spec whose hash names an `EnvironmentImage`
(compute/rules/environments.py): environments with the same packages share one image,
and two requests to build it make one build. Images are built here, never pulled
(compute/controllers/environments.py).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from workspace.models import Workspace


class ImageState(models.TextChoices):
    """(not built →) queued → building → ready | failed. "Build" queues a failed image, or a
    curated one built only on demand, which waits as "not built" until someone asks."""

    NOT_BUILT = "not_built", "Not built"
    QUEUED = "queued", "Queued"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class EnvironmentImage(models.Model):
    """One image, keyed by the hash of what it holds (BUILDER_VERSION included)."""

    spec_hash = models.CharField(max_length=16, unique=True)
    tag = models.CharField(max_length=64)
    # As built: sorted, normalised (rules.environments.ImageSpec).
    debian_packages = models.JSONField(default=list)
    pip_requirements = models.JSONField(default=list)
    state = models.CharField(max_length=10, choices=ImageState.choices, default=ImageState.QUEUED)
    # Docker's id of the built image, and the disk it takes.
    image_id = models.CharField(max_length=80, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    # Why it failed: the package manager's own lines.
    error = models.TextField(blank=True)
    # The build under way: who runs it and when it last said so. A build whose worker
    # died stops beating and is taken over (controllers/environments.py).
    builder = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    requested_at = models.DateTimeField(auto_now_add=True)
    # When a build task was last sent for it (on request, or by the sweep for a lost one).
    handed_out_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The sweep looks for builds to start or take over.
            models.Index(
                fields=["state"],
                name="envimage_unfinished_idx",
                condition=models.Q(state__in=["queued", "building"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.tag} ({self.get_state_display().lower()})"

    @property
    def first_error_line(self) -> str:
        """Why its build failed, in one line (the package manager's first)."""
        return (self.error.strip().splitlines() or ["see its page"])[0]

    # For templates, which never compare a state with a string (test_state_vocabulary).
    @property
    def is_ready(self) -> bool:
        return self.state == ImageState.READY

    @property
    def is_failed(self) -> bool:
        return self.state == ImageState.FAILED

    @property
    def is_not_built(self) -> bool:
        return self.state == ImageState.NOT_BUILT

    @property
    def is_queued(self) -> bool:
        return self.state == ImageState.QUEUED

    @property
    def is_building(self) -> bool:
        return self.state == ImageState.BUILDING

    @property
    def can_build(self) -> bool:
        """Whether "Build" has something to do: a failed image, or one not built yet."""
        return self.state in (ImageState.FAILED, ImageState.NOT_BUILT)


class Environment(models.Model):
    """A named, versioned environment of a workspace, or a curated one of the site
    (`workspace` empty) that every workspace may choose."""

    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="environments"
    )
    name = models.CharField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    description = models.CharField(max_length=300, blank=True)
    # As written by whoever made it (one per line); the image holds them normalised.
    debian_packages = models.TextField(blank=True)
    pip_requirements = models.TextField(blank=True)
    # Set in the node's environment, for every job on it.
    variables = models.JSONField(default=dict, blank=True)
    image = models.ForeignKey(
        EnvironmentImage, on_delete=models.PROTECT, related_name="environments"
    )
    # Curated and large (pytorch-cpu): built when someone asks, not by `make run`.
    build_on_demand = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name", "version"], name="environment_version_unique"
            ),
            models.UniqueConstraint(
                fields=["name", "version"],
                condition=models.Q(workspace=None),
                name="curated_environment_version_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def is_curated(self) -> bool:
        return self.workspace_id is None


class DefaultEnvironment(models.Model):
    """The environment a workspace's new computes start with, preselected in the forms
    and taken by the API when none is given (none: the site's node image)."""

    workspace = models.OneToOneField(
        Workspace, primary_key=True, on_delete=models.CASCADE, related_name="default_environment"
    )
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="+")
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.workspace}: {self.environment}"
