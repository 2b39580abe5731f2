"""Registered models: a trained model's files, named and versioned per workspace, stored
read-only like job code (compute/lib/snapshots.py, HANGAR_MODELS_DIR/<id>/)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from workspace.models import Workspace


class ModelKind(models.TextChoices):
    FILE = "file", "One file"
    ZIP = "zip", "A folder (zip)"
    TAR = "tar", "A folder (tar)"


class RegisteredModel(models.Model):
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="registered_models"
    )
    name = models.CharField(max_length=64)
    version = models.PositiveIntegerField(default=1)
    description = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=8, choices=ModelKind.choices)
    file_name = models.CharField(max_length=200)  # as uploaded
    # What it takes once stored (a zip unpacked): the container instance rule reads it.
    size_bytes = models.BigIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["workspace", "name", "version"], name="registered_model_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"

    def get_absolute_url(self) -> str:
        return reverse("inference:model", args=[self.workspace.slug, self.pk])
