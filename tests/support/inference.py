"""Inference rows for tests that need them to exist (pages, access checks): a registered
model (row and files) and an endpoint with two deployments."""

from __future__ import annotations

from compute.inference.actions.endpoints import new_key
from compute.inference.models import Deployment, Endpoint, ModelKind, RegisteredModel
from compute.lib import snapshots
from compute.models import VmSize
from workspace.models import Workspace

SCORING = "def init():\n    pass\n\n\ndef run(request_json):\n    return request_json\n"


def make_model(workspace: Workspace, name: str = "iris", size_bytes: int = 12) -> RegisteredModel:
    model = RegisteredModel.objects.create(
        workspace=workspace,
        name=name,
        kind=ModelKind.FILE,
        file_name="model.pkl",
        size_bytes=size_bytes,
    )
    store = snapshots.model_store()
    snapshots.remove_tree(store.folder(model.pk))  # a folder of an earlier test's row
    snapshots.store_file(model.pk, "model.pkl", b"x" * size_bytes, store)
    return model


def make_endpoint(workspace: Workspace, model: RegisteredModel) -> Endpoint:
    primary, primary_hash = new_key()
    secondary, secondary_hash = new_key()
    endpoint = Endpoint.objects.create(
        workspace=workspace,
        name="scorer",
        primary_key=primary,
        primary_key_hash=primary_hash,
        secondary_key=secondary,
        secondary_key_hash=secondary_hash,
    )
    size = VmSize.objects.get(name="Standard_DS3_v2")
    for name, share in (("blue", 100), ("green", 0)):
        Deployment.objects.create(
            endpoint=endpoint, name=name, model=model, scoring_script=SCORING,
            target="managed_cluster", vm_size=size, traffic=share,
        )  # fmt: skip
    return endpoint
