# No `from __future__ import annotations`: django-ninja reads these annotations at import.
"""Environments: the workspace's and the site's curated ones, each with its image's state,
and the environment page's Build button (a failed image, or one not built yet)."""

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.urls import reverse
from ninja import Router, Schema
from ninja.pagination import paginate

from compute.actions.environments import request_build
from compute.actions.errors import StateConflict
from compute.api.auth import api_access
from compute.api.pagination import CursorPagination, newest_first
from compute.api.schemas import Error
from compute.models import Environment
from compute.selectors import environments_for
from workspace.models import Role
from workspace.notify import absolute

router = Router(tags=["environments"])
REFUSALS = {401: Error, 403: Error, 404: Error, 409: Error, 422: Error}
ENVIRONMENT = "/workspaces/{slug}/environments/{int:environment_id}"


class ImageOut(Schema):
    tag: str
    state: str  # not_built, queued, building, ready, failed
    image_id: str
    size_bytes: int | None
    error: str  # why its build failed: the package manager's lines
    started_at: datetime | None
    finished_at: datetime | None


class EnvironmentOut(Schema):
    id: int
    name: str
    version: int
    description: str
    curated: bool  # the site's, seen by every workspace
    debian_packages: list[str]
    pip_requirements: list[str]
    variables: dict[str, str]
    image: ImageOut
    created_at: datetime
    url: str

    @staticmethod
    def resolve_curated(environment: Any) -> bool:
        return environment.is_curated

    @staticmethod
    def resolve_debian_packages(environment: Any) -> list[str]:
        return environment.debian_packages.split()

    @staticmethod
    def resolve_pip_requirements(environment: Any) -> list[str]:
        return [line.strip() for line in environment.pip_requirements.splitlines() if line.strip()]

    @staticmethod
    def resolve_url(environment: Any, context: Any) -> str:
        slug = context["request"].resolver_match.kwargs["slug"]
        return absolute(reverse("compute:environment", args=[slug, environment.pk]))


@router.get("/workspaces/{slug}/environments", response=list[EnvironmentOut])
@paginate(CursorPagination, **newest_first("name", "-version", "id"))
def list_environments(request: HttpRequest, slug: str) -> QuerySet:
    """The workspace's environments and the site's curated ones, every version."""
    return environments_for(api_access(request, slug).workspace)


def environment_in(request: HttpRequest, slug: str, environment_id: int) -> Environment:
    workspace = api_access(request, slug).workspace
    return get_object_or_404(environments_for(workspace), pk=environment_id)


@router.get(ENVIRONMENT, response={200: EnvironmentOut, **REFUSALS})
def show_environment(request: HttpRequest, slug: str, environment_id: int) -> Environment:
    return environment_in(request, slug, environment_id)


@router.post(f"{ENVIRONMENT}/build", response={200: EnvironmentOut, **REFUSALS})
def build(request: HttpRequest, slug: str, environment_id: int) -> Environment:
    """Build the environment's image (a failed one again, or one not built yet); 409 when
    it is ready, queued or building."""
    access = api_access(request, slug, Role.CONTRIBUTOR, "building an environment")
    environment = environment_in(request, slug, environment_id)
    if not request_build(access, environment):
        state = environment.image.get_state_display().lower()
        raise StateConflict(f"{environment}'s image is already {state}.")
    return environment_in(request, slug, environment_id)
