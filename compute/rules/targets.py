"""Every kind of attached compute, what each supports, and which Hangar can run today.

The one place the support matrix of seeds/FACTS.md lives ("Training targets and what each
supports"); the attach page and every target page read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User

from compute.models import TargetKind

ATTACH_HOST_PERMISSION = "compute.attach_local_computer"

# The columns of the matrix.
FEATURES = ("Automated ML", "ML pipelines", "Designer")


@dataclass(frozen=True)
class Kind:
    key: str
    label: str
    summary: str
    # One entry per FEATURES column: "yes", "-" or a qualified yes.
    supports: tuple[str, str, str]
    runnable: bool
    # What the attach form asks for besides the name.
    connects_over_ssh: bool = False
    host_label: str = "Host"
    # Runs jobs as processes on Hangar's own machine: the operator's and site staff's call.
    on_hangar_host: bool = False

    @property
    def matrix(self) -> list[tuple[str, str]]:
        return list(zip(FEATURES, self.supports, strict=True))


KINDS: dict[str, Kind] = {
    kind.key: kind
    for kind in (
        Kind(
            TargetKind.LOCAL,
            "Local computer",
            "The machine Hangar's workers run on: jobs run as local processes.",
            ("yes", "-", "-"),
            runnable=True,
            on_hangar_host=True,
        ),
        Kind(
            TargetKind.REMOTE_VM,
            "Remote VM",
            "A Linux machine you own, reached over SSH; jobs run detached on it.",
            ("yes", "yes", "-"),
            runnable=True,
            connects_over_ssh=True,
        ),
        Kind(
            TargetKind.HDINSIGHT,
            "HDInsight",
            "A Spark/Hadoop cluster, reached over SSH on its head node.",
            ("-", "yes", "-"),
            runnable=True,
            connects_over_ssh=True,
            host_label="Head-node host",
        ),
        Kind(
            TargetKind.BATCH,
            "Batch",
            "A Batch account's pools, for large parallel pipelines.",
            ("-", "yes", "-"),
            runnable=False,
        ),
        Kind(
            TargetKind.DATABRICKS,
            "Databricks",
            "A Databricks workspace's clusters.",
            ("yes (SDK local mode only)", "yes", "-"),
            runnable=False,
        ),
        Kind(
            TargetKind.DATA_LAKE,
            "Data Lake Analytics",
            "U-SQL jobs in a Data Lake Analytics account.",
            ("-", "yes", "-"),
            runnable=False,
        ),
        Kind(
            TargetKind.CONTAINER_INSTANCE,
            "Container instances",
            "An inference target for tests: small CPU models (< 1 GB, < 48 GB RAM).",
            ("-", "-", "-"),
            runnable=False,
        ),
        Kind(
            TargetKind.KUBERNETES,
            "Kubernetes",
            "A Kubernetes cluster, Arc-enabled included: real-time inference at scale.",
            ("-", "-", "-"),
            runnable=False,
        ),
    )
}


def kind_of(key: str) -> Kind | None:
    return KINDS.get(key)


def may_attach_host(user: User | AnonymousUser) -> bool:
    """Site staff with the permission (superusers hold every permission)."""
    return bool(
        getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
        and user.has_perm(ATTACH_HOST_PERMISSION)
    )


def why_unavailable(kind: Kind, user: User | AnonymousUser) -> str:
    """Why this user cannot attach this kind here, or "" when they can."""
    if not kind.on_hangar_host:
        return ""
    if not settings.HANGAR_ALLOW_HOST_PROCESSES:
        return (
            "The operator has not allowed host processes on this site "
            "(HANGAR_ALLOW_HOST_PROCESSES), so jobs cannot run on Hangar's own machine."
        )
    if not may_attach_host(user):
        return (
            "Only site staff with the “Can attach the local computer” permission may attach "
            "it: its jobs run on Hangar's own machine. Ask your site administrator."
        )
    return ""
