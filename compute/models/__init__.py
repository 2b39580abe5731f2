from compute.models.attached import Attachment, SecretKind, TargetKind
from compute.models.catalog import Category, GpuArchitecture, VmFamily, VmSize
from compute.models.compute import Compute, Event, Node, Tier
from compute.models.idle import Reminder, Schedule, ScheduleAction
from compute.models.jobs import CodeKind, ComputeSample, Job, JobRun, JobStatus
from compute.models.quota import FamilyQuota, QuotaRequest, RequestStatus, WorkspaceQuota
from compute.models.states import ComputeKind, ComputeState, NodeState

__all__ = [
    "Attachment",
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
    "SecretKind",
    "TargetKind",
    "Tier",
    "VmFamily",
    "VmSize",
    "WorkspaceQuota",
]
