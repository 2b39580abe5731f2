"""Nodes as supervised local process groups: the "local computer" target, and the
embedded default where no Docker engine is reachable.

Each node is a folder under HANGAR_LOCAL_NODES_DIR named like its container would be,
holding its labels, the supervisor's pid, its output and, once it ended, its exit code.
Resource limits are recorded but not enforced: the process shares the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from compute import jobfiles
from compute.drivers.base import (
    Driver,
    JobLaunch,
    NodeObservation,
    NodeSpec,
    NodeStartError,
    parse_labels,
)

START_TIMEOUT = 5.0
STOP_TIMEOUT = 3.0
ROOT = Path(__file__).resolve().parents[2]


class LocalDriver(Driver):
    name = "local"
    label = "local machine"

    def __init__(self, site: str, root: Path) -> None:
        super().__init__(site)
        self.root = Path(root)

    def ping(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, name: str) -> Path:
        return self.root / name

    def ensure_node(self, spec: NodeSpec) -> NodeObservation:
        self.ping()
        node_dir = self._dir(spec.container_name)
        try:
            node_dir.mkdir()
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
        executable = shutil.which(spec.command[0]) if spec.command else None
        if executable is None:
            raise NodeStartError(f"Command {spec.command[:1]} is not on this machine's PATH.")
        environment = {**os.environ, **spec.environment, "PYTHONPATH": str(ROOT)}
        starter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "compute.drivers.local_supervisor",
                str(node_dir),
                "--",
                *spec.command,
            ],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        starter.wait(timeout=START_TIMEOUT)
        observation = self._wait_observe(node_dir)
        if observation is None or not observation.running:
            raise NodeStartError(f"Local node {spec.container_name} did not start.")
        return observation

    def _wait_observe(self, node_dir: Path) -> NodeObservation | None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            observation = self._observe(node_dir)
            pid_known = (node_dir / "pid").exists() or (node_dir / "exit_code").exists()
            if pid_known or time.monotonic() > deadline:
                return observation
            time.sleep(0.01)

    @staticmethod
    def _clear_run_files(node_dir: Path) -> None:
        for name in ("pid", "exit_code"):
            (node_dir / name).unlink(missing_ok=True)

    def start_job(self, launch: JobLaunch) -> None:
        node_dir = self._dir(launch.container)
        if self._observe(node_dir) is None:
            raise NodeStartError(f"Local node {launch.container} is gone.")
        # Remember the run: removing the node must stop its jobs too (they are not in the
        # node's process group, since they outlive the worker that started them).
        with open(node_dir / "runs.txt", "a") as runs:
            runs.write(str(jobfiles.run_dir(launch.run_key)) + "\n")
        start_local_run(launch, cwd=node_dir)

    def cancel_job(self, container: str, run_key: str) -> None:
        cancel_local_run(run_key)

    def remove_node(self, name: str) -> bool:
        node_dir = self._dir(name)
        if not node_dir.exists():
            return False
        self._stop_jobs(node_dir)
        pid = self._pid(node_dir)
        if pid is not None and self._alive(pid, node_dir):
            self._signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            while self._alive(pid, node_dir) and time.monotonic() < deadline:
                time.sleep(0.02)
            if self._alive(pid, node_dir):
                self._signal_group(pid, signal.SIGKILL)
        shutil.rmtree(node_dir, ignore_errors=True)
        return True

    def _stop_jobs(self, node_dir: Path) -> None:
        try:
            runs = (node_dir / "runs.txt").read_text().split()
        except OSError:
            return
        for run in runs:
            try:
                pid = int((Path(run) / "pid").read_text())
            except (OSError, ValueError):
                continue
            if not (Path(run) / "exit_code").exists():
                self._signal_group(pid, signal.SIGKILL)

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
        pid = self._pid(node_dir)
        running = pid is not None and self._alive(pid, node_dir)
        exit_code = None
        if not running:
            try:
                exit_code = int((node_dir / "exit_code").read_text())
            except (OSError, ValueError):
                exit_code = None
        status = "running" if running else ("exited" if exit_code is not None else "dead")
        return NodeObservation(
            name=node_dir.name,
            ref=str(pid or ""),
            compute_id=ids[0],
            node_id=ids[1],
            running=running,
            status=status,
            exit_code=exit_code,
        )

    @staticmethod
    def _pid(node_dir: Path) -> int | None:
        try:
            return int((node_dir / "pid").read_text())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(pid: int, node_dir: Path) -> bool:
        """Alive, not a zombie, and really our supervisor (pids are reused)."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                ours = str(node_dir).encode() in cmdline.read()
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X") and ours

    @staticmethod
    def _signal_group(pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass


def start_local_run(launch: JobLaunch, cwd: Path) -> Path:
    """Start one rank as a detached local process group; returns its run folder. Used by
    local nodes and by the "local computer" attached target alike."""
    environment = {**os.environ, **launch.environment}
    if launch.code_job_id is not None:
        environment["HANGAR_WORKDIR"] = str(jobfiles.code_dir(launch.code_job_id))
    run = jobfiles.prepare_run_dir(launch.run_key)
    run_detached(jobfiles.JOB_WRAPPER, str(run), environment, cwd)
    return run


def cancel_local_run(run_key: str) -> None:
    run = str(jobfiles.run_dir(run_key))
    run_detached(jobfiles.JOB_CANCEL, run, dict(os.environ), cwd=jobfiles.runs_root())


def run_detached(script: str, run: str, environment: dict[str, str], cwd: Path) -> None:
    """Run a script in the background of a shell that exits at once, so the script is
    adopted by init: it outlives the worker and never becomes its zombie."""
    subprocess.run(
        ["sh", "-c", 'sh -c "$0" hangar "$1" < /dev/null > /dev/null 2>&1 &', script, run],
        cwd=cwd,
        env=environment,
        check=True,
        timeout=START_TIMEOUT,
    )
