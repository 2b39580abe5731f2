"""What a test session or a bench run leaves behind: its site's containers and processes.

Only what is provably this run's own is found (and removed): containers carrying its site
label; processes running in, or naming, one of its site's folders (host-process nodes and
runs under HANGAR_HOST_WORK_DIR, SSH runs under ~/.hangar/<site>), the other members of
sessions such a process leads, the host supervisors that are their parents, and the celery
processes this Python process started. Never a machine-wide `pkill -f`: another test run
on the same machine has another site, hence other labels and folders.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from tests.support.worker import CeleryProcess

SUPERVISOR = "compute.drivers.host_supervisor"


@dataclass(frozen=True)
class Site:
    label: str
    # Folders only this site's processes run in, or name on their command line.
    roots: tuple[str, ...]

    @classmethod
    def current(cls) -> Site:
        label = settings.HANGAR_SITE
        return cls(
            label,
            (
                str(settings.HANGAR_HOST_WORK_DIR),
                str(settings.HANGAR_LOCAL_NODES_DIR),
                str(Path.home() / ".hangar" / label),  # SSH runs on this machine (runners.py)
            ),
        )

    def owns_path(self, path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in self.roots)


@dataclass(frozen=True)
class Process:
    pid: int
    ppid: int
    session: int
    start: int  # clock ticks after boot: (pid, start) names one process for good
    cwd: str
    argv: tuple[str, ...]

    def describe(self) -> str:
        return f"pid {self.pid} `{' '.join(self.argv)[:160]}` in {self.cwd}"


@dataclass
class Leftovers:
    containers: list[str] = field(default_factory=list)  # "name (status)"
    processes: list[Process] = field(default_factory=list)
    celery: list[CeleryProcess] = field(default_factory=list)
    _container_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def process_count(self) -> int:
        return len(self.processes) + len(self.celery)

    def __bool__(self) -> bool:
        return bool(self.containers or self.processes or self.celery)

    def summary(self) -> str:
        return f"{len(self.containers)} containers, {self.process_count} processes"

    def describe(self) -> str:
        lines = [f"container {name}" for name in self.containers]
        lines += [f"process {process.describe()}" for process in self.processes]
        lines += [f"celery process {c.name} (pid {c.process.pid})" for c in self.celery]
        return "\n".join(lines)


def _read_process(pid: int) -> Process | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return None  # already dead, waiting for its parent to reap it
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = tuple(arg.decode(errors="replace") for arg in handle.read().split(b"\0") if arg)
        cwd = os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
    except (OSError, IndexError):
        return None  # ended while we looked, or a kernel thread
    return Process(pid, int(fields[1]), int(fields[3]), int(fields[19]), cwd, argv)


def all_processes() -> dict[int, Process]:
    found = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            process = _read_process(int(entry.name))
            if process is not None:
                found[process.pid] = process
    return found


def site_processes(site: Site) -> list[Process]:
    everything = all_processes()
    own = {
        p.pid
        for p in everything.values()
        if site.owns_path(p.cwd) or any(site.owns_path(arg) for arg in p.argv)
    }
    # A job's children that moved elsewhere are still in the session the job leads.
    leaders = {pid for pid in own if everything[pid].session == pid}
    own |= {p.pid for p in everything.values() if p.session in leaders}
    # The supervisor of a host process runs in Hangar's folder: it is ours as their parent.
    for pid in list(own):
        parent = everything.get(everything[pid].ppid)
        if parent and any(arg == SUPERVISOR for arg in parent.argv):
            own.add(parent.pid)
    return sorted((everything[pid] for pid in own), key=lambda p: p.pid)


def site_containers(site: Site) -> tuple[list[str], list[str]]:
    """(descriptions, ids) of every container carrying the site label, running or not."""
    import docker

    try:
        client = docker.from_env()
        # sparse: as listed, not each inspected after (one removed meanwhile is a 404).
        listed = client.containers.list(
            all=True, sparse=True, filters={"label": f"hangar.site={site.label}"}
        )
    except docker.errors.DockerException:
        return [], []  # no engine answering: nothing can run in it
    names = [(c.attrs.get("Names") or [c.id[:12]])[0].lstrip("/") for c in listed]
    return [f"{name} ({c.status})" for name, c in zip(names, listed, strict=True)], [
        c.id for c in listed
    ]


def find(site: Site | None = None) -> Leftovers:
    """This run's leftovers; another site's (`site`) without this process's celery ones."""
    celery = [c for c in CeleryProcess.started if c.alive] if site is None else []
    site = site or Site.current()
    names, ids = site_containers(site)
    return Leftovers(
        containers=names,
        processes=site_processes(site),
        celery=celery,
        _container_ids=ids,
    )


def remove(found: Leftovers, site: Site | None = None) -> Leftovers:
    """Remove what `find` found, then look again: what is still there."""
    import docker

    for celery in found.celery:
        celery.kill()
    if found._container_ids:
        client = docker.from_env()
        for container_id in found._container_ids:
            try:
                client.containers.get(container_id).remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
    for process in found.processes:
        now = _read_process(process.pid)
        if now is not None and now.start == process.start:  # still that process
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 5
    while (left := find(site)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def stop_celery() -> None:
    """Stop (TERM, then KILL) every celery process this Python process started: no beat or
    worker may recreate what is removed after it."""
    for celery in CeleryProcess.started:
        celery.stop()


def ssh_runs_root(site: Site | None = None) -> Path:
    """Where SSH runs on this machine live (compute/drivers/runners.py: ~/.hangar/<site>/runs)."""
    return Path.home() / ".hangar" / (site or Site.current()).label / "runs"


def recorded_session(pid_file: Path) -> int | None:
    """The pid an SSH run's wrapper recorded, if it still leads a live session of ours (a
    session id is never reused while a member lives, and the cwd proves it is a run's)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    process = _read_process(pid)
    if process is None or process.session != pid:
        return None
    return pid if process.cwd.startswith(str(pid_file.parent.parents[2]) + "/") else None


def session_alive(session: int) -> bool:
    return any(p.session == session for p in all_processes().values())


def end_ssh_runs(site: Site | None = None) -> list[Path]:
    """KILL the process group of every SSH run still going (by the pid each recorded):
    their wrappers then write the exit codes, as when a job is killed. Returns the run
    folders of those it ended."""
    ended = []
    for pid_file in ssh_runs_root(site).glob("*/*/pid"):
        session = recorded_session(pid_file)
        if session is not None:
            try:
                os.killpg(session, signal.SIGKILL)
                ended.append(pid_file.parent)
            except ProcessLookupError:
                pass
    return ended


def remove_all_nodes() -> None:
    """Whatever a test left, no container of the test site survives it. Workers stop
    first: a live worker's sweep would recreate the nodes its database still expects."""
    from compute.drivers import build_driver

    stop_celery()
    drivers = [build_driver(name, settings.HANGAR_SITE) for name in ("docker", "local")]
    # A worker killed mid-start may have handed a node to a detached supervisor that
    # starts it a moment later: look again until two looks in a row find nothing.
    quiet = 0
    deadline = time.monotonic() + 10
    while quiet < 2 and time.monotonic() < deadline:
        found = [(d, o.name) for d in drivers for o in d.list_nodes()]
        for driver, name in found:
            driver.remove_node(name)
        quiet = 0 if found else quiet + 1
        if quiet < 2:
            time.sleep(0.2)
