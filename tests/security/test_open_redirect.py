"""A posted `next` is hostile: the pages that send the user back only go to this site."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.actions import computes as compute_actions
from compute.models import VmSize
from workspace.access import get_access

OFF_SITE = [
    "//evil.example/x",
    "/\\evil.example/x",
    "https://evil.example/x",
    "javascript:alert(1)",
]


@pytest.mark.django_db
@pytest.mark.parametrize("target", OFF_SITE)
def test_marking_notifications_read_never_sends_the_user_off_site(client, team, target):
    client.force_login(team.admin)
    response = client.post(reverse("notifications-read"), {"next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("notifications")


@pytest.mark.django_db
def test_marking_notifications_read_goes_back_to_a_page_of_the_site(client, team):
    client.force_login(team.admin)
    page = reverse("compute:list", args=[team.workspace.slug])
    response = client.post(reverse("notifications-read"), {"next": page})
    assert response["Location"] == page


@pytest.mark.django_db
@pytest.mark.parametrize("target", OFF_SITE)
def test_a_compute_action_from_the_inbox_never_sends_the_user_off_site(
    client, team, settings, target, django_capture_on_commit_callbacks
):
    settings.HANGAR_DRIVER = "noop"
    access = get_access(team.admin, team.workspace.slug)
    with django_capture_on_commit_callbacks():
        made = compute_actions.create_instance(
            access, name="box", vm_size=VmSize.objects.get(name="Standard_DS3_v2")
        )
    client.force_login(team.admin)
    url = reverse("compute:action", args=[team.workspace.slug, made.pk, "stop"])
    response = client.post(url, {"next": target})
    assert response.status_code == 302
    assert response["Location"] == made.get_absolute_url()
