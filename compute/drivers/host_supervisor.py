"""Supervises one host process: `python -m compute.drivers.host_supervisor < orders.json`.

Runs as Hangar's user, detached (own session, double fork): it outlives the Celery worker
that started it and is never its zombie. It starts the command as the job user with the
clean environment it was given, in its own process group, and keeps the read end of the
command's output pipe: it alone writes the output (capped), the process's identity and
the exit code into Hangar's record. The command never learns where that record is.

Two kinds of orders: "run" (one rank of a job: the record is jobfiles' run record) and
"node" (a local node: its record is the node's folder under HANGAR_LOCAL_NODES_DIR).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

NODE_OUTPUT_LIMIT = 1024 * 1024
DRAIN_AFTER_EXIT = 1.0  # a leftover holding the pipe does not keep the exit code back


class RunRecord:
    def __init__(self, run_key: str) -> None:
        from compute.lib import jobfiles

        self.jobfiles = jobfiles
        self.run_key = run_key

    def identity(self, text: str) -> None:
        fd = self.jobfiles.open_record(
            self.run_key, "process", os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        )
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    def started(self, locked: bool = False) -> None:
        if locked:
            self.jobfiles.mark_started_locked(self.run_key)
        else:
            self.jobfiles.mark_started(self.run_key)

    def current_launch(self, token: str) -> bool:
        """Under the record lock: is `token` the launch in flight, with nothing started?"""
        if not token or self.jobfiles.launch_token(self.run_key) != token:
            return False
        return not self.jobfiles.read_run(self.run_key).started

    def output(self, offset: int, data: bytes) -> None:
        self.jobfiles.write_output(self.run_key, offset, data)

    def note(self, text: str) -> None:
        self.jobfiles.append_note(self.run_key, text)

    def exit(self, code: int) -> None:
        self.jobfiles.write_exit_code(self.run_key, code)


class NodeRecord:
    """A local node's folder: Hangar's, under `.local/` where the node cannot reach."""

    def __init__(self, node_dir: str) -> None:
        self.dir = Path(node_dir)

    def _replace(self, name: str, text: str) -> None:
        partial = self.dir / f".{name}.tmp"
        partial.write_text(text)
        partial.replace(self.dir / name)

    def identity(self, text: str) -> None:
        self._replace("process", text)

    def started(self, locked: bool = False) -> None:
        pass

    def output(self, offset: int, data: bytes) -> None:
        if offset < NODE_OUTPUT_LIMIT:
            with open(self.dir / "output.log", "ab") as log:
                log.write(data[: NODE_OUTPUT_LIMIT - offset])

    def note(self, text: str) -> None:
        self.output(0, f"[hangar] {text}\n".encode())

    def exit(self, code: int) -> None:
        self._replace("exit_code", f"{code}\n")


def configure(orders: dict) -> None:
    """Just the settings the record needs: the supervisor never loads Hangar's secrets."""
    from django.conf import settings

    settings.configure(
        HANGAR_JOBS_DIR=Path(orders["jobs_dir"]),
        HANGAR_JOB_OUTPUT_LIMIT_MB=orders["output_limit_mb"],
    )


def start(orders: dict) -> subprocess.Popen:
    as_user = {}
    if orders["switch_user"]:
        as_user = {"user": orders["uid"], "group": orders["gid"], "extra_groups": []}
    return subprocess.Popen(
        orders["command"],
        cwd=orders["cwd"],
        env=orders["env"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group: cancel reaches every child of it
        umask=0o077,
        **as_user,
    )


def pump(child: subprocess.Popen, record: RunRecord | NodeRecord) -> None:
    """Copy output into the record as it comes (live within a fraction of a second)."""
    assert child.stdout is not None  # started with stdout=PIPE
    fd = child.stdout.fileno()
    offset = 0
    ended_at = None
    while True:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            data = os.read(fd, 65536)
            if not data:
                return
            record.output(offset, data)
            offset += len(data)
        if child.poll() is not None:
            ended_at = ended_at or time.monotonic()
            if not ready or time.monotonic() - ended_at > DRAIN_AFTER_EXIT:
                return


def supervise(orders: dict) -> None:
    configure(orders)
    record: RunRecord | NodeRecord
    child: subprocess.Popen | None = None
    failure: Exception | None = None
    if orders["mode"] == "run":
        record = RunRecord(orders["run_key"])
        with record.jobfiles.record_lock(orders["run_key"]):
            # Start only if this is still the launch in flight and nothing started: a
            # supervisor that arrives late (its launch was given up and made again) stands
            # down, so a run starts at most once.
            if not record.current_launch(orders.get("launch_token", "")):
                return
            try:
                child = start(orders)
                identify_started(child, record, locked=True)
            except (OSError, subprocess.SubprocessError) as exc:
                failure = exc
    else:
        record = NodeRecord(orders["dir"])
        try:
            child = start(orders)
            identify_started(child, record)
        except (OSError, subprocess.SubprocessError) as exc:
            failure = exc
    if child is None:
        record.note(f"could not start: {failure}")
        record.exit(127)
        return
    assert child.stdout is not None  # started with stdout=PIPE
    try:
        pump(child, record)
    finally:  # whatever failed here, the run still gets its exit code
        child.stdout.close()
        code = child.wait()
        record.exit(128 - code if code < 0 else code)  # a signal, as a shell reports it


def identify_started(
    child: subprocess.Popen, record: RunRecord | NodeRecord, locked: bool = False
) -> None:
    from compute.drivers.processes import identify

    # Popen returns after the exec: the identity is already the job user's process.
    identity = identify(child.pid)
    if identity is not None:
        record.identity(identity.text())
    record.started(locked)


def main() -> None:
    orders = json.loads(sys.stdin.buffer.read())
    if os.fork() > 0:
        os._exit(0)  # the starter reaps this at once; the grandchild lives on
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    supervise(orders)


if __name__ == "__main__":
    main()
