"""A driver that starts nothing: nodes and jobs are bookkeeping held in memory, and every
job ends at once with exit code 0. It measures Hangar's own scheduling overhead in
`make bench`; it is not for serving users (it forgets everything when the process ends)."""

from __future__ import annotations

from compute.drivers.base import (
    Driver,
    JobLaunch,
    NodeObservation,
    NodeSpec,
    parse_labels,
)
from compute.lib.jobfiles import RunState


class NoopDriver(Driver):
    name = "noop"
    label = "no-op driver"

    def __init__(self, site: str) -> None:
        super().__init__(site)
        self.nodes: dict[str, dict[str, str]] = {}
        self.finished: set[str] = set()

    def ping(self) -> None:
        pass

    def ensure_node(self, spec: NodeSpec) -> NodeObservation:
        self.nodes[spec.container_name] = spec.labels
        return self._observe(spec.container_name, spec.labels)

    def remove_node(self, name: str) -> bool:
        return self.nodes.pop(name, None) is not None

    def list_nodes(self, compute_id: int | None = None) -> list[NodeObservation]:
        observations = [self._observe(name, labels) for name, labels in self.nodes.items()]
        return [o for o in observations if compute_id is None or o.compute_id == compute_id]

    def start_job(self, launch: JobLaunch) -> None:
        self.finished.add(launch.run_key)

    def cancel_job(self, container: str, run_key: str) -> None:
        self.finished.add(run_key)

    def job_state(self, run_key: str, container: str = "") -> RunState:
        done = run_key in self.finished
        return RunState(started=done, exit_code=0 if done else None)

    @staticmethod
    def _observe(name: str, labels: dict[str, str]) -> NodeObservation:
        ids = parse_labels(labels)
        assert ids is not None  # the noop driver lists only the nodes it labelled itself
        compute_id, node_id = ids
        return NodeObservation(name, name, compute_id, node_id, True, "running")
