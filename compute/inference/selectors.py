"""Scoped reads of the inference pages: a workspace's models and endpoints only."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from compute.inference.models import Endpoint, RegisteredModel
from workspace.models import Workspace


def models_of(workspace: Workspace) -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.filter(workspace=workspace).select_related("created_by")


def endpoints_of(workspace: Workspace) -> QuerySet[Endpoint]:
    return Endpoint.objects.filter(workspace=workspace).annotate(
        deployment_count=Count("deployments")
    )
