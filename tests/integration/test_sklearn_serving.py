"""The issue's first test, on a real scikit-learn model: a random forest trained in this test
(in the scikit-learn environment's own image, off the network), registered, deployed on a
managed cluster, and asked through the real gateway process with the endpoint's key."""

from __future__ import annotations

import docker
import pytest

from compute.actions.environments import queue_build, sync_curated
from compute.inference.actions.endpoints import add_deployment, create_endpoint
from compute.inference.actions.models import register_model
from compute.lib import secrets
from compute.models import Environment, ImageState, VmSize
from tests.integration.helpers import wait_for
from tests.integration.test_gateway import post
from tests.support.gateway import Processes
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [
    pytest.mark.integration,
    pytest.mark.image_builds,  # the scikit-learn image: trains the model, runs the replica
    pytest.mark.django_db(transaction=True),
]

TRAIN = """
import pickle
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

features, labels = load_iris(return_X_y=True)
model = RandomForestClassifier(n_estimators=25, random_state=0).fit(features, labels)
with open("/out/model.pkl", "wb") as out:
    pickle.dump(model, out)
print("accuracy", model.score(features, labels))
"""

SCORE = """
import json, os, pickle
from pathlib import Path

model = None


def init():
    global model
    model = pickle.loads(Path(os.environ["HANGAR_MODEL_DIR"], "model.pkl").read_bytes())


def run(request_json):
    rows = json.loads(request_json)["data"]
    return {"predictions": [int(label) for label in model.predict(rows)]}
"""

# One flower of each species (setosa 0, versicolor 1, virginica 2), from the iris data.
FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.7, 3.0, 5.2, 2.3]]


def test_a_scikit_learn_model_trained_here_predicts_through_the_gateway_with_its_key(
    workers, catalog, settings, tmp_path
):
    settings.HANGAR_DRIVER = "docker"
    workers.get("docker")
    team = make_team("forest")
    access = get_access(team.contributor, team.workspace.slug)
    sync_curated()
    sklearn = Environment.objects.filter(workspace=None, name="scikit-learn").latest("version")
    queue_build(sklearn.image)
    wait_for(
        lambda: Environment.objects.get(pk=sklearn.pk).image.state == ImageState.READY,
        timeout=600,
        what="the scikit-learn image (adopted in a second when the engine has it)",
    )
    sklearn.refresh_from_db()
    tmp_path.chmod(0o777)
    output = docker.from_env().containers.run(
        sklearn.image.tag, ["python3", "-c", TRAIN], volumes={str(tmp_path): {"bind": "/out"}},
        network_mode="none", remove=True, user="0",
    )  # fmt: skip
    assert b"accuracy" in output
    weights = (tmp_path / "model.pkl").read_bytes()
    model = register_model(access, name="forest", file_name="model.pkl", data=weights)
    endpoint = create_endpoint(access, name="iris")
    add_deployment(
        access, endpoint, name="blue", model=model, scoring_script=SCORE,
        target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_D2s_v3"),
        environment=sklearn, min_replicas=1, max_replicas=1, request_timeout_ms=60_000,
    )  # fmt: skip
    processes = Processes()
    try:
        url = processes.gateway() + "/score/forest/iris"
        key = secrets.decrypt(endpoint.primary_key)
        status, answer, _ = post(url, {"data": FLOWERS}, key)
        assert (status, answer) == (200, {"predictions": [0, 1, 2]})
        status, answer, _ = post(url, {"data": FLOWERS}, "not-the-key")
        assert status == 401 and "key" in answer["error"].lower()
        second = secrets.decrypt(endpoint.secondary_key)
        assert post(url, {"data": FLOWERS[:1]}, second)[:2] == (200, {"predictions": [0]})
    finally:
        processes.stop()
        remove_all_nodes()
