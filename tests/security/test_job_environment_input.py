"""A workspace member's hostile input to job environments: names no server error may
come of, and a look-alike of a curated environment that a template must not pick up
(a contributor could otherwise swap the packages teammates run from the template)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.models import Compute, Environment, Job
from tests.unit.test_job_environments import environment

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("typed", ["²", "x:²", "1" * 5000, "tabular:", "a:" + "1" * 5000, ":"])
def test_odd_environment_names_are_refused_not_a_server_error(team, settings, typed):
    settings.HANGAR_DRIVER = "noop"
    from django.test import Client

    from workspace.tokens import create_token

    environment(team)
    secret = create_token(team.contributor, name="ci", expires_in_days=1).secret
    api, base = Client(headers={"Authorization": f"Bearer {secret}"}), "/api/v1/workspaces/vision"
    made = api.post(
        f"{base}/computes/clusters",
        {"name": "odd", "vm_size": "Standard_DS3_v2", "environment": typed},
        content_type="application/json",
    )
    assert made.status_code == 422, made.content[:300]
    sent = api.post(f"{base}/jobs", {"compute": typed, "command": "true", "runs_in": typed})
    assert sent.status_code in (404, 422), sent.content[:300]
    assert not Compute.objects.exists() and not Job.objects.exists()


def test_a_template_takes_the_curated_environment_not_a_look_alike(team, client):
    environment(team, name="scikit-learn")  # a workspace's own, of the curated one's name
    client.force_login(team.contributor)
    submit_url = reverse("compute:job-submit", args=[team.workspace.slug])
    form = client.get(submit_url, {"template": "train-classifier"}).context["form"]
    curated = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    assert form["runs_in"].value() == str(curated.pk)
