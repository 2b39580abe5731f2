"""Host processes: jobs and nodes that run as processes on Hangar's own machine (the local
driver, the "local computer" target). Development only, and only when the operator said
so (HANGAR_ALLOW_HOST_PROCESSES).

They never run as root nor with Hangar's environment: each runs as HANGAR_JOB_USER, with
PATH, HOME, LANG and its own variables only, in a folder of its own under
HANGAR_HOST_WORK_DIR (outside `.local/`, which that user cannot read). A supervisor of
Hangar's (compute/drivers/host_supervisor.py) starts it and copies its output and exit
code into the run's record: the process never gets a path into the record.

Cancel trusts nothing a job can write: the supervisor records what it started (pid, start
time, uid) in the record, and a signal goes only to processes matching that identity.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from compute.drivers.base import DriverUnavailable, JobLaunch, NodeStartError
from compute.drivers.processes import (  # the run's identity, and signals only to it
    ProcessIdentity,
    signal_group,
    stop_group,
)
from compute.lib import jobfiles, output_collection, output_store
from compute.lib.output_collection import Sink

ROOT = Path(__file__).resolve().parents[2]
BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
IDENTITY_FILE = "process"
START_TIMEOUT = 10.0
LAUNCH_STALE = 2 * START_TIMEOUT
OUTPUTS = "outputs"  # what a job writes there is kept as its output files


class HostProcessesDisabled(NodeStartError):
    pass


def require_allowed() -> None:
    if not settings.HANGAR_ALLOW_HOST_PROCESSES:
        raise HostProcessesDisabled(
            "Host processes are disabled on this site (HANGAR_ALLOW_HOST_PROCESSES=false)."
        )


# Who runs it ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JobUser:
    name: str
    uid: int
    gid: int


def job_user() -> JobUser:
    """HANGAR_JOB_USER, checked: never root, and one Hangar may switch to."""
    name = settings.HANGAR_JOB_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise NodeStartError(
            f"HANGAR_JOB_USER={name!r} is not a user on this machine: `make run` creates "
            "it (useradd --system --no-create-home --shell /usr/sbin/nologin hangar-job)."
        ) from None
    if entry.pw_uid == 0:
        raise NodeStartError(f"HANGAR_JOB_USER={name!r} is root: host processes never run as root.")
    if os.geteuid() != 0 and entry.pw_uid != os.geteuid():
        raise NodeStartError(
            f"HANGAR_JOB_USER={name!r}: Hangar is not root, so it can run host processes "
            "only as its own user; unset HANGAR_JOB_USER."
        )
    return JobUser(name, entry.pw_uid, entry.pw_gid)


def clean_environment(home: Path, own: dict[str, str]) -> dict[str, str]:
    """PATH, HOME, LANG and the job's own variables: nothing of Hangar's settings."""
    environment = {"PATH": BASE_PATH, "HOME": str(home), "LANG": "C.UTF-8"}
    environment.update({k: v for k, v in own.items() if k and "=" not in k and "\0" not in k + v})
    return environment


# Where it runs -------------------------------------------------------------------------


def _own_dir(path: Path, mode: int) -> Path:
    """A folder of Hangar's own (not a link, not someone else's), with exactly `mode`."""
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise NodeStartError(f"{path} is not a folder owned by Hangar's user: refusing to use it.")
    if stat.S_IMODE(info.st_mode) != mode:
        os.chmod(path, mode, follow_symlinks=False)
    return path


def work_root(kind: str) -> Path:
    """HANGAR_HOST_WORK_DIR/<kind>: Hangar's, 0711 so a job reaches its own folder only."""
    root = Path(settings.HANGAR_HOST_WORK_DIR)
    root.parent.mkdir(parents=True, exist_ok=True)
    _own_dir(root, 0o711)
    return _own_dir(root / kind, 0o711)


def run_work_dir(run_key: str) -> Path:
    job_part, run_part = jobfiles.check_run_key(run_key)
    return Path(settings.HANGAR_HOST_WORK_DIR) / "runs" / f"{job_part}.{run_part}"


def node_work_dir(name: str) -> Path:
    return Path(settings.HANGAR_HOST_WORK_DIR) / "nodes" / name


def fresh_work_dir(path: Path, user: JobUser) -> Path:
    """An empty folder for one run or node, the job user's (its parent is Hangar's, so a
    removal never follows anything the job planted)."""
    work_root(path.parent.name)
    remove_work_dir(path)
    path.mkdir(mode=0o700)
    os.chown(path, user.uid, user.gid, follow_symlinks=False)  # just made: nothing of the job's
    return path


def remove_work_dir(path: Path) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(path)  # fd-based on Linux: links inside are removed, not followed
    else:
        path.unlink()


def copy_code(job_id: int, work: Path, user: JobUser) -> Path:
    """The snapshot copied in, Hangar-owned and read-only: the job reads what ran. Its
    ./outputs alone is the job user's to write (made if the snapshot has none)."""
    target = work / "code"
    shutil.copytree(jobfiles.code_dir(job_id), target, symlinks=True)
    # Folders too when Hangar is root (the job is another user); as one user, read-only
    # files suffice and Hangar can still remove the folder.
    folder_mode = 0o555 if os.geteuid() == 0 else 0o755
    for path in sorted(target.rglob("*"), reverse=True):
        if not path.is_symlink():
            path.chmod(folder_mode if path.is_dir() else 0o444)
    writable = target / OUTPUTS
    if not os.path.lexists(writable):
        writable.mkdir(mode=0o755)
    if writable.is_dir() and not writable.is_symlink():
        writable.chmod(0o755)
        # Made or copied by Hangar just now: nothing of the job's is followed here.
        os.chown(writable, user.uid, user.gid, follow_symlinks=False)
    target.chmod(folder_mode)
    return target


