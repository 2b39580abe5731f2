"""The pages and the server agree on what a compute accepts (issue 15, point 3): for every
kind, every state of its transition table, every role and every verb, a verb the page
offers (`Compute.allowed_verbs`) is accepted by its action, and a verb the action refuses
is not offered. Generated: a new state, kind or verb without agreement fails here (a new
verb also needs its call below)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from compute.actions import attached as attach_actions
from compute.actions import computes as actions
from compute.actions import idle as idle_actions
from compute.actions import jobs as job_actions
from compute.actions.attached import Connection
from compute.models import Compute, ComputeVerb, Node, NodeState, SecretKind, Tier, VmSize
from compute.models.states import TRANSITIONS, ComputeKind, ComputeState
from workspace.access import get_access
from workspace.models import Role

pytestmark = pytest.mark.django_db
V = ComputeVerb
S = ComputeState


def _node(compute: Compute) -> int:
    node = Node.objects.create(
        compute=compute, index=99, state=NodeState.IDLE, container_ref="agreement"
    )
    return node.pk


# What each verb's button asks of the server, as its view does.
SERVER: dict[str, Callable] = {
    V.SUBMIT: lambda access, c: job_actions.submit_job(
        access, compute_id=c.pk, name="t", command="true"
    ),
    V.START: lambda access, c: actions.instance_verb(access, c.pk, "start"),
    V.STOP: lambda access, c: actions.instance_verb(access, c.pk, "stop"),
    V.RESTART: lambda access, c: actions.instance_verb(access, c.pk, "restart"),
    V.KEEP_RUNNING: lambda access, c: idle_actions.keep_running(access, c.pk),
    V.IDLE_SETTINGS: lambda access, c: idle_actions.set_idle_minutes(access, c.pk, 33),
    V.TOKEN: lambda access, c: idle_actions.rotate_token(access, c.pk),
    V.RESIZE: lambda access, c: actions.update_cluster(
        access, c.pk, min_nodes=0, max_nodes=3, idle_seconds_before_scaledown=60
    ),
    V.PREEMPT: lambda access, c: job_actions.preempt_node(access, _node(c)),
    V.EDIT: lambda access, c: attach_actions.update_connection(access, c.pk, max_concurrent_jobs=2),
    V.VALIDATE: lambda access, c: attach_actions.revalidate(access, c.pk),
    V.DETACH: lambda access, c: attach_actions.detach(access, c.pk),
    V.DELETE: lambda access, c: actions.delete_compute(access, c.pk),
}


class Accepted(Exception):
    """Rolls an accepted call back, so the next verb finds the compute as it was."""


def accepted(call: Callable[[], object]) -> bool:
    try:
        with transaction.atomic():
            call()
            raise Accepted
    except Accepted:
        return True
    except (ValidationError, PermissionDenied):
        return False


def test_every_verb_has_its_server_call():
    assert set(SERVER) == set(ComputeVerb)


@pytest.fixture
def computes(team, django_capture_on_commit_callbacks) -> dict[str, Compute]:
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    with django_capture_on_commit_callbacks():
        made = {
            ComputeKind.INSTANCE: actions.create_instance(access, name="box", vm_size=size),
            ComputeKind.CLUSTER: actions.create_cluster(
                access, name="pool", vm_size=size, tier=Tier.LOW_PRIORITY, max_nodes=2
            ),
            ComputeKind.ATTACHED: attach_actions.attach(
                access,
                target_kind="remote_vm",
                name="gpu-box",
                max_concurrent_jobs=1,
                connection=Connection("gpu-box.lab", 22, "ml", SecretKind.PASSWORD, "hunter2"),
            ),
        }
    assert set(made) == set(TRANSITIONS)  # a new kind needs a compute here
    return made


CASES = [(kind, state) for kind, table in TRANSITIONS.items() for state in table]


@pytest.mark.parametrize(("kind", "state"), CASES, ids=[f"{k}-{s}" for k, s in CASES])
def test_what_a_page_offers_is_what_the_server_accepts(
    team, computes, kind, state, django_capture_on_commit_callbacks
):
    for role, user in (
        (Role.READER, team.reader),
        (Role.CONTRIBUTOR, team.contributor),
        (Role.ADMIN, team.admin),
    ):
        access = get_access(user, team.workspace.slug)
        disagreements = []
        for verb in ComputeVerb:
            # The compute in `state`, with whatever else the verb needs besides its state:
            # an idle deadline to keep running against, an up node to preempt.
            Compute.objects.filter(pk=computes[kind].pk).update(
                state=state, idle_deadline=timezone.now() + timedelta(minutes=30)
            )
            compute = Compute.objects.get(pk=computes[kind].pk)
            offered = verb in compute.allowed_verbs(role)
            with django_capture_on_commit_callbacks():
                took = accepted(lambda: SERVER[verb](access, compute))  # noqa: B023
            if offered != took:
                said = "offered but refused" if offered else "accepted but not offered"
                disagreements.append(f"{verb}: {said}")
        assert not disagreements, f"{kind} {state} as {role}: {'; '.join(disagreements)}"


def test_a_stopped_instance_offers_start_not_submit_and_the_server_agrees(
    team, computes, django_capture_on_commit_callbacks
):
    box = computes[ComputeKind.INSTANCE]
    Compute.objects.filter(pk=box.pk).update(state=S.STOPPED)
    box.refresh_from_db()
    verbs = box.allowed_verbs(Role.CONTRIBUTOR)
    assert V.SUBMIT not in verbs and V.START in verbs
    access = get_access(team.contributor, team.workspace.slug)
    with pytest.raises(ValidationError, match="box is stopped; start it first"):
        SERVER[V.SUBMIT](access, box)
    with django_capture_on_commit_callbacks():
        actions.instance_verb(access, box.pk, "start")
    box.refresh_from_db()
    assert box.state == S.STARTING and V.SUBMIT in box.allowed_verbs(Role.CONTRIBUTOR)
    with django_capture_on_commit_callbacks():
        job = SERVER[V.SUBMIT](access, box)  # a starting instance takes jobs: they wait
    assert job.compute_id == box.pk
