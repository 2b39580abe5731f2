from compute.inference.models.endpoints import Deployment, Endpoint, KeySlot
from compute.inference.models.registry import ModelKind, RegisteredModel

__all__ = ["Deployment", "Endpoint", "KeySlot", "ModelKind", "RegisteredModel"]