def collect_outputs(run_key: str, code_job_id: int | None, sink: Sink) -> None:
    """./outputs of the run's working folder, read as hostile: every folder on the way
    opened with O_NOFOLLOW from its parent's descriptor (the job owns its folder and may
    have swapped anything in it for a link), every file checked on its open descriptor."""
    job_part, run_part = jobfiles.check_run_key(run_key)
    on_the_way = [f"{job_part}.{run_part}"] + (["code"] if code_job_id is not None else [])
    fd = output_store.open_path_nofollow(Path(settings.HANGAR_HOST_WORK_DIR) / "runs", on_the_way)
    if fd is None:
        return  # no working folder (released already, or never made)
    try:
        try:
            info = os.stat(OUTPUTS, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return  # no ./outputs
        if not stat.S_ISDIR(info.st_mode):
            sink.leave_out((OUTPUTS,), output_collection.kind_of(info.st_mode))
            return
        try:
            found = os.open(OUTPUTS, output_store.OPEN_DIR, dir_fd=fd)
        except OSError:
            sink.leave_out((OUTPUTS,), "changed while it was read")
            return
    finally:
        os.close(fd)
    output_collection.from_folder(found, sink)


# Runs ----------------------------------------------------------------------------------


def run_identity(run_key: str) -> ProcessIdentity | None:
    try:
        fd = jobfiles.open_record(run_key, IDENTITY_FILE)
    except (OSError, ValueError):
        return None
    with os.fdopen(fd, "rb") as handle:
        return ProcessIdentity.parse(handle.read(100))


def start_run(launch: JobLaunch) -> None:
    """Start one rank under a supervisor that outlives the worker. At most once: a run
    whose record says it started is left alone."""
    require_allowed()
    user = job_user()
    jobfiles.prepare_run_dir(launch.run_key)
    with jobfiles.record_lock(launch.run_key):
        if run_identity(launch.run_key) or jobfiles.read_run(launch.run_key).started:
            return
        # A supervisor may be on its way (its identity is written a moment after it is
        # launched): a second launch now would start the run twice. One whose launch is
        # older than any supervisor takes to start (the starter gives up at START_TIMEOUT)
        # never got going; it may be launched again, and the token below makes a late
        # supervisor of the old launch stand down.
        age = jobfiles.seconds_since(launch.run_key, jobfiles.LAUNCH_FILE)
        if age is not None and age < LAUNCH_STALE:
            return
        token = secrets.token_hex(8)
        jobfiles.write_launch_token(launch.run_key, token)
        work = fresh_work_dir(run_work_dir(launch.run_key), user)
        own = dict(launch.environment)
        cwd = work
        if launch.code_job_id is not None:
            cwd = copy_code(launch.code_job_id, work, user)
            own["HANGAR_WORKDIR"] = str(cwd)
        launch_supervisor(
            {
                "mode": "run",
                "run_key": launch.run_key,
                "launch_token": token,
                "command": ["/bin/sh", "-c", launch.command],
                "cwd": str(cwd),
                "env": clean_environment(work, own),
                **supervisor_settings(user),
            }
        )


def cancel_run(run_key: str) -> None:
    stop_group(run_identity(run_key))


def release_run(run_key: str) -> None:
    """The run was collected: its leftovers end, its working folder goes."""
    identity = run_identity(run_key)
    signal_group(identity, signal.SIGKILL)
    remove_work_dir(run_work_dir(run_key))


def tidy_runs(active_job_ids: set[int], min_age: float = 60.0) -> None:
    """Release runs whose job is no longer active and whose folder is over a minute old
    (a run started since the list was read keeps its folder)."""
    root = Path(settings.HANGAR_HOST_WORK_DIR) / "runs"
    if not root.is_dir():
        return
    now = time.time()
    for entry in os.scandir(root):
        job_part, _, run_part = entry.name.partition(".")
        if not job_part.isdigit() or int(job_part) in active_job_ids:
            continue
        if now - entry.stat(follow_symlinks=False).st_mtime > min_age:
            try:
                release_run(f"{job_part}/{run_part}")
            except ValueError:
                continue


def supervisor_settings(user: JobUser) -> dict:
    return {
        "uid": user.uid,
        "gid": user.gid,
        "switch_user": os.geteuid() == 0,
        "jobs_dir": str(jobfiles.jobs_root()),
        "output_limit_mb": settings.HANGAR_JOB_OUTPUT_LIMIT_MB,
    }


def launch_supervisor(spec: dict) -> None:
    """Start a supervisor and return once it detached (it reads its orders from stdin, so
    nothing of them shows in `ps`). Its own environment holds none of Hangar's secrets."""
    jobfiles.jobs_root().mkdir(parents=True, exist_ok=True, mode=0o700)
    log = os.open(
        jobfiles.jobs_root() / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
    )
    try:
        starter = subprocess.Popen(
            [sys.executable, "-m", "compute.drivers.host_supervisor"],
            cwd=ROOT,
            env={"PATH": BASE_PATH, "PYTHONPATH": str(ROOT), "LANG": "C.UTF-8"},
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )
    finally:
        os.close(log)
    try:
        starter.communicate(json.dumps(spec).encode(), timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        # A machine so busy the starter did not even detach: not a failure of the node;
        # this attempt is dropped and the next pass tries again.
        starter.kill()
        starter.wait()
        raise DriverUnavailable(
            f"the host-process supervisor did not start within {START_TIMEOUT:.0f} s "
            "(this machine is busy)"
        ) from None
    if starter.returncode != 0:
        raise NodeStartError(f"The host-process supervisor failed ({starter.returncode}).")
