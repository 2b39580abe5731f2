"""The web shell: error pages in Hangar's style, the admin, demo data, double submits."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from tests.support.teams import join_group
from workspace.access import get_access
from workspace.actions import invitations as invitation_actions
from workspace.actions import workspaces as actions
from workspace.models import Activity, Invitation, Membership, Role, Workspace

pytestmark = pytest.mark.django_db


def test_404_and_403_pages_are_styled_and_explain(client, team):
    client.force_login(team.outsider)
    response = client.get(reverse("workspace:overview", args=[team.workspace.slug]))
    body = response.content.decode()
    assert response.status_code == 404
    assert "Nothing here" in body and "Hangar" in body and "Back to your workspaces" in body
    client.force_login(team.reader)
    response = client.get(reverse("workspace:settings", args=[team.workspace.slug]))
    body = response.content.decode()
    assert response.status_code == 403
    assert "You are a reader in Vision" in body and "needs the admin role" in body


def test_500_page_is_styled_without_needing_the_database():
    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert b"Something went wrong on our side" in response.content


def test_login_logout_round_trip(client, team):
    response = client.post(
        reverse("login"), {"username": team.admin.username, "password": "correct-horse-battery"}
    )
    assert response["Location"] == reverse("home")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("workspace:list")).status_code == 302


def test_bad_login_says_so(client, team):
    response = client.post(reverse("login"), {"username": "vision-admin", "password": "nope"})
    assert "Please enter a correct username and password" in response.content.decode()


def test_pages_carry_the_csrf_header_for_htmx(client, team):
    client.force_login(team.admin)
    body = client.get(reverse("workspace:overview", args=[team.workspace.slug])).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in body


@pytest.fixture
def site_rows(team) -> dict[str, object]:
    """One row of each model the admin lists, each with a word its search finds."""
    from compute.models import Attachment, Event, GpuArchitecture, VmFamily, VmSize
    from tests.support.factories import ComputeFactory, NodeFactory

    compute = ComputeFactory(workspace=team.workspace, name="zebra-pool")
    attached = ComputeFactory(workspace=team.workspace, attached=True, name="zebra-box")
    return {
        "workspace": team.workspace,
        "membership": Membership.objects.get(user=team.reader),
        "activity": Activity.objects.create(
            workspace=team.workspace, actor=team.admin, verb="member.added", message="zebra"
        ),
        "vmfamily": VmFamily.objects.get(name="NCsv3"),
        "vmsize": VmSize.objects.get(name="Standard_NC6s_v3"),
        "gpuarchitecture": GpuArchitecture.objects.get(name="Volta"),
        "compute": compute,
        "node": NodeFactory(compute=compute, container_ref="zebra-ref"),
        "event": Event.objects.create(compute=compute, verb="created", message="zebra made"),
        "attachment": Attachment.objects.create(
            compute=attached, target_kind="remote_vm", host="zebra.lab"
        ),
    }


@pytest.mark.parametrize(
    ("url", "row", "search"),
    [
        ("admin:workspace_workspace_changelist", "workspace", "Vision"),
        ("admin:workspace_membership_changelist", "membership", "vision-reader"),
        ("admin:workspace_activity_changelist", "activity", "zebra"),
        ("admin:compute_vmfamily_changelist", "vmfamily", "NCsv3"),
        ("admin:compute_vmsize_changelist", "vmsize", "NC6s_v3"),
        ("admin:compute_gpuarchitecture_changelist", "gpuarchitecture", "Volta"),
        ("admin:compute_compute_changelist", "compute", "zebra-pool"),
        ("admin:compute_node_changelist", "node", "zebra-ref"),
        ("admin:compute_event_changelist", "event", "zebra made"),
        ("admin:compute_attachment_changelist", "attachment", "zebra.lab"),
    ],
)
def test_admin_changelists_list_and_search(client, site_rows, url, row, search):
    """Each list shows the row with its name, and its search finds it and leaves out a
    word nothing has."""
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(superuser)
    expected = site_rows[row]
    # The catalog's sizes come in pages: the size's family filter lists it on page one.
    narrowed = {"family__id__exact": expected.family_id} if row == "vmsize" else {}
    listed = client.get(reverse(url), narrowed)
    assert expected.pk in {r.pk for r in listed.context["cl"].result_list}
    assert str(expected) in listed.content.decode()
    found = client.get(reverse(url), {"q": search})
    assert expected.pk in {r.pk for r in found.context["cl"].result_list}
    nothing = client.get(reverse(url), {"q": "no-such-thing-anywhere"})
    assert list(nothing.context["cl"].result_list) == []


def test_admin_filters_restricted_gpu_sizes(client, db):
    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(superuser)
    response = client.get(
        reverse("admin:compute_vmsize_changelist"),
        {"family__restricted__exact": "1", "family__category__exact": "gpu"},
    )
    names = {size.name for size in response.context["cl"].result_list}
    assert "Standard_NC6s_v3" in names and "Standard_NC6" not in names


def test_seed_demo_is_idempotent(db, capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    output = capsys.readouterr().out
    assert "alice    / hangar-alice" in output
    assert "approver / hangar-approver" in output
    workspace = Workspace.objects.get(slug="vision-team")
    roles = dict(workspace.memberships.values_list("user__username", "role"))
    assert roles == {"alice": Role.ADMIN, "bob": Role.CONTRIBUTOR, "carol": Role.READER}
    assert workspace.activity.count() == 3
    assert get_user_model().objects.get(username="admin").is_superuser


def test_double_submit_of_the_same_workspace_creates_one(team):
    creator = join_group(team.admin, "Workspace creators")
    actions.create_workspace(creator, name="Twice", slug="twice")
    with pytest.raises(ValidationError, match="already exists"):
        actions.create_workspace(creator, name="Twice", slug="twice")
    assert Workspace.objects.filter(slug="twice").count() == 1


def test_inviting_the_same_person_twice_invites_once(team):
    access = get_access(team.admin, team.workspace.slug)
    first = invitation_actions.invite_member(
        access, identifier=team.outsider.username, role=Role.READER
    )
    again = invitation_actions.invite_member(
        access, identifier=team.outsider.username.upper(), role=Role.ADMIN
    )
    assert first is not None and again is None
    assert Invitation.objects.filter(workspace=team.workspace).count() == 1
    assert Activity.objects.filter(verb=Activity.Verb.MEMBER_INVITED).count() == 1
    assert not Membership.objects.filter(workspace=team.workspace, user=team.outsider).exists()
