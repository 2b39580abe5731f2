"""Rows for every model the admin lists, with their relations, so a test can read each
changelist and change page at two sizes of data and compare the queries.

`MAKERS[label](count)` makes `count` rows of the model, each with the rows it points to,
and returns one of them whose change page the test reads: that one has `count` rows in
each of its inlines (a compute's nodes, a workspace's members, a family's sizes). A model
registered in the admin without a maker here fails the test that asks for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.models import Group, Permission
from django.db.models import Model
from django.utils import timezone

from compute.models import (
    Attachment,
    Environment,
    EnvironmentImage,
    Event,
    EventVerb,
    FamilyQuota,
    GpuArchitecture,
    HostState,
    NodeHost,
    NodeState,
    QuotaRequest,
    VmFamily,
    VmSize,
    WorkspaceQuota,
)
from tests.support.factories import (
    ComputeFactory,
    JobFactory,
    MembershipFactory,
    NodeFactory,
    UserFactory,
    WorkspaceFactory,
)
from workspace.models import Activity, Invitation, Role

serial = itertools.count(1)  # names unique across both calls of a test


def many(count: int, make: Callable[[], Model]) -> Model:
    """Make `count` rows; the first is the one whose change page is read."""
    made = [make() for _ in range(count)]
    return made[0]


def workspace():
    return WorkspaceFactory(created_by=UserFactory())


def users(count: int) -> Model:
    group = Group.objects.create(name=f"team-{next(serial)}")

    def member():
        user = UserFactory()
        user.groups.add(group)
        return user

    return many(count, member)


def groups(count: int) -> Model:
    permissions = list(Permission.objects.all()[:3])

    def group():
        made = Group.objects.create(name=f"group-{next(serial)}")
        made.permissions.add(*permissions)
        return made

    return many(count, group)


def computes(count: int) -> Model:
    subject = many(count, lambda: ComputeFactory(workspace=workspace(), created_by=UserFactory()))
    for _ in range(count):  # a year of scaling: ended nodes, and live ones
        NodeFactory(compute=subject, state=NodeState.UNUSABLE, ended_at=timezone.now())
        NodeFactory(compute=subject)
    return subject


def nodes(count: int) -> Model:
    return many(count, lambda: NodeFactory(compute=ComputeFactory(workspace=workspace())))


def node_hosts(count: int) -> Model:
    """Hosts in each state, one with overrides and stored TLS material; the first holds
    `count` live nodes and an ended one."""
    states = itertools.cycle(list(HostState))

    def host():
        number = next(serial)
        return NodeHost.objects.create(
            name=f"host-{number}",
            docker_url=f"tcp://host-{number}.lab:2376",
            tls_ca="token-ca",
            tls_cert="token-cert",
            tls_key="token-key",
            labels=["gpu", "zone-a"],
            cpus=32,
            memory_bytes=128 * 1024**3,
            gpus=4,
            cpus_override=16 if number % 2 else None,
            state=next(states),
            last_seen_at=timezone.now(),
            last_error="" if number % 3 else "connection refused",
        )

    subject = many(count, host)
    compute = ComputeFactory(workspace=workspace())
    for _ in range(count):
        NodeFactory(compute=compute, host=subject)
    NodeFactory(compute=compute, host=subject, state=NodeState.UNUSABLE, ended_at=timezone.now())
    return subject


def environment_image() -> EnvironmentImage:
    number = next(serial)
    return EnvironmentImage.objects.create(
        spec_hash=f"{number:016x}", tag=f"hangar/env-{number:016x}", size_bytes=250_000_000
    )


def environment_images(count: int) -> Model:
    return many(count, environment_image)


def environments(count: int) -> Model:
    return many(
        count,
        lambda: Environment.objects.create(
            workspace=workspace(),
            name=f"env-{next(serial)}",
            image=environment_image(),
            created_by=UserFactory(),
        ),
    )


def jobs(count: int) -> Model:
    return many(count, lambda: JobFactory(submitted_by=UserFactory()))


def attachments(count: int) -> Model:
    return many(
        count,
        lambda: Attachment.objects.create(
            compute=ComputeFactory(attached=True, workspace=workspace()),
            target_kind="remote_vm",
            host=f"box{next(serial)}.lab",
        ),
    )


def events(count: int) -> Model:
    return many(
        count,
        lambda: Event.objects.create(
            compute=ComputeFactory(workspace=workspace()),
            actor=UserFactory(),
            verb=EventVerb.COMPUTE_CREATED,
            message=f"made {next(serial)}",
        ),
    )


def quota_requests(count: int) -> Model:
    """Family requests (a restricted family and not) and low-priority pool requests, each
    in a workspace with cores in use."""
    families = itertools.cycle(
        [VmFamily.objects.get(name="DSv2"), VmFamily.objects.get(name="NCsv3"), None]
    )

    def request():
        place = workspace()
        NodeFactory(compute=ComputeFactory(workspace=place))
        return QuotaRequest.objects.create(
            workspace=place,
            family=next(families),
            requested_limit=64,
            justification="training",
            requested_by=UserFactory(),
        )

    return many(count, request)


def family_quotas(count: int) -> Model:
    family = VmFamily.objects.get(name="DSv2")
    return many(
        count,
        lambda: FamilyQuota.objects.create(
            workspace=workspace(), family=family, limit=8, approved=8
        ),
    )


def workspace_quotas(count: int) -> Model:
    return many(
        count,
        lambda: WorkspaceQuota.objects.create(
            workspace=workspace(), low_priority_limit=8, low_priority_approved=8, max_computes=9
        ),
    )


def architectures(count: int) -> Model:
    return many(
        count,
        lambda: GpuArchitecture.objects.create(
            name=f"arch-{next(serial)}", series="X", min_cuda="12.0", release_order=1
        ),
    )


def families(count: int) -> Model:
    architecture = architectures(1)
    subject = many(
        count,
        lambda: VmFamily.objects.create(
            name=f"fam-{next(serial)}", category="gpu", gpu_architecture=architecture
        ),
    )
    sizes_of(subject, count)
    return subject


def sizes_of(family: Model, count: int) -> Model:
    return many(
        count,
        lambda: VmSize.objects.create(
            name=f"size-{next(serial)}", family=family, vcpus=4, memory_gib=Decimal(16)
        ),
    )


def sizes(count: int) -> Model:
    return sizes_of(VmFamily.objects.create(name=f"fam-{next(serial)}", category="general"), count)


def workspaces(count: int) -> Model:
    subject = many(count, workspace)
    for _ in range(count):
        MembershipFactory(workspace=subject, added_by=UserFactory())
    return subject


def memberships(count: int) -> Model:
    return many(
        count,
        lambda: MembershipFactory(
            workspace=workspace(), role=Role.CONTRIBUTOR, added_by=UserFactory()
        ),
    )


def activity(count: int) -> Model:
    return many(
        count,
        lambda: Activity.objects.create(
            workspace=workspace(), actor=UserFactory(), verb="member.added", message="added"
        ),
    )


def invitations(count: int) -> Model:
    return many(
        count,
        lambda: Invitation.objects.create(
            workspace=workspace(),
            identifier=f"guest{next(serial)}",
            invitee=UserFactory(),
            invited_by=UserFactory(),
            expires_at=timezone.now() + timedelta(days=7),
        ),
    )


LOGIN = {"ip_address": "127.0.0.1", "user_agent": "curl", "http_accept": "*/*"}


def access_attempts(count: int) -> Model:
    from axes.models import AccessAttempt

    return many(
        count,
        lambda: AccessAttempt.objects.create(
            username=f"guess{next(serial)}",
            path_info="/login/",
            get_data="",
            post_data="",
            failures_since_start=1,
            **LOGIN,
        ),
    )


def access_logs(count: int) -> Model:
    from axes.models import AccessLog

    return many(
        count,
        lambda: AccessLog.objects.create(
            username=f"user{next(serial)}", path_info="/login/", **LOGIN
        ),
    )


def access_failures(count: int) -> Model:
    from axes.models import AccessFailureLog

    return many(
        count,
        lambda: AccessFailureLog.objects.create(
            username=f"guess{next(serial)}", path_info="/login/", **LOGIN
        ),
    )


def intervals(count: int) -> Model:
    from django_celery_beat.models import IntervalSchedule

    return many(
        count, lambda: IntervalSchedule.objects.create(every=next(serial), period="seconds")
    )


def crontabs(count: int) -> Model:
    from django_celery_beat.models import CrontabSchedule

    return many(
        count, lambda: CrontabSchedule.objects.create(minute=str(next(serial) % 60), hour="*")
    )


def solars(count: int) -> Model:
    from django_celery_beat.models import SolarSchedule

    return many(
        count,
        lambda: SolarSchedule.objects.create(
            event="sunrise", latitude=next(serial) % 90, longitude=0
        ),
    )


def clocked(count: int) -> Model:
    from django_celery_beat.models import ClockedSchedule

    return many(
        count,
        lambda: ClockedSchedule.objects.create(
            clocked_time=timezone.now() + timedelta(hours=next(serial))
        ),
    )


def periodic_tasks(count: int) -> Model:
    from django_celery_beat.models import PeriodicTask

    return many(
        count,
        lambda: PeriodicTask.objects.create(
            name=f"task-{next(serial)}", task="compute.tasks.ping", crontab=crontabs(1)
        ),
    )


MAKERS: dict[str, Callable[[int], Model]] = {
    "auth.User": users,
    "auth.Group": groups,
    "axes.AccessAttempt": access_attempts,
    "axes.AccessFailureLog": access_failures,
    "axes.AccessLog": access_logs,
    "compute.Attachment": attachments,
    "compute.Compute": computes,
    "compute.Environment": environments,
    "compute.EnvironmentImage": environment_images,
    "compute.Event": events,
    "compute.FamilyQuota": family_quotas,
    "compute.GpuArchitecture": architectures,
    "compute.Job": jobs,
    "compute.Node": nodes,
    "compute.NodeHost": node_hosts,
    "compute.QuotaRequest": quota_requests,
    "compute.VmFamily": families,
    "compute.VmSize": sizes,
    "compute.WorkspaceQuota": workspace_quotas,
    "django_celery_beat.ClockedSchedule": clocked,
    "django_celery_beat.CrontabSchedule": crontabs,
    "django_celery_beat.IntervalSchedule": intervals,
    "django_celery_beat.PeriodicTask": periodic_tasks,
    "django_celery_beat.SolarSchedule": solars,
    "workspace.Activity": activity,
    "workspace.Invitation": invitations,
    "workspace.Membership": memberships,
    "workspace.Workspace": workspaces,
}
