"""Where a job's code and output live on this machine.

Each run (one rank of one attempt) has a *record* under HANGAR_JOBS_DIR/runs/<job>/a<n>-r<rank>/
(output.log, started, exit_code). Only Hangar writes it: a job never sees it, whatever the
driver (Docker nodes copy their output here through the Docker API; host processes write
through a file descriptor Hangar opened). Because output and exit code land here, a worker
that dies loses nothing. Code snapshots sit read-only in HANGAR_JOBS_DIR/code/<job>/.

Everything under these folders is still read as hostile: no link is followed on the way
to a file (O_NOFOLLOW on every component), and only regular files are read.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# Where code snapshots live is part of "where a job's files are"; storing them is
# compute/lib/snapshots.py's.
from compute.lib.snapshots import code_dir, code_root  # noqa: F401  (re-exported)

OUTPUT_FILE = "output.log"
EXIT_FILE = "exit_code"
STARTED_FILE = "started"
LAUNCH_FILE = "launch"  # host processes: the token of the launch in flight
LOCK_FILE = ".lock"
CUT_MARKER = (
    "\n[hangar] output cut at {mb} MB (HANGAR_JOB_OUTPUT_LIMIT_MB): the rest was discarded.\n"
)


def jobs_root() -> Path:
    return Path(settings.HANGAR_JOBS_DIR)


def runs_root() -> Path:
    return jobs_root() / "runs"


def run_dir(run_key: str) -> Path:
    return runs_root() / run_key


def output_limit() -> int:
    return settings.HANGAR_JOB_OUTPUT_LIMIT_MB * 1024 * 1024


def cut_marker() -> bytes:
    return CUT_MARKER.format(mb=settings.HANGAR_JOB_OUTPUT_LIMIT_MB).encode()


def check_run_key(run_key: str) -> list[str]:
    """A run key is `<job id>/a<attempt>-r<rank>`: two plain names, never a path escape."""
    parts = run_key.split("/")
    if len(parts) != 2 or not all(p and p not in (".", "..") and "\0" not in p for p in parts):
        raise ValueError(f"not a run key: {run_key!r}")
    return parts


def prepare_run_dir(run_key: str) -> Path:
    """Create the run's record folder (Hangar's alone: 0700). Idempotent: a relaunch of the
    same attempt after a crash keeps what the first launch recorded."""
    job_part, _ = check_run_key(run_key)
    path = run_dir(run_key)
    runs_root().mkdir(parents=True, exist_ok=True, mode=0o700)
    (runs_root() / job_part).mkdir(exist_ok=True, mode=0o700)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    # Refuse anything that is not a real folder of ours (a link planted there, say).
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.ENOTDIR, f"run record {run_key} is not a folder")
    return path


def _open_dir(run_key: str) -> int:
    """The run's record folder as a descriptor, reached without following any link."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(runs_root(), flags)
    try:
        for part in check_run_key(run_key):
            next_fd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_record(run_key: str, name: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A file of a run's record, opened without following links; only a regular file."""
    dir_fd = _open_dir(run_key)
    try:
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{name} of run {run_key} is not a regular file")
    return fd


def _read_small(run_key: str, name: str) -> bytes | None:
    try:
        fd = open_record(run_key, name)
    except (OSError, ValueError):
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read(64)


@dataclass(frozen=True)
class RunState:
    started: bool
    exit_code: int | None
    output_cut: bool = False


def read_run(run_key: str) -> RunState:
    raw = _read_small(run_key, EXIT_FILE)
    try:
        exit_code = int(raw.strip()) if raw is not None else None
    except ValueError:
        exit_code = None
    started = exit_code is not None or _read_small(run_key, STARTED_FILE) is not None
    return RunState(
        started=started, exit_code=exit_code, output_cut=output_size(run_key) > output_limit()
    )


def output_size(run_key: str) -> int:
    try:
        fd = open_record(run_key, OUTPUT_FILE)
    except (OSError, ValueError):
        return 0
    try:
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def open_output(run_key: str) -> io.BufferedReader | None:
    """The whole output for a download, or None when there is none (yet)."""
    try:
        fd = open_record(run_key, OUTPUT_FILE)
    except (OSError, ValueError):
        return None
    return os.fdopen(fd, "rb")


def read_output(run_key: str, limit: int = 200_000) -> str:
    """The end of a run's output (the page shows the tail; the download has it all)."""
    handle = open_output(run_key)
    if handle is None:
        return ""
    with handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - limit))
        data = handle.read(limit)
    text = data.decode("utf-8", errors="replace")
    return text if size <= limit else "…" + text.split("\n", 1)[-1]


