"""Every kind of attached compute, what each supports, and which Hangar can run today.

The one place the support matrix of seeds/FACTS.md lives ("Training targets and what each
supports"); the attach page and every target page read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from compute.models import TargetKind

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
