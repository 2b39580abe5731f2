from compute.inference.models.batch import (
    BATCH_ENDED,
    BatchJob,
    BatchState,
    MiniBatch,
    MiniBatchState,
)
from compute.inference.models.endpoints import Deployment, Endpoint, KeySlot
from compute.inference.models.registry import ModelKind, RegisteredModel

__all__ = [
    "BATCH_ENDED",
    "BatchJob",
    "BatchState",
    "Deployment",
    "Endpoint",
    "KeySlot",
    "MiniBatch",
    "MiniBatchState",
    "ModelKind",
    "RegisteredModel",
]
