"""Writing a compute's event log: every decision says who or what, and why."""

from __future__ import annotations

from django.contrib.auth.models import User

from compute.models import Compute, Event


def record(
    compute: Compute,
    verb: str,
    message: str,
    *,
    actor: User | None = None,
    level: str = "info",
) -> Event:
    return Event.objects.create(
        compute=compute, actor=actor, verb=verb, message=message[:1000], level=level
    )
