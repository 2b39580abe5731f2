"""Host processes as the kernel knows them: a pid is reused, (pid, start time, uid) is not.

Hangar signals only a process whose identity it recorded when it started it, and only while
that identity still holds: a pid a job could write is never trusted (compute/drivers/hostproc.py).
"""

from __future__ import annotations

import os
import select
import signal
import threading
from dataclasses import dataclass

KILL_AFTER = 1.0  # TERM, then KILL this long after, for whatever ignored it


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as the kernel knows it: pids are reused, (pid, start time) are not."""

    pid: int
    start: int
    uid: int

    def text(self) -> str:
        return f"{self.pid} {self.start} {self.uid}\n"

    @classmethod
    def parse(cls, raw: bytes | str | None) -> ProcessIdentity | None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        if not text or not text.endswith("\n"):
            return None  # absent, or caught half-written
        try:
            pid, start, uid = (int(part) for part in text.split())
        except ValueError:
            return None
        return cls(pid, start, uid)


@dataclass(frozen=True)
class ProcStat:
    pid: int
    state: str
    pgrp: int
    session: int
    start: int
    uid: int


def proc_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        with open(f"/proc/{pid}/status", "rb") as handle:
            uid_line = next(line for line in handle if line.startswith(b"Uid:"))
        # Field 3 is fields[0]: state (3), pgrp (5), session (6), starttime (22).
        state, pgrp, session, start = fields[0].decode(), fields[2], fields[3], fields[19]
        uid = uid_line.split()[1]
        return ProcStat(pid, state, int(pgrp), int(session), int(start), int(uid))
    except (OSError, IndexError, ValueError, StopIteration):
        return None


def identify(pid: int) -> ProcessIdentity | None:
    found = proc_stat(pid)
    return ProcessIdentity(pid, found.start, found.uid) if found else None


def is_alive(identity: ProcessIdentity) -> bool:
    found = proc_stat(identity.pid)
    return (
        found is not None
        and found.state not in ("Z", "X")
        and (found.start, found.uid) == (identity.start, identity.uid)
    )


def wait_for_exit(identity: ProcessIdentity, timeout: float) -> None:
    """Sleep until the identified process ends (or `timeout`): the kernel wakes us through
    a pidfd, so nothing polls while it runs. The pid is checked against the identity after
    the pidfd is open, so a reused pid is never waited on."""
    try:
        fd = os.pidfd_open(identity.pid)
    except OSError:
        return  # already gone
    try:
        if is_alive(identity):
            select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def group_members(identity: ProcessIdentity) -> list[int]:
    """Leftovers of the group and session the identified process led: same uid, started
    after it. None if its pid now names another process: the kernel reuses a pid only once
    no process has it as group or session id, so the group is gone then. The pid may be
    reused *while* /proc is read (a new session leader of the same user would then look
    like a leftover), so the leader's pid itself never counts and is checked again after."""

    def reused() -> bool:
        now = proc_stat(identity.pid)
        return now is not None and (now.start, now.uid) != (identity.start, identity.uid)

    if reused():
        return []
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) <= 1 or int(entry.name) == identity.pid:
            continue
        found = proc_stat(int(entry.name))
        if (
            found is not None
            and found.state not in ("Z", "X")
            and found.pgrp == identity.pid
            and found.session == identity.pid
            and found.uid == identity.uid
            and found.start >= identity.start
        ):
            members.append(found.pid)
    return [] if reused() else members


def signal_group(identity: ProcessIdentity | None, signum: int) -> bool:
    """Signal what the identity names, and nothing else. True if something was signalled."""
    if identity is None or identity.pid <= 1 or identity.uid == 0:
        return False
    if is_alive(identity):
        # A live session leader keeps its group id: the group is surely this one.
        try:
            os.killpg(identity.pid, signum)
            return True
        except ProcessLookupError:
            return False
    signalled = False
    for pid in group_members(identity):  # the leader ended; its leftovers may not have
        try:
            os.kill(pid, signum)
            signalled = True
        except ProcessLookupError:
            pass
    return signalled


def stop_group(identity: ProcessIdentity | None, wait: bool = False) -> None:
    """TERM now, KILL a second later (in the background unless `wait`)."""
    if not signal_group(identity, signal.SIGTERM):
        return
    if wait:
        threading.Event().wait(KILL_AFTER)
        signal_group(identity, signal.SIGKILL)
    else:
        timer = threading.Timer(KILL_AFTER, signal_group, (identity, signal.SIGKILL))
        timer.daemon = True
        timer.start()
