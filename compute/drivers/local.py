"""Nodes as supervised host processes: the development driver, for machines without a
Docker engine, and only where the operator allowed host processes
(HANGAR_ALLOW_HOST_PROCESSES). Nothing is isolated: a banner says so on every page.

Each node has two folders. Its record, HANGAR_LOCAL_NODES_DIR/<container name>, is
Hangar's alone (labels, limits, the node process's identity, its exit code, its output).
Its working folder, HANGAR_HOST_WORK_DIR/nodes/<container name>, belongs to the job user
the node runs as (compute/drivers/hostproc.py). Resource limits are recorded, not enforced.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

from compute.drivers import hostproc
from compute.drivers.base import (
    Driver,
    JobLaunch,
    NodeObservation,
    NodeSpec,
    NodeStartError,
    parse_labels,
)
from compute.drivers.processes import ProcessIdentity, is_alive, signal_group
from compute.lib import jobfiles
from compute.lib.output_collection import Sink

START_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0
RUNS_FILE = "runs.txt"


class LocalDriver(Driver):
    name = "local"
    label = "local machine"

    def __init__(self, site: str, root: Path) -> None:
        super().__init__(site)
        self.root = Path(root)

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _dir(self, name: str) -> Path:
        return self.root / name

    def work_dir(self, name: str) -> Path:
        """Where the node's processes run (its setup script's files land here)."""
        return hostproc.node_work_dir(name)

    def ensure_node(self, spec: NodeSpec) -> NodeObservation:
        if spec.folders:
            raise NodeStartError(
                "Serving replicas and batch scoring need the Docker driver "
                "(HANGAR_DRIVER=docker): the local driver's host processes cannot be given "
                "a model and folders of their own."
            )
        hostproc.require_allowed()
        self.ping()
        user = hostproc.job_user()
        node_dir = self._dir(spec.container_name)
        try:
            node_dir.mkdir(mode=0o700)
        except FileExistsError:
            # Created before (maybe by a worker that died): adopt, or start it again.
            observation = self._wait_observe(node_dir)
            if observation is not None and observation.running:
                return observation
            self._clear_run_files(node_dir)
        else:
            (node_dir / "labels.json").write_text(json.dumps(spec.labels))
            (node_dir / "spec.json").write_text(
                json.dumps({"cpus": spec.cpus, "memory_bytes": spec.memory_bytes})
            )
        command = list(spec.command)
        if not command or shutil.which(command[0], path=hostproc.BASE_PATH) is None:
            raise NodeStartError(f"Command {spec.command[:1]} is not on this machine's PATH.")
        work = hostproc.fresh_work_dir(self.work_dir(spec.container_name), user)
        hostproc.launch_supervisor(
            {
                "mode": "node",
                "dir": str(node_dir),
                "command": command,
                "cwd": str(work),
                "env": hostproc.clean_environment(work, spec.environment),
                **hostproc.supervisor_settings(user),
            }
        )
        observation = self._wait_observe(node_dir)
        if observation is None or not observation.running:
            raise NodeStartError(
                f"Local node {spec.container_name} did not start"
                + (f" ({observation.describe})" if observation else "")
                + self._output_tail(node_dir)
            )
        return observation

    @staticmethod
    def _output_tail(node_dir: Path) -> str:
        """The node process's last words, for the error a user sees."""
        try:
            tail = (node_dir / "output.log").read_bytes()[-300:].decode(errors="replace")
        except OSError:
            return "."
        return f": {tail.strip()}" if tail.strip() else "."

    def _wait_observe(self, node_dir: Path) -> NodeObservation | None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            observation = self._observe(node_dir)
            known = (node_dir / "process").exists() or (node_dir / "exit_code").exists()
            if known or time.monotonic() > deadline:
                return observation
            time.sleep(0.01)

    @staticmethod
    def _clear_run_files(node_dir: Path) -> None:
        for name in ("process", "exit_code"):
            (node_dir / name).unlink(missing_ok=True)

    def start_job(self, launch: JobLaunch) -> None:
        node_dir = self._dir(launch.container)
        if self._observe(node_dir) is None:
            raise NodeStartError(f"Local node {launch.container} is gone.")
        # Remembered so removing the node ends its jobs too: they are not in the node's
        # process group, since they outlive the worker that started them.
        jobfiles.check_run_key(launch.run_key)
        with open(node_dir / RUNS_FILE, "a") as runs:
            runs.write(launch.run_key + "\n")
        hostproc.start_run(launch)

    def cancel_job(self, container: str, run_key: str) -> None:
        hostproc.cancel_run(run_key)

    def release_run(self, container: str, run_key: str) -> None:
        hostproc.release_run(run_key)

    def collect_outputs(
        self, container: str, run_key: str, code_job_id: int | None, sink: Sink
    ) -> None:
        hostproc.collect_outputs(run_key, code_job_id, sink)

    def remove_node(self, name: str) -> bool:
        node_dir = self._dir(name)
        if not node_dir.exists():
            return False
        self._end_runs(node_dir)
        identity = self._identity(node_dir)
        if signal_group(identity, signal.SIGTERM):
            deadline = time.monotonic() + STOP_TIMEOUT
            while identity and is_alive(identity) and time.monotonic() < deadline:
                time.sleep(0.02)
            signal_group(identity, signal.SIGKILL)
        hostproc.remove_work_dir(self.work_dir(name))
        shutil.rmtree(node_dir, ignore_errors=True)
        return True

    def _end_runs(self, node_dir: Path) -> None:
        try:
            runs = (node_dir / RUNS_FILE).read_text().split()
        except OSError:
            return
        for run_key in runs:
            try:
                hostproc.release_run(run_key)
            except ValueError:
                continue

    def list_nodes(self, compute_id: int | None = None) -> list[NodeObservation]:
        if not self.root.exists():
            return []
        prefix = f"hangar-{self.site}-c"
        if compute_id is not None:
            prefix += f"{compute_id}-n"
        observations = []
        for node_dir in sorted(self.root.glob(f"{prefix}*")):
            observation = self._observe(node_dir)
            if observation is not None:
                observations.append(observation)
        return observations

    def _observe(self, node_dir: Path) -> NodeObservation | None:
        try:
            labels = json.loads((node_dir / "labels.json").read_text())
        except (OSError, ValueError):
            return None
        ids = parse_labels(labels)
        if ids is None:
            return None
        identity = self._identity(node_dir)
        running = identity is not None and is_alive(identity)
        exit_code = None
        if not running:
            try:
                exit_code = int((node_dir / "exit_code").read_text())
            except (OSError, ValueError):
                exit_code = None
        status = "running" if running else ("exited" if exit_code is not None else "dead")
        return NodeObservation(
            name=node_dir.name,
            ref=str(identity.pid if identity else ""),
            compute_id=ids[0],
            node_id=ids[1],
            running=running,
            status=status,
            exit_code=exit_code,
        )

    @staticmethod
    def _identity(node_dir: Path) -> ProcessIdentity | None:
        try:
            return ProcessIdentity.parse((node_dir / "process").read_text())
        except OSError:
            return None
