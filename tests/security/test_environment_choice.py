"""A compute runs an environment of its own workspace or a curated one: a member of another
workspace naming this workspace's environment by id (in the form or to the action) gets
the form's refusal, and nothing is made or queued."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from compute.actions.computes import create_instance
from compute.models import Compute, VmSize
from tests.security.test_foreign_ids import failed_environment
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = pytest.mark.django_db


def test_another_workspaces_environment_cannot_be_chosen(client, team):
    victims = failed_environment(team.workspace)
    attacker = make_team("attacker")
    size = VmSize.objects.get(name="Standard_DS3_v2")
    client.force_login(attacker.contributor)
    response = client.post(
        reverse("compute:create", args=[attacker.workspace.slug, "instance"]),
        {"name": "thief", "vm_size": size.pk, "environment": victims.pk},
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()  # not among its choices
    assert victims.name not in response.content.decode()  # not even offered
    with pytest.raises(ValidationError, match="Choose an environment"):
        create_instance(
            get_access(attacker.contributor, attacker.workspace.slug),
            name="thief2",
            vm_size=size,
            environment=victims,
        )
    assert not Compute.objects.filter(workspace=attacker.workspace).exists()
