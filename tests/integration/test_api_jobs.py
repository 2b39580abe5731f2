"""A script's whole round trip through the API on real nodes: create a cluster, submit a
job with a code folder, follow its output live to the end, read its exit code."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.test import Client

from compute.models import Compute, ComputeState
from tests.integration.helpers import wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.tokens import create_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
W = "/api/v1/workspaces/apijobs"


@pytest.fixture
def api(workers, catalog, node_image, settings):
    settings.HANGAR_DRIVER = "docker"
    settings.HANGAR_NODE_NETWORK = "host"
    workers.get("docker", HANGAR_NODE_NETWORK="host")
    team = make_team("apijobs")
    secret = create_token(team.contributor, name="ci", expires_in_days=1).secret
    yield {"client": Client(), "headers": {"Authorization": f"Bearer {secret}"}}
    remove_all_nodes()


def code_folder() -> io.BytesIO:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as folder:
        folder.writestr("train.sh", 'for i in 1 2 3; do echo "epoch $i"; sleep 0.2; done\nexit 3\n')
    archive.seek(0)
    archive.name = "project.zip"
    return archive


def events_of(response) -> list[tuple[str, dict]]:
    """The server-sent events of a finished stream, as (name, data)."""
    text = b"".join(response.streaming_content).decode()
    found = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


def test_submit_a_code_folder_and_follow_it_to_its_exit_code(api):
    client, headers = api["client"], api["headers"]
    made = client.post(
        f"{W}/computes/clusters",
        {"name": "trainers", "vm_size": "Standard_DS3_v2", "min_nodes": 0, "max_nodes": 1},
        content_type="application/json",
        headers=headers,
    )
    assert made.status_code == 201, made.content
    wait_for(lambda: Compute.objects.get(name="trainers").state == ComputeState.STEADY)

    submitted = client.post(
        f"{W}/jobs",
        {"compute": "trainers", "command": "sh train.sh", "upload": code_folder()},
        headers=headers,
    )
    assert submitted.status_code == 201, submitted.content
    job = submitted.json()
    assert (job["status"], job["code"], job["compute"]) == ("queued", "project.zip", "trainers")

    followed = events_of(client.get(f"{W}/jobs/{job['id']}/follow", headers=headers))
    text = "".join(data["text"] for name, data in followed if name == "output")
    assert "epoch 1\nepoch 2\nepoch 3\n" in text
    name, end = followed[-1]
    assert name == "end" and end["exit_code"] == 3 and end["status"] == "failed"

    # Reconnecting from an offset sends only what came after it, then the end again.
    offset = text.index("epoch 3")
    again = events_of(
        client.get(f"{W}/jobs/{job['id']}/follow", {"offset": offset}, headers=headers)
    )
    assert "".join(d["text"] for n, d in again if n == "output").startswith("epoch 3")
    assert again[-1][0] == "end"

    shown = client.get(f"{W}/jobs/{job['id']}", headers=headers).json()
    assert (shown["status"], shown["exit_code"]) == ("failed", 3)
    log = client.get(f"{W}/jobs/{job['id']}/output", headers=headers)
    assert b"epoch 3" in b"".join(log.streaming_content)
