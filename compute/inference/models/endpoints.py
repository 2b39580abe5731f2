"""Endpoints (a stable scoring address with two keys) and their deployments (a model
version, its scoring script and environment, on an inference target, with replicas and a
share of the endpoint's traffic)."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.urls import reverse

from compute.inference.models.registry import RegisteredModel
from compute.inference.rules import TARGETS, Target, TargetFacts
from compute.models import Compute, Environment, VmSize
from workspace.models import Workspace

NAME_RULE = RegexValidator(
    r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$",
    "3–32 lowercase letters, digits and hyphens, starting with a letter: it is part of the "
    "scoring address.",
)


class KeySlot(models.TextChoices):
    PRIMARY = "primary", "Primary"
    SECONDARY = "secondary", "Secondary"


class Endpoint(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="endpoints")
    name = models.CharField(max_length=32, validators=[NAME_RULE])
    description = models.CharField(max_length=300, blank=True)
    # Keys: MultiFernet tokens (compute/lib/secrets.py) shown to contributors, and their
    # SHA-256 for the gateway, which checks a request's key without decrypting anything.
    primary_key = models.TextField()
    primary_key_hash = models.CharField(max_length=64)
    secondary_key = models.TextField()
    secondary_key_hash = models.CharField(max_length=64)
    keys_changed_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="endpoint_name_unique")
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("inference:endpoint", args=[self.workspace.slug, self.pk])

    @property
    def scoring_path(self) -> str:
        return f"/score/{self.workspace.slug}/{self.name}"


class Deployment(models.Model):
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=32, validators=[NAME_RULE])
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    # `init()` once per replica, `run(request_json)` per request: the convention of the
    # cloud studio's scoring scripts.
    scoring_script = models.TextField()
    environment = models.ForeignKey(
        Environment, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    target = models.CharField(
        max_length=24, choices=[(t.value, f.label) for t, f in TARGETS.items()]
    )
    vm_size = models.ForeignKey(VmSize, on_delete=models.PROTECT, related_name="+")
    min_replicas = models.PositiveSmallIntegerField(default=1)
    max_replicas = models.PositiveSmallIntegerField(default=1)
    # Requests in flight per replica the autoscaler aims at.
    target_in_flight = models.PositiveSmallIntegerField(
        default=4, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    request_timeout_ms = models.PositiveIntegerField(
        default=5000, validators=[MinValueValidator(100), MaxValueValidator(300_000)]
    )
    # With min replicas 0: the last replica goes after this long without a request (the
    # next request waits for one to start).
    scale_to_zero_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(10), MaxValueValidator(7 * 24 * 3600)]
    )
    # Percent of the endpoint's requests (the endpoint's deployments sum to 100, or all 0
    # while none takes traffic); a request may also name a deployment.
    traffic = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    # Its replicas: a cluster of its own that runs the scoring server (compute.serving).
    compute = models.OneToOneField(
        Compute, null=True, blank=True, on_delete=models.PROTECT, related_name="deployment"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "name"], name="deployment_name_unique"),
            models.CheckConstraint(
                condition=models.Q(min_replicas__lte=models.F("max_replicas")),
                name="deployment_replica_bounds",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint.name}/{self.name}"

    @property
    def target_facts(self) -> TargetFacts:
        return TARGETS[Target(self.target)]
