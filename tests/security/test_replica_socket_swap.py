"""A replica's socket folder is its own to write in: its scoring script could replace its
socket by a link to another replica's (another workspace's model), and have the gateway
score on that model with its own endpoint's key. The gateway checks who listens (the
kernel's peer credentials against the replica's container) and refuses anyone else."""

from __future__ import annotations

import json
import os

import pytest

from compute.drivers.base import container_name
from compute.inference.actions.endpoints import create_endpoint
from compute.inference.models import Deployment
from compute.lib import replicas, secrets
from compute.models import NodeState, VmSize
from tests.integration.test_gateway import post
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.gateway import Processes
from tests.support.inference import make_model
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
VICTIM = (
    "import json\n\ndef init():\n    pass\n\ndef run(request_json):\n    return 'victim model'\n"
)


def deployment_of(team, name: str, container_ref: str):
    access = get_access(team.contributor, team.workspace.slug)
    endpoint = create_endpoint(access, name=name)
    compute = ComputeFactory(workspace=team.workspace, serving={"deployment": 0, "model": 0})
    Deployment.objects.create(
        endpoint=endpoint, name="blue", model=make_model(team.workspace), scoring_script=VICTIM,
        traffic=100, target="managed_cluster", compute=compute,
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
    )  # fmt: skip
    node = NodeFactory(compute=compute, state=NodeState.IDLE, container_ref=container_ref)
    return endpoint, node


def test_a_replica_that_links_its_socket_to_another_workspaces_is_refused(
    catalog, settings, tmp_path
):
    _, victim_node = deployment_of(make_team("victims"), "secret", "")
    # The attacker's replica is a Docker container (its id below): the gateway checks it.
    attacker_endpoint, attacker_node = deployment_of(make_team("attackers"), "mine", "a" * 64)
    processes = Processes()
    try:
        script = tmp_path / "score.py"
        script.write_text(VICTIM)
        victim_socket = processes.replica(victim_node, script)
        # What the attacker's scoring script can do in its own socket folder.
        mine = replicas.socket_path(
            container_name(settings.HANGAR_SITE, attacker_node.compute_id, attacker_node.pk)
        )
        replicas.prepare_socket_folder(mine.parent)
        os.symlink(victim_socket, mine)
        url = processes.gateway() + "/score/attackers/mine"
        status, answer, _ = post(url, {}, secrets.decrypt(attacker_endpoint.primary_key))
        assert status == 502 and "is not its own" in answer["error"], answer
        assert "victim model" not in json.dumps(answer)
    finally:
        processes.stop()
