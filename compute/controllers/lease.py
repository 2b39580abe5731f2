"""One reconciler per compute at a time, held in the database so a dead worker's hold
expires by itself (Redis is never the source of truth)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from compute.models import Compute


def new_owner() -> str:
    return uuid.uuid4().hex


def take(compute_id: int, owner: str) -> bool:
    now = timezone.now()
    until = now + timedelta(seconds=settings.HANGAR_RECONCILE_LEASE_SECONDS)
    return bool(
        Compute.objects.filter(pk=compute_id)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
        .update(lease_until=until, lease_owner=owner)
    )


def renew(compute_id: int, owner: str) -> bool:
    """Extend the hold between slow steps; False if it was lost (then stop acting)."""
    return take(compute_id, owner)


def release(compute_id: int, owner: str) -> None:
    Compute.objects.filter(pk=compute_id, lease_owner=owner).update(
        lease_until=None, lease_owner=""
    )
