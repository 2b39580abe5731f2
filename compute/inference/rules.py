"""The source document's inference targets and their rules, on plain values (no models):
what each target is for, and what a deployment on it may ask for. Every refusal says
which rule of the seed it follows (../shared/seeds/FACTS.md, "Inference targets")."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from enum import StrEnum

GIB = 1024**3


class Target(StrEnum):
    LOCAL = "local_web_service"
    CONTAINER_INSTANCE = "container_instance"
    MANAGED_CLUSTER = "managed_cluster"


@dataclass(frozen=True)
class TargetFacts:
    label: str
    used_for: str
    gpu: bool
    max_replicas: int | None  # None: as many as the quota allows
    note: str


TARGETS: dict[Target, TargetFacts] = {
    Target.LOCAL: TargetFacts(
        "Local web service",
        "test / debug",
        gpu=False,
        max_replicas=1,
        note="Limited testing and troubleshooting: one replica, no GPU.",
    ),
    Target.CONTAINER_INSTANCE: TargetFacts(
        "Container instance",
        "test or development",
        gpu=False,
        max_replicas=1,
        note="Small CPU workloads: one replica, under 48 GB of memory, models under 1 GB.",
    ),
    Target.MANAGED_CLUSTER: TargetFacts(
        "Managed compute cluster",
        "real-time serving and batch scoring",
        gpu=True,
        max_replicas=None,
        note="Production: replicas scale with the load (to zero when idle), GPUs allowed.",
    ),
}

CONTAINER_INSTANCE_MEMORY_GIB = 48  # "< 48 GB RAM"
CONTAINER_INSTANCE_MODEL_BYTES = 1 * GIB  # "only small models < 1 GB"


@dataclass(frozen=True)
class Ask:
    """What a deployment asks of its target."""

    target: Target
    gpus: int
    memory_gib: float
    model_bytes: int
    min_replicas: int
    max_replicas: int


def refusals(ask: Ask) -> dict[str, list[str]]:
    """Each rule the ask breaks, by the form field it concerns; empty when it fits."""
    facts = TARGETS[ask.target]
    found: dict[str, list[str]] = defaultdict(list)
    if ask.min_replicas < 0 or ask.max_replicas < 1:
        found["max_replicas"].append("Max replicas is at least 1, and min replicas at least 0.")
    elif ask.min_replicas > ask.max_replicas:
        found["min_replicas"].append("Min replicas cannot be above max replicas.")
    if facts.max_replicas is not None and ask.max_replicas > facts.max_replicas:
        found["max_replicas"].append(
            f"A {facts.label.lower()} runs one replica ({facts.used_for})."
        )
    if facts.max_replicas is not None and ask.min_replicas == 0:
        found["min_replicas"].append(
            f"A {facts.label.lower()} keeps its one replica: only a managed cluster scales to zero."
        )
    if ask.gpus and not facts.gpu:
        found["vm_size"].append(
            "GPU serving needs a managed compute cluster (the real-time target with GPUs); "
            f"a {facts.label.lower()} is CPU only."
        )
    if ask.target == Target.CONTAINER_INSTANCE:
        if ask.memory_gib >= CONTAINER_INSTANCE_MEMORY_GIB:
            found["vm_size"].append(
                f"A container instance needs less than {CONTAINER_INSTANCE_MEMORY_GIB} GB of "
                f"memory; this size has {ask.memory_gib:g} GiB. Deploy to a managed cluster."
            )
        if ask.model_bytes >= CONTAINER_INSTANCE_MODEL_BYTES:
            found["model"].append(
                "A container instance serves only models under 1 GB; this one is "
                f"{ask.model_bytes / GIB:.2f} GB. Deploy it to a managed cluster."
            )
    return dict(found)


@dataclass(frozen=True)
class Traffic:
    """What the gateway saw of a deployment since the last look."""

    concurrency: float  # mean requests in flight (Little's law: rate × time in each)
    per_second: float
    since_needed: float  # seconds since the load last needed the current replicas
    since_request: float  # seconds since the last request


@dataclass(frozen=True)
class Scaling:
    current: int
    low: int  # min replicas
    high: int  # max replicas
    per_replica: int  # requests in flight per replica the autoscaler aims at
    down_delay: float  # seconds of less load before a replica goes
    zero_after: float  # seconds without a request before the last one goes (min 0)


def replicas_wanted(traffic: Traffic, scaling: Scaling) -> tuple[int, str]:
    """How many replicas now, and why (empty when it stays). Up at once; down one step
    after `down_delay` of less load; to zero after `zero_after` with no request."""
    need = replicas_needed(traffic, scaling)
    load = f"{traffic.concurrency:.1f} in flight on average, {traffic.per_second:.1f} requests/s"
    if need > scaling.current:
        return need, f"{load}; {scaling.per_replica} per replica"
    if need == scaling.current or traffic.since_needed < scaling.down_delay:
        return scaling.current, ""
    if need == 0 and traffic.since_request < scaling.zero_after:
        need = 1  # the last replica stays until no request for zero_after
        if scaling.current == 1:
            return 1, ""
    quiet = f"{traffic.since_needed:.0f} s"
    return need, f"{load} for {quiet} (≥ {scaling.down_delay:g} s)"


def replicas_needed(traffic: Traffic, scaling: Scaling) -> int:
    """What the load alone asks for, within min..max replicas."""
    need = math.ceil(traffic.concurrency / scaling.per_replica) if traffic.concurrency else 0
    return max(scaling.low, min(scaling.high, need))
