"""Idle time, deadlines and schedules of compute instances: pure rules, no queries (the
writes that apply them are in compute/models/idle.py).

An instance's idle deadline is `last activity + idle minutes`, pushed to at least
`keep_running_until`; it is None while shutdown is off, while a job runs, or while the
instance is not running. `idle_next_check_at` is when the sweep must next look (the next
reminder or the deadline), so a sweep with nothing due reads nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.conf import settings

from compute.models.states import ComputeKind, ComputeState, ScheduleAction

if TYPE_CHECKING:
    from compute.models import Compute, Schedule


def minutes(count: float) -> timedelta:
    return timedelta(seconds=count * settings.HANGAR_SECONDS_PER_IDLE_MINUTE)


def deadline_of(compute: Compute, busy: bool) -> datetime | None:
    if (
        compute.kind != ComputeKind.INSTANCE
        or compute.state != ComputeState.RUNNING
        or not compute.idle_shutdown_minutes
        or busy
    ):
        return None
    since = compute.last_activity_at or compute.state_changed_at
    deadline = since + minutes(compute.idle_shutdown_minutes)
    if compute.keep_running_until and compute.keep_running_until > deadline:
        deadline = compute.keep_running_until
    return deadline


def next_check(deadline: datetime | None, leads: list[int], now: datetime) -> datetime | None:
    """The first reminder moment still ahead, else the deadline itself."""
    if deadline is None:
        return None
    for lead in leads:  # largest first
        moment = deadline - minutes(lead)
        if moment > now:
            return moment
    return deadline


# Activity tokens ------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(token shown once to the user, hash kept in the database)."""
    token = "hgr_" + secrets.token_urlsafe(32)
    return token, hash_token(token)


def token_matches(compute: Compute, token: str) -> bool:
    return bool(compute.activity_token_hash) and hmac.compare_digest(
        compute.activity_token_hash, hash_token(token)
    )


# Schedules --------------------------------------------------------------------------------

DAYS = [
    ("1", "Mon"),
    ("2", "Tue"),
    ("3", "Wed"),
    ("4", "Thu"),
    ("5", "Fri"),
    ("6", "Sat"),
    ("0", "Sun"),
]


class ScheduleError(ValueError):
    pass


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"“{name}” is not a known time zone (e.g. Europe/Berlin).") from None


def check_cron(expression: str) -> str:
    expression = " ".join(expression.split())
    if len(expression.split()) != 5:
        raise ScheduleError("A cron expression has 5 fields: minute hour day month weekday.")
    try:
        CronSim(expression, datetime.now(ZoneInfo("UTC")))
    except CronSimError as exc:
        raise ScheduleError(f"Invalid cron expression: {exc}.") from None
    return expression


def weekly_cron(days: list[str], at: str) -> str:
    """The weekly form (days + HH:MM) as a cron expression."""
    if not days:
        raise ScheduleError("Pick at least one day.")
    hour, _, minute = at.partition(":")
    return f"{int(minute)} {int(hour)} * * {','.join(sorted(days))}"


def occurrences(cron: str, tz: str, after: datetime, count: int = 3) -> list[datetime]:
    """The next runs after `after`, in UTC, honouring the zone's daylight-saving changes."""
    local = after.astimezone(zone(tz))
    runs = CronSim(cron, local)
    return [next(runs).astimezone(ZoneInfo("UTC")) for _ in range(count)]


def next_run(schedule: Schedule, after: datetime) -> datetime:
    return occurrences(schedule.cron, schedule.timezone, after, 1)[0]


def schedule_next_check(schedule: Schedule, leads: list[int], now: datetime) -> datetime | None:
    run_at = schedule.effective_run_at
    if run_at is None:
        return None
    if schedule.action == ScheduleAction.STOP:
        return next_check(run_at, leads, now)
    return run_at
