from compute.models.catalog import Category, GpuArchitecture, VmFamily, VmSize
from compute.models.compute import Compute, Event, Node, Tier
from compute.models.idle import Reminder, Schedule, ScheduleAction
from compute.models.jobs import CodeKind, ComputeSample, Job, JobRun, JobStatus
from compute.models.quota import FamilyQuota, QuotaRequest, RequestStatus, WorkspaceQuota
from compute.models.states import ComputeKind, ComputeState, NodeState

__all__ = [
    "Category",
    "CodeKind",
    "Compute",
    "ComputeKind",
    "ComputeSample",
    "ComputeState",
    "Event",
    "FamilyQuota",
    "GpuArchitecture",
    "Job",
    "JobRun",
    "JobStatus",
    "Node",
    "NodeState",
    "QuotaRequest",
    "Reminder",
    "RequestStatus",
    "Schedule",
    "ScheduleAction",
    "Tier",
    "VmFamily",
    "VmSize",
    "WorkspaceQuota",
]
