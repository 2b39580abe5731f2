"""What the API answers with: plain fields, no secrets (a compute's or job's secret
variables and setup script never leave the server)."""

# No `from __future__ import annotations`: django-ninja reads these annotations at import.

from datetime import datetime
from decimal import Decimal
from typing import Any

from ninja import Schema

from workspace.notify import absolute


class Error(Schema):
    detail: str
    errors: dict[str, list[str]] | None = None


class WorkspaceOut(Schema):
    slug: str
    name: str
    description: str
    role: str | None = None  # the caller's (annotated by the list, set by show)


class MemberOut(Schema):
    username: str
    role: str
    added_at: datetime


class VmSizeOut(Schema):
    name: str
    family: str
    category: str
    vcpus: int
    memory_gib: Decimal
    gpus: int
    gpu_model: str
    isolated: bool
    restricted: bool
    price_dedicated: Decimal
    price_low_priority: Decimal

    @staticmethod
    def resolve_family(size: Any) -> str:
        return size.family.name

    @staticmethod
    def resolve_category(size: Any) -> str:
        return size.family.category

    @staticmethod
    def resolve_restricted(size: Any) -> bool:
        return size.family.restricted


class ComputeOut(Schema):
    id: int
    name: str
    kind: str
    state: str
    vm_size: str | None
    tier: str
    min_nodes: int
    max_nodes: int
    idle_seconds_before_scaledown: int
    idle_shutdown_minutes: int | None
    idle_deadline: datetime | None
    last_error: str
    autoscale_note: str
    environment: str | None  # "name:version"; none: the site's node image
    created_at: datetime
    state_changed_at: datetime
    url: str

    @staticmethod
    def resolve_vm_size(compute: Any) -> str | None:
        return compute.vm_size.name if compute.vm_size_id else None

    @staticmethod
    def resolve_environment(compute: Any) -> str | None:
        return str(compute.environment) if compute.environment_id else None

    @staticmethod
    def resolve_url(compute: Any) -> str:
        return absolute(compute.get_absolute_url())


class NodeOut(Schema):
    id: int
    index: int
    state: str
    error: str
    created_at: datetime
    started_at: datetime | None
    last_busy_at: datetime | None
    ended_at: datetime | None


class EventOut(Schema):
    id: int
    verb: str
    level: str
    message: str
    actor: str | None
    created_at: datetime

    @staticmethod
    def resolve_actor(event: Any) -> str | None:
        return event.actor.username if event.actor_id else None


class JobOut(Schema):
    id: int
    name: str
    compute: str
    compute_id: int
    command: str
    node_count: int
    status: str
    exit_code: int | None
    error: str
    submitted_by: str | None
    retries: int
    queued_at: datetime
    running_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    code: str | None  # the uploaded file or script's name
    environment: str | None  # what it runs in ("name:version"): its own choice or its compute's
    image: str  # the image its nodes ran, once placed
    outputs_files: int  # files kept from ./outputs once it ended (see .../outputs)
    outputs_bytes: int
    url: str

    @staticmethod
    def resolve_compute(job: Any) -> str:
        return job.compute.name

    @staticmethod
    def resolve_submitted_by(job: Any) -> str | None:
        return job.submitted_by.username if job.submitted_by_id else None

    @staticmethod
    def resolve_environment(job: Any) -> str | None:
        runs_in = job.runs_in()
        return str(runs_in) if runs_in is not None else None

    @staticmethod
    def resolve_code(job: Any) -> str | None:
        return job.code_name or None

    @staticmethod
    def resolve_url(job: Any) -> str:
        return absolute(job.get_absolute_url())


class NotificationOut(Schema):
    id: int
    title: str
    body: str
    url: str
    workspace: str | None
    created_at: datetime
    read_at: datetime | None

    @staticmethod
    def resolve_workspace(notification: Any) -> str | None:
        return notification.workspace.slug if notification.workspace_id else None

    @staticmethod
    def resolve_url(notification: Any) -> str:
        return absolute(notification.url) if notification.url else ""
