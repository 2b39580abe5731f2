"""The workspace's default for new instances (issue 15, point 1): it fills the create form,
and it applies however an instance is created; an explicit "never" stays "never" where the
policy allows it, and is refused where idle shutdown is required."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.idle import IDLE_OFF
from compute.models import Compute, EventVerb, VmSize
from workspace.access import get_access

pytestmark = pytest.mark.django_db


@pytest.fixture
def size() -> VmSize:
    return VmSize.objects.get(name="Standard_DS3_v2")


def set_policy(workspace, **fields) -> None:
    for name, value in fields.items():
        setattr(workspace, name, value)
    workspace.save()


def create(team, size, callbacks, **extra) -> Compute:
    with callbacks():
        made = actions.create_instance(
            get_access(team.contributor, team.workspace.slug), name="box", vm_size=size, **extra
        )
    return Compute.objects.get(pk=made.pk)


def idle_input(body: str) -> str:
    match = re.search(r'<input[^>]*name="idle_shutdown_minutes"[^>]*>', body)
    assert match, "the create form has an idle shutdown field"
    return match.group(0)


# --- the action: every path that creates an instance goes through it ---


def test_an_instance_created_without_a_choice_gets_the_workspace_default(
    team, size, django_capture_on_commit_callbacks
):
    assert team.workspace.idle_default_minutes == 60  # what a new workspace starts with
    box = create(team, size, django_capture_on_commit_callbacks)
    assert box.idle_shutdown_minutes == 60
    event = box.events.get(verb=EventVerb.COMPUTE_CREATED)
    assert "idle shutdown after 60 min" in event.message


def test_the_default_follows_the_admins_setting(team, size, django_capture_on_commit_callbacks):
    set_policy(team.workspace, idle_default_minutes=45)
    assert create(team, size, django_capture_on_commit_callbacks).idle_shutdown_minutes == 45


def test_a_workspace_whose_default_is_off_creates_instances_without_idle_shutdown(
    team, size, django_capture_on_commit_callbacks
):
    set_policy(team.workspace, idle_default_minutes=None)
    box = create(team, size, django_capture_on_commit_callbacks)
    assert box.idle_shutdown_minutes is None
    assert "no idle shutdown" in box.events.get(verb=EventVerb.COMPUTE_CREATED).message


def test_an_explicit_choice_stays(team, size, django_capture_on_commit_callbacks):
    box = create(team, size, django_capture_on_commit_callbacks, idle_shutdown_minutes=20)
    assert box.idle_shutdown_minutes == 20


def test_an_explicit_never_stays_where_the_policy_allows_it(
    team, size, django_capture_on_commit_callbacks
):
    box = create(team, size, django_capture_on_commit_callbacks, idle_shutdown_minutes=IDLE_OFF)
    assert box.idle_shutdown_minutes is None


def test_a_required_policy_refuses_never_but_applies_its_default(
    team, size, django_capture_on_commit_callbacks
):
    set_policy(team.workspace, idle_required=True, idle_default_minutes=30)
    with pytest.raises(ValidationError, match="requires idle shutdown"):
        create(team, size, django_capture_on_commit_callbacks, idle_shutdown_minutes=IDLE_OFF)
    assert not Compute.objects.exists()
    assert create(team, size, django_capture_on_commit_callbacks).idle_shutdown_minutes == 30


def test_a_choice_outside_the_policy_is_refused(team, size, django_capture_on_commit_callbacks):
    with pytest.raises(ValidationError, match="allows 15 to 4320 minutes"):
        create(team, size, django_capture_on_commit_callbacks, idle_shutdown_minutes=5)
    assert not Compute.objects.exists()


# --- the form ---


def form_url(team) -> str:
    return reverse("compute:create", args=[team.workspace.slug, "instance"])


def test_the_create_form_is_filled_with_the_default_and_says_so(client, team):
    client.force_login(team.contributor)
    body = client.get(form_url(team)).content.decode()
    field = idle_input(body)
    assert 'value="60"' in field
    assert 'min="15"' in field and 'max="4320"' in field
    assert "Vision&#x27;s default: 60 min" in body
    set_policy(team.workspace, idle_required=True, idle_default_minutes=90)
    body = client.get(form_url(team)).content.decode()
    assert 'value="90"' in idle_input(body)
    assert "Vision requires idle shutdown (default 90 min)" in body


def test_the_form_as_shown_creates_an_instance_with_the_default(
    client, team, size, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    with django_capture_on_commit_callbacks():
        response = client.post(
            form_url(team), {"name": "box", "vm_size": size.pk, "idle_shutdown_minutes": "60"}
        )
    assert response.status_code == 302
    assert Compute.objects.get(name="box").idle_shutdown_minutes == 60


def test_a_client_that_leaves_the_field_out_gets_the_default(
    client, team, size, django_capture_on_commit_callbacks
):
    set_policy(team.workspace, idle_default_minutes=25)
    client.force_login(team.contributor)
    with django_capture_on_commit_callbacks():
        response = client.post(form_url(team), {"name": "box", "vm_size": size.pk})
    assert response.status_code == 302
    assert Compute.objects.get(name="box").idle_shutdown_minutes == 25


def test_a_field_emptied_on_purpose_means_never(
    client, team, size, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    with django_capture_on_commit_callbacks():
        client.post(
            form_url(team), {"name": "box", "vm_size": size.pk, "idle_shutdown_minutes": ""}
        )
    assert Compute.objects.get(name="box").idle_shutdown_minutes is None


def test_never_under_a_required_policy_is_refused_and_the_form_keeps_what_was_typed(
    client, team, size
):
    set_policy(team.workspace, idle_required=True, idle_default_minutes=30)
    client.force_login(team.contributor)
    data = {
        "name": "keep-me",
        "vm_size": size.pk,
        "idle_shutdown_minutes": "",
        "setup_script": "pip install torch",
    }
    response = client.post(form_url(team), data)
    body = response.content.decode()
    assert response.status_code == 200
    assert "requires idle shutdown: choose 15 to 4320 minutes" in body
    assert 'value="keep-me"' in body and "pip install torch" in body
    assert 'value="30"' not in idle_input(body)  # what was sent is shown, not the default
    assert not Compute.objects.exists()
