"""Rows the idle sweep finds due at `now`, made in bulk: for the tests of its cost and
outcome (tests/unit/test_idle_sweep_bulk.py) and for its bench (bench/idle.py).

Each helper makes `count` instances of the workspace named `<prefix>-<n>`, created by
`owner`, with one 4-core DSv2 size; `plenty_of_cores` lets every scheduled start fit.
The n-th instance's idle times are n seconds before the first's, as real ones differ
(the sweep cannot write them all with one value); with fewer than 240 instances each
stays due as described."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import User

from compute.models import (
    Compute,
    ComputeKind,
    ComputeState,
    FamilyQuota,
    Schedule,
    ScheduleAction,
    VmSize,
)
from compute.rules.idle import minutes
from workspace.models import Workspace

S = ComputeState
SIZE = "Standard_DS3_v2"  # 4 cores, family DSv2


def instances(
    workspace: Workspace,
    owner: User | None,
    prefix: str,
    count: int,
    state: str,
    **fields: datetime | str | int,
) -> list[Compute]:
    """The times among `fields` are the first instance's (see the module)."""
    size = VmSize.objects.get(name=SIZE)
    return Compute.objects.bulk_create(
        Compute(
            workspace=workspace,
            name=f"{prefix}-{n}",
            kind=ComputeKind.INSTANCE,
            state=state,
            vm_size=size,
            created_by=owner,
            max_nodes=1,
            **{name: earlier(value, n) for name, value in fields.items()},
        )
        for n in range(count)
    )


def earlier(value: datetime | str | int, seconds: int) -> datetime | str | int:
    return value - timedelta(seconds=seconds) if isinstance(value, datetime) else value


def due_stops(
    workspace: Workspace, owner: User | None, count: int, now: datetime, prefix: str = "stop"
) -> list[Compute]:
    """Running instances idle for 61 of their 60 minutes: each is stopped."""
    last = now - minutes(61)
    return instances(
        workspace,
        owner,
        prefix,
        count,
        S.RUNNING,
        state_changed_at=last,
        idle_shutdown_minutes=60,
        last_activity_at=last,
        last_activity="notebook closed",
        idle_deadline=now - minutes(1),
        idle_next_check_at=now - minutes(1),
    )


def due_reminders(
    workspace: Workspace, owner: User | None, count: int, now: datetime, prefix: str = "remind"
) -> list[Compute]:
    """Running instances 4 minutes before their idle deadline, last looked at when the 30
    minute reminder came due: with the default leads (30, 5) both reminders go out."""
    deadline = now + minutes(4)
    return instances(
        workspace,
        owner,
        prefix,
        count,
        S.RUNNING,
        state_changed_at=deadline - minutes(60),
        idle_shutdown_minutes=60,
        idle_deadline=deadline,
        idle_next_check_at=deadline - minutes(30),
    )


def due_schedules(
    workspace: Workspace, owner: User | None, count: int, now: datetime, prefix: str = "sched"
) -> list[Schedule]:
    """Instances with a daily schedule due now: every other one the start of a stopped
    instance, the rest the stop of a running one."""
    starts = instances(workspace, owner, f"{prefix}a", (count + 1) // 2, S.STOPPED)
    stops = instances(workspace, owner, f"{prefix}o", count // 2, S.RUNNING)
    cron = f"{now.minute} {now.hour} * * *"
    return Schedule.objects.bulk_create(
        Schedule(
            compute=compute,
            action=action,
            cron=cron,
            timezone="UTC",
            next_run_at=now,
            next_check_at=now,
        )
        for action, computes in ((ScheduleAction.START, starts), (ScheduleAction.STOP, stops))
        for compute in computes
    )


def plenty_of_cores(workspace: Workspace) -> None:
    family = VmSize.objects.get(name=SIZE).family
    FamilyQuota.objects.update_or_create(
        workspace=workspace, family=family, defaults={"limit": 100_000, "approved": 100_000}
    )
