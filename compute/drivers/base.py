"""The one small interface every driver implements.

A driver knows nothing of Django models: it is handed plain `NodeSpec`s and answers with
plain `NodeObservation`s. Every call is idempotent, so a controller may repeat it after a
crash without doubling anything.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from compute.lib import jobfiles
from compute.lib.jobfiles import RunState
from compute.lib.output_collection import Sink

LABEL_SITE = "hangar.site"
LABEL_WORKSPACE = "hangar.workspace"
LABEL_COMPUTE = "hangar.compute"
LABEL_NODE = "hangar.node"
LABEL_NODE_NAME = "hangar.node-name"


class DriverUnavailable(Exception):
    """The place nodes live cannot be reached right now; retrying later may succeed."""


class NodeStartError(Exception):
    """A node cannot be started as specified (missing image, bad limits): retrying won't help."""


@dataclass(frozen=True)
class HostFolder:
    """A folder of this machine a node sees: a serving replica's model and scripts (read
    only), and the folder its scoring socket appears in (only Hangar reaches it there)."""

    host_path: str
    node_path: str
    read_only: bool = True


@dataclass(frozen=True)
class NodeSpec:
    site: str
    workspace: str
    compute_id: int
    node_id: int
    node_name: str
    image: str
    cpus: float
    memory_bytes: int
    network: str
    command: tuple[str, ...]
    # May hold an instance's decrypted secret variables: kept out of repr.
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    pids_limit: int = 512
    tmp_mb: int = 256
    # None but for serving replicas: training nodes see no folder of this machine.
    folders: tuple[HostFolder, ...] = ()
    # The node host placement chose ("": the default engine) and the GPUs it gives.
    host: str = ""
    gpus: int = 0

    @property
    def container_name(self) -> str:
        # Deterministic: the same node row always maps to the same container, so a retry
        # after a crash finds (adopts) the container instead of making a second one.
        return container_name(self.site, self.compute_id, self.node_id)

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_SITE: self.site,
            LABEL_WORKSPACE: self.workspace,
            LABEL_COMPUTE: str(self.compute_id),
            LABEL_NODE: str(self.node_id),
            LABEL_NODE_NAME: self.node_name,
        }


def container_name(site: str, compute_id: int, node_id: int) -> str:
    return f"hangar-{site}-c{compute_id}-n{node_id}"


@dataclass(frozen=True)
class NodeObservation:
    name: str
    ref: str
    compute_id: int
    node_id: int
    running: bool
    status: str
    exit_code: int | None = None

    @property
    def describe(self) -> str:
        if self.running:
            return "running"
        if self.exit_code is not None:
            return f"exited with code {self.exit_code}"
        return self.status


@dataclass(frozen=True)
class NodeLog:
    """The last of a node container's own output (its main process's stdout and stderr,
    interleaved): raw bytes the node wrote, to be cleaned before anyone reads them."""

    output: bytes = b""
    available: bool = True
    cut: bool = False  # there was more before what is here
    note: str = ""  # why there is nothing (not available, the container gone)


@dataclass(frozen=True)
class JobLaunch:
    """One rank of a job to start, detached, on a node."""

    container: str
    run_key: str
    command: str
    # May hold decrypted secret variables: kept out of repr, so no log line or traceback
    # that prints a launch prints them.
    environment: dict[str, str] = field(repr=False)
    code_job_id: int | None = None
    # Called (from another thread) the moment the run ends, when the driver can tell:
    # the controller collects it at once instead of at the next sweep.
    on_finish: Callable[[], None] | None = None


class JobRunner(Protocol):
    """What the job steps (controllers/jobs.py) need of wherever a job's ranks run: every
    driver, for ranks on its nodes, and the runners of attached computes (runners.py:
    LocalRunner, SSHRunner), which have no nodes. Same idempotence as a driver's calls."""

    def start_job(self, launch: JobLaunch) -> None:
        """Start one rank detached: it must outlive the worker that started it."""
        ...

    def cancel_job(self, container: str, run_key: str) -> None:
        """Stop a rank promptly: TERM to its process group, KILL a second later."""
        ...

    def job_state(self, run_key: str, container: str = "") -> RunState:
        """Started? Exit code? From the run's record, which outlives any worker."""
        ...

    def release_run(self, container: str, run_key: str) -> None:
        """A run was collected: end whatever of it is left and remove its files."""
        ...

    def collect_outputs(
        self, container: str, run_key: str, code_job_id: int | None, sink: Sink
    ) -> None:
        """Hand every entry under ./outputs of the ended run's working folder to `sink`
        (which decides what is kept), before `release_run` clears that folder. Nothing
        there: nothing handed. Read-only on the node's side."""
        ...


class Driver(JobRunner, abc.ABC):
    name: str = ""
    label: str = ""  # what users call the place nodes live, for messages

    def __init__(self, site: str) -> None:
        self.site = site

    @abc.abstractmethod
    def ensure_node(self, spec: NodeSpec) -> NodeObservation:
        """Create and start the node's container unless it already exists; adopt it if so."""

    @abc.abstractmethod
    def remove_node(self, name: str) -> bool:
        """Stop and remove a container by name; True if something was removed."""

    @abc.abstractmethod
    def list_nodes(self, compute_id: int | None = None) -> list[NodeObservation]:
        """Every container of this site (or of one compute), running or not."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise DriverUnavailable if the driver cannot work right now."""

    @abc.abstractmethod
    def start_job(self, launch: JobLaunch) -> None:
        """Start one rank detached: it must outlive the worker that started it."""

    @abc.abstractmethod
    def cancel_job(self, container: str, run_key: str) -> None:
        """Stop a rank promptly: TERM to its process group, KILL a second later."""

    def node_log(self, name: str, tail_bytes: int) -> NodeLog:
        """At most the last `tail_bytes` of what the node's main process wrote (a serving
        replica's scoring server). Drivers that keep no such output say so."""
        return NodeLog(
            available=False, note=f"Replica output is not available on the {self.label}."
        )

    def job_state(self, run_key: str, container: str = "") -> RunState:
        """Started? Exit code? From the run's record, which outlives any worker (a driver
        whose jobs write elsewhere first copies what is new into the record)."""
        return jobfiles.read_run(run_key)

    def release_run(self, container: str, run_key: str) -> None:
        """A run was collected: end whatever of it is left on the node and remove its
        files there, so the next job on that node starts clean and sees nothing of it."""
        # Drivers whose runs leave nothing behind need not override this.
        return None

    def collect_outputs(
        self, container: str, run_key: str, code_job_id: int | None, sink: Sink
    ) -> None:
        """What the run wrote under ./outputs, to `sink`. Drivers that keep no files of a
        run's (the no-op driver) hand nothing."""
        return None


def parse_labels(labels: dict[str, str]) -> tuple[int, int] | None:
    """(compute id, node id) from a container's labels, or None if they are not ours."""
    try:
        return int(labels[LABEL_COMPUTE]), int(labels[LABEL_NODE])
    except (KeyError, ValueError):
        return None
