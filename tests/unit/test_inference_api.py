"""Models, endpoints and deployments through /api/v1/: the pages' rules and refusals, as
JSON, with a personal access token."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from compute.inference.models import Deployment, Endpoint, RegisteredModel
from tests.support.inference import SCORING
from tests.support.teams import make_team
from workspace.tokens import create_token

pytestmark = pytest.mark.django_db
BASE = "/api/v1/workspaces/vision"


def api_as(user) -> Client:
    secret = create_token(user, name="ci", expires_in_days=1).secret
    return Client(headers={"Authorization": f"Bearer {secret}"})


def test_a_model_endpoint_and_deployment_through_the_api(team):
    api = api_as(team.contributor)
    for data in (b"w1", b"w22"):
        made = api.post(
            f"{BASE}/models", {"name": "iris", "upload": SimpleUploadedFile("m.pkl", data)}
        )
        assert made.status_code == 201, made.content
    assert made.json()["version"] == 2 and made.json()["size_bytes"] == 3
    assert [m["version"] for m in api.get(f"{BASE}/models").json()["results"]] == [2, 1]

    endpoint = api.post(f"{BASE}/endpoints", {"name": "iris-scorer"}, "application/json").json()
    keys = api.get(f"{BASE}/endpoints/{endpoint['id']}/keys").json()
    again = api.post(f"{BASE}/endpoints/{endpoint['id']}/keys/secondary/regenerate").json()
    assert again["primary"] == keys["primary"] and again["secondary"] != keys["secondary"]

    deploy = {
        "name": "blue",
        "model": "iris:1",
        "scoring_script": SCORING,
        "vm_size": "Standard_DS3_v2",
        "min_replicas": 0,
        "max_replicas": 2,
    }
    blue = api.post(f"{BASE}/endpoints/{endpoint['id']}/deployments", deploy, "application/json")
    assert blue.status_code == 201, blue.content
    assert (blue.json()["model"], blue.json()["traffic"]) == ("iris:1", 100)
    green = api.post(
        f"{BASE}/endpoints/{endpoint['id']}/deployments",
        {**deploy, "name": "green", "model": "iris"},
        "application/json",
    ).json()
    assert (green["model"], green["traffic"]) == ("iris:2", 0)
    split = api.put(
        f"{BASE}/endpoints/{endpoint['id']}/traffic", {"blue": 80, "green": 20}, "application/json"
    )
    assert split.status_code == 200, split.content
    shares = {d["name"]: d["traffic"] for d in split.json()["deployments"]}
    assert shares == {"blue": 80, "green": 20}
    assert split.json()["scoring_path"] == "/score/vision/iris-scorer"
    # Where a client sends its requests: the gateway's address, as the page's snippets say.
    assert split.json()["scoring_url"] == f"{settings.HANGAR_SCORE_URL}/score/vision/iris-scorer"


@pytest.mark.parametrize(
    "changes, field, says",
    [
        (
            {"target": "container_instance", "vm_size": "Standard_NC6", "min_replicas": 1},
            "vm_size",
            "GPU serving needs a managed compute cluster",
        ),
        ({"model": "iris:7"}, "model", "Select a valid choice"),
        ({"model": "²"}, "model", "Select a valid choice"),
        ({"vm_size": "Standard_Nope"}, "vm_size", "Select a valid choice"),
        ({"environment": "x:²"}, "environment", "Select a valid choice"),
    ],
)
def test_a_refused_deployment_says_why_and_adds_nothing(team, changes, field, says):
    api = api_as(team.contributor)
    api.post(f"{BASE}/models", {"name": "iris", "upload": SimpleUploadedFile("m.pkl", b"w")})
    endpoint = api.post(f"{BASE}/endpoints", {"name": "scorer"}, "application/json").json()
    deploy = {
        "name": "blue",
        "model": "iris",
        "scoring_script": SCORING,
        "vm_size": "Standard_DS3_v2",
        "max_replicas": 1,
        **changes,
    }
    refused = api.post(f"{BASE}/endpoints/{endpoint['id']}/deployments", deploy, "application/json")
    assert refused.status_code == 422, refused.content
    assert says in " ".join(refused.json()["errors"][field])
    assert not Deployment.objects.exists()


def test_readers_get_no_keys_and_outsiders_no_endpoint(team):
    api = api_as(team.contributor)
    endpoint = api.post(f"{BASE}/endpoints", {"name": "scorer"}, "application/json").json()
    reader = api_as(team.reader)
    assert reader.get(f"{BASE}/endpoints/{endpoint['id']}").status_code == 200
    assert reader.get(f"{BASE}/endpoints/{endpoint['id']}/keys").status_code == 403
    other = make_team("rivals")
    outsider = api_as(other.admin)
    assert outsider.get(f"{BASE}/endpoints/{endpoint['id']}").status_code == 404
    theirs = "/api/v1/workspaces/rivals"
    assert outsider.get(f"{theirs}/endpoints/{endpoint['id']}/keys").status_code == 404
    assert Endpoint.objects.count() == 1 and not RegisteredModel.objects.exists()


def test_a_model_over_the_job_code_cap_but_under_the_model_cap_registers(team, settings):
    settings.HANGAR_CODE_LIMIT_MB, settings.HANGAR_MODEL_LIMIT_MB = 1, 5
    api = api_as(team.contributor)
    weights = SimpleUploadedFile("big.onnx", b"w" * (2 * 1024 * 1024))
    made = api.post(f"{BASE}/models", {"name": "big", "upload": weights})
    assert made.status_code == 201, made.content
    assert made.json()["size_bytes"] == 2 * 1024 * 1024
