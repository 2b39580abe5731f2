"""A workspace member's hostile input to models and deployments: an upload that escapes
its folder or holds no file, another workspace's model named in a deployment, and a
"Try it" that would hold a web worker past the deployment's timeout."""

from __future__ import annotations

import io
import socket
import time
import zipfile

import pytest

from compute.inference.models import Deployment, RegisteredModel
from compute.lib import snapshots
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


@pytest.mark.parametrize("entries", [[], ["weights/"]], ids=["no entry", "folders only"])
def test_a_zip_with_no_file_registers_no_model_and_stores_nothing(client, team, entries):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as folder:
        for entry in entries:
            folder.writestr(entry, "")
    store = snapshots.model_store()
    before = set(store.root.iterdir()) if store.root.exists() else set()
    client.force_login(team.contributor)
    answer = register(client, team, "hollow", "model.zip", archive.getvalue())
    assert answer.status_code == 200
    assert "The zip holds no files" in answer.content.decode()
    assert not RegisteredModel.objects.exists()
    assert (set(store.root.iterdir()) if store.root.exists() else set()) == before


def test_try_it_against_a_silent_gateway_holds_the_web_worker_only_the_request_timeout(
    client, team, settings
):
    """A gateway (or a replica behind it) that never answers held a Django worker for a
    minute per click; now the deployment's request timeout and a little more."""
    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    Deployment.objects.filter(endpoint=endpoint).update(request_timeout_ms=1000)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does), never answers
    settings.HANGAR_SCORE_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
    client.force_login(team.contributor)
    try:
        started = time.monotonic()
        page = client.post(url(team, "try", endpoint.pk), {"body": "{}", "deployment": "blue"})
        took = time.monotonic() - started
    finally:
        silent.close()
    assert page.status_code == 200 and "No answer within 3 s" in page.content.decode()
    assert took < 5, took
