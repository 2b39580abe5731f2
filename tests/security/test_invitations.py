"""Issue 12, point 4: adding a member by name used to make a stranger a member without
their consent, and its answer told the admin whether the name belonged to an account."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from workspace.models import Membership, Role

pytestmark = pytest.mark.django_db


def answer(response, identifier: str) -> tuple:
    """Everything the admin learns from a response, with the typed name blanked out."""
    body = response.content.decode().replace(identifier, "X")
    alerts = [" ".join(m.split()) for m in re.findall(r'role="alert">(.*?)<button', body, re.S)]
    errors = [" ".join(m.split()) for m in re.findall(r"invalid-feedback[^>]*>(.*?)<", body)]
    return response.status_code, response.redirect_chain, alerts, errors


def test_adding_a_stranger_no_longer_makes_them_a_member_nor_reveals_the_account(client, team):
    client.force_login(team.admin)
    url = reverse("workspace:member-add", args=[team.workspace.slug])
    seen = {}
    for identifier in (team.outsider.username, "no-such-account", team.outsider.email):
        response = client.post(url, {"identifier": identifier, "role": Role.ADMIN}, follow=True)
        seen[identifier] = answer(response, identifier)
    # The stranger is not a member, and the workspace does not exist for them.
    assert not Membership.objects.filter(workspace=team.workspace, user=team.outsider).exists()
    client.force_login(team.outsider)
    assert client.get(reverse("workspace:overview", args=[team.workspace.slug])).status_code == 404
    assert team.workspace.name not in client.get(reverse("workspace:list")).content.decode()
    # One answer for an account that exists and for one that does not.
    answers = list(seen.values())
    assert answers[0] == answers[1] == answers[2], seen
