"""A Docker node's runs as seen from Hangar: where a run sits in the node, the job's code as
an archive for put_archive, and the follower that copies a running job's output from the
exec stream into Hangar's record of the run (compute/lib/jobfiles.py)."""

from __future__ import annotations

import io
import logging
import os
import stat
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from compute.drivers import node_scripts as scripts
from compute.lib import jobfiles

log = logging.getLogger(__name__)
FOLLOWED = ".followed"  # a follower's heartbeat in the run's record
OUTPUTS = "outputs"  # what a job writes there is kept as its output files


def node_run_dir(run_key: str) -> str:
    job, run = jobfiles.check_run_key(run_key)
    return f"{scripts.NODE_RUNS}/run-{job}-{run}"


def node_outputs_dir(run_key: str, code_job_id: int | None) -> str:
    """./outputs of the run's working folder in the node: its code's folder when it has
    code (START_AND_FOLLOW runs it there), else the run's own folder."""
    if code_job_id is not None:
        return f"{scripts.NODE_CODE}/{int(code_job_id)}/{OUTPUTS}"
    return f"{node_run_dir(run_key)}/{OUTPUTS}"


def parse_exit(raw: bytes) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        return 137


def end_without_code(run_key: str) -> None:
    if jobfiles.write_exit_code(run_key, 137):
        jobfiles.append_note(
            run_key, "the run's processes ended without reporting an exit code (killed)."
        )


def code_archive(job_id: int) -> bytes:
    """The job's code snapshot as a tar for put_archive: code/<job>/..., owned by the job's
    user and read-only. Only folders and regular files go in: the snapshot holds no links,
    and none is followed if one appeared. Its ./outputs folder is the one the job may
    write (made if the snapshot has none): the rest stays read-only."""
    root = jobfiles.code_dir(job_id)
    uid, gid = (int(part) for part in scripts.JOB_USER.split(":"))
    buffer = io.BytesIO()

    def entry(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size, info.uid, info.gid = kind, mode, size, uid, gid
        info.mtime = int(time.time())
        return info

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(entry("code", tarfile.DIRTYPE, 0o755))
        tar.addfile(entry(f"code/{job_id}", tarfile.DIRTYPE, 0o555))
        writable = f"code/{job_id}/{OUTPUTS}"
        if not os.path.lexists(root / OUTPUTS):
            tar.addfile(entry(writable, tarfile.DIRTYPE, 0o755))
        pending = [(root, f"code/{job_id}")]
        while pending:
            folder, name = pending.pop()
            with os.scandir(folder) as entries:
                for item in sorted(entries, key=lambda e: e.name):
                    info = item.stat(follow_symlinks=False)
                    inner = f"{name}/{item.name}"
                    if stat.S_ISDIR(info.st_mode):
                        mode = 0o755 if inner == writable else 0o555
                        tar.addfile(entry(inner, tarfile.DIRTYPE, mode))
                        pending.append((Path(item.path), inner))
                    elif stat.S_ISREG(info.st_mode):
                        fd = os.open(item.path, os.O_RDONLY | os.O_NOFOLLOW)
                        with os.fdopen(fd, "rb") as handle:
                            tar.addfile(entry(inner, tarfile.REGTYPE, 0o444, info.st_size), handle)
    return buffer.getvalue()


class Follower:
    """Copies a run's output from its node into the record while it runs, in a thread of
    the worker process; when the run ends it records the exit code and says so. Only for
    speed: a worker that dies loses nothing, a later look copies the rest."""

    _active: set[str] = set()
    _lock = threading.Lock()

    def __init__(
        self,
        run_key: str,
        stream: Iterator[tuple[bytes | None, bytes | None]],
        offset: int | None,
        on_finish: Callable[[], None] | None,
    ) -> None:
        self.run_key = run_key
        self.stream = stream
        self.offset = offset
        self.on_finish = on_finish
        self.control = b""  # an unfinished control line
        self.started = False
        self.exit: bytes | None = None
        self.beat = 0.0

    @classmethod
    def is_following(cls, run_key: str) -> bool:
        with cls._lock:
            return run_key in cls._active

    def wait_until_started(self, timeout: float) -> bool:
        """Read until the node says the run was launched (or was there already)."""
        deadline = time.monotonic() + timeout
        for chunk in self.stream:
            self.take(chunk)
            if self.started:
                jobfiles.mark_started(self.run_key)
                return True
            if time.monotonic() > deadline:
                break
        return False

    def start(self) -> None:
        with self._lock:
            if self.run_key in self._active:
                return  # one follower per run and process is enough
            self._active.add(self.run_key)
        threading.Thread(target=self.run, name=f"follow-{self.run_key}", daemon=True).start()

    def take(self, chunk: tuple[bytes | None, bytes | None]) -> None:
        out, err = chunk
        if out and self.offset is not None:
            jobfiles.write_output(self.run_key, self.offset, out)
            self.offset += len(out)
        if err:
            *lines, self.control = (self.control + err).split(b"\n")
            for line in lines:
                if line in (b"launched", b"found"):
                    self.started = True
                elif line.startswith(b"exit="):
                    self.exit = line[5:]
        now = time.monotonic()
        if now - self.beat > 0.5:
            jobfiles.touch(self.run_key, FOLLOWED)
            self.beat = now

    def run(self) -> None:
        try:
            for chunk in self.stream:
                self.take(chunk)
        except Exception:  # the stream broke: a later look copies the rest
            log.debug("stopped following %s", self.run_key, exc_info=True)
        finally:
            with self._lock:
                self._active.discard(self.run_key)
        if self.exit is None:
            jobfiles.forget(self.run_key, FOLLOWED)  # the next pass looks at once
        elif self.exit.strip() == b"none":
            end_without_code(self.run_key)
        else:
            jobfiles.write_exit_code(self.run_key, parse_exit(self.exit))
        if self.on_finish is not None:
            self.on_finish()
