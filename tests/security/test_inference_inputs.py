"""A workspace member's hostile input to models and deployments: an upload that escapes
its folder, and another workspace's model named in a deployment."""

from __future__ import annotations

import io
import zipfile

import pytest

from compute.inference.models import Deployment, RegisteredModel
from tests.support.inference import make_endpoint, make_model
from tests.unit.test_inference_pages import deployment, register, url

pytestmark = pytest.mark.django_db


def test_a_zip_that_escapes_its_folder_is_refused_and_nothing_is_kept(client, team):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as folder:
        folder.writestr("../../outside.txt", "gotcha")
    client.force_login(team.contributor)
    answer = register(client, team, "evil", "model.zip", archive.getvalue())
    assert answer.status_code == 200
    assert "points outside its folder" in answer.content.decode()
    assert not RegisteredModel.objects.exists()


def test_another_workspaces_model_cannot_be_deployed(client, team):
    from tests.support.teams import make_team

    other = make_team("rivals")
    theirs = make_model(other.workspace, "secret-model")
    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    client.force_login(team.contributor)
    answer = client.post(
        url(team, "deployment-create", endpoint.pk),
        deployment(theirs, "Standard_DS3_v2", name="stolen"),
    )
    assert answer.status_code == 200 and "Select a valid choice" in answer.content.decode()
    assert not Deployment.objects.filter(name="stolen").exists()
