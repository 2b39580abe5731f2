from compute.models.catalog import Category, GpuArchitecture, VmFamily, VmSize
from compute.models.compute import Compute, Event, Node, Tier
from compute.models.states import ComputeKind, ComputeState, NodeState

__all__ = [
    "Category",
    "Compute",
    "ComputeKind",
    "ComputeState",
    "Event",
    "GpuArchitecture",
    "Node",
    "NodeState",
    "Tier",
    "VmFamily",
    "VmSize",
]
