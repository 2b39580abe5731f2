"""Inference rows for tests that need them to exist (pages, access checks): a registered
model (row and files), an endpoint with two deployments, a batch job with its ledger."""

from __future__ import annotations

from compute.inference.actions.endpoints import new_key
from compute.inference.models import (
    BatchJob,
    Deployment,
    Endpoint,
    MiniBatch,
    MiniBatchState,
    ModelKind,
    RegisteredModel,
)
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


def make_batch(workspace: Workspace, model: RegisteredModel, name: str = "nightly") -> BatchJob:
    """A running batch job as its pages show it: one mini-batch done (with its rows), one
    failed past its attempts, one running; no cluster (no worker acts on it)."""
    batch = BatchJob.objects.create(
        workspace=workspace, name=name, model=model, scoring_script=SCORING,
        vm_size=VmSize.objects.get(name="Standard_D2s_v3"), input_name="3 files",
        file_count=3, batches_total=3, batches_done=1, batches_failed=1, row_count=1,
    )  # fmt: skip
    MiniBatch.objects.create(
        batch=batch, index=0, files=["a.txt"], state=MiniBatchState.DONE, attempts=1,
        rows="a.txt,small\n", row_count=1,
    )  # fmt: skip
    MiniBatch.objects.create(
        batch=batch, index=1, files=["b.txt"], state=MiniBatchState.FAILED, attempts=3,
        error="exit code 1: ValueError: cannot read b.txt",
    )  # fmt: skip
    MiniBatch.objects.create(
        batch=batch, index=2, files=["c.txt"], state=MiniBatchState.RUNNING, attempts=1
    )
    return batch