# Writing a run's record: Hangar only -------------------------------------------------


@contextmanager
def record_lock(run_key: str) -> Iterator[None]:
    """One writer of a run's record at a time, across threads and worker processes."""
    prepare_run_dir(run_key)
    fd = open_record(run_key, LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_file(run_key: str, name: str, data: bytes) -> None:
    """Replace a small file of the record atomically (write aside, then rename)."""
    partial = f".{name}.tmp"
    fd = open_record(run_key, partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    dir_fd = _open_dir(run_key)
    try:
        os.rename(partial, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def write_launch_token(run_key: str, token: str) -> None:
    """Under record_lock: the launch now in flight (compute/drivers/hostproc.py)."""
    _write_file(run_key, LAUNCH_FILE, token.encode())


def launch_token(run_key: str) -> str:
    raw = _read_small(run_key, LAUNCH_FILE)
    return raw.decode(errors="replace").strip() if raw is not None else ""


def mark_started_locked(run_key: str) -> None:
    """mark_started for a caller already holding record_lock (flock is not re-entrant)."""
    if _read_small(run_key, STARTED_FILE) is None:
        _write_file(run_key, STARTED_FILE, b"1\n")


def mark_started(run_key: str) -> None:
    if _read_small(run_key, STARTED_FILE) is None:
        with record_lock(run_key):
            mark_started_locked(run_key)


def write_exit_code(run_key: str, code: int) -> bool:
    """Final: once a run has an exit code, later writes leave it as it is. True if this
    call wrote it."""
    with record_lock(run_key):
        if _read_small(run_key, EXIT_FILE) is not None:
            return False
        _write_file(run_key, EXIT_FILE, f"{code}\n".encode())
        return True


def touch(run_key: str, name: str) -> None:
    """Mark the moment in a record file's time stamp (a follower's heartbeat, say)."""
    fd = open_record(run_key, name, os.O_WRONLY | os.O_CREAT)
    try:
        os.utime(fd)
    finally:
        os.close(fd)


def forget(run_key: str, name: str) -> None:
    try:
        dir_fd = _open_dir(run_key)
    except (OSError, ValueError):
        return
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(dir_fd)


def seconds_since(run_key: str, name: str) -> float | None:
    try:
        fd = open_record(run_key, name)
    except (OSError, ValueError):
        return None
    try:
        return time.time() - os.fstat(fd).st_mtime
    finally:
        os.close(fd)


def output_offset(run_key: str) -> int | None:
    """Where the next copied bytes go, or None once the output was cut at its limit."""
    size = output_size(run_key)
    return None if size > output_limit() else size


def write_output(run_key: str, offset: int, data: bytes) -> bool:
    """Put bytes the job wrote at `offset` of its output into the record, at the same place.

    Writing at absolute positions makes a repeated copy (a watcher and a sweep's look, or a
    copy retried after a crash) harmless: the same bytes land on the same bytes, never
    doubled. Past HANGAR_JOB_OUTPUT_LIMIT_MB the output is cut once, with a visible marker.
    Returns True when this call cut the output.
    """
    limit = output_limit()
    if not data or offset > limit:
        return False
    fd = open_record(run_key, OUTPUT_FILE, os.O_WRONLY | os.O_CREAT)
    try:
        if os.fstat(fd).st_size > limit:
            return False  # cut already
        kept = data[: max(0, limit - offset)]
        if kept:
            os.pwrite(fd, kept, offset)
        if offset + len(data) > limit:
            os.pwrite(fd, cut_marker(), limit)
            return True
        return False
    finally:
        os.close(fd)


def append_note(run_key: str, note: str) -> None:
    """A line of Hangar's own at the end of the output (a lost run, say)."""
    with record_lock(run_key):
        fd = open_record(run_key, OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        with os.fdopen(fd, "ab") as handle:
            handle.write(f"\n[hangar] {note}\n".encode())
