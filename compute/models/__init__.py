from compute.models.attached import Attachment, SecretKind, TargetKind
from compute.models.catalog import Category, GpuArchitecture, VmFamily, VmSize
from compute.models.compute import Compute, Node, Tier
from compute.models.environments import (
    DefaultEnvironment,
    Environment,
    EnvironmentImage,
    ImageState,
)
from compute.models.events import Event, EventVerb
from compute.models.hosts import HostState, NodeHost
from compute.models.idle import Reminder, Schedule, ScheduleAction
from compute.models.jobs import CodeKind, ComputeSample, Job, JobRun
from compute.models.quota import FamilyQuota, QuotaRequest, RequestStatus, WorkspaceQuota
from compute.models.states import ComputeKind, ComputeState, ComputeVerb, JobStatus, NodeState

__all__ = [
    "Attachment",
    "Category",
    "CodeKind",
    "Compute",
    "ComputeKind",
    "ComputeSample",
    "ComputeState",
    "ComputeVerb",
    "DefaultEnvironment",
    "Environment",
    "EnvironmentImage",
    "Event",
    "EventVerb",
    "FamilyQuota",
    "GpuArchitecture",
    "HostState",
    "ImageState",
    "Job",
    "JobRun",
    "JobStatus",
    "Node",
    "NodeHost",
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
