"""One reconciler per compute at a time, held in the database (Redis is never the source
of truth).

The hold names its owner: the machine, its boot, the process and that process's start
time. A hold whose owner provably died — same machine and boot, and no process with that
pid and start time — is taken over at once, so a SIGKILLed worker freezes nothing: the next
reconcile of a live worker resumes the compute. An owner on another machine cannot be
checked from here; its hold lapses after HANGAR_RECONCILE_LEASE_SECONDS. While the owner
works, a heartbeat thread renews the hold every third of that time (`kept`): a pass slowed
by a loaded machine — seen at 8–22 s against a 3 s lease — keeps its hold instead of
acting on beside a second reconciler that took the lapsed one (a stale pass wrote a job's
end twice and freed the node the next job ran on).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from compute.models import Compute

log = logging.getLogger(__name__)
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class Owner:
    """Who holds a lease, as written in `Compute.lease_owner`."""

    host: str
    boot: str
    pid: int
    started: str  # the process's start time in clock ticks since boot (/proc/<pid>/stat)
    nonce: str  # one reconcile call of that process

    def text(self) -> str:
        return f"{self.host}|{self.boot}|{self.pid}|{self.started}|{self.nonce}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        parts = text.split("|")
        if len(parts) != 5 or not parts[2].isdigit():
            return None  # an older random id, or empty: nothing to prove with
        return cls(parts[0], parts[1], int(parts[2]), parts[3], parts[4])

    def provably_dead(self) -> bool:
        """True only when this machine can tell: same host and boot, and that process
        (pid *and* start time, so a reused pid does not count) no longer exists."""
        if self.host != host_name():
            return False
        if self.boot != boot_id():
            return bool(self.boot)  # that machine rebooted since: everything on it died
        return process_start_time(self.pid) != self.started


@cache
def host_name() -> str:
    return socket.gethostname()[:64]


@cache
def boot_id() -> str:
    try:
        with open(BOOT_ID_FILE) as handle:
            return handle.read().strip()[:36]
    except OSError:
        return ""


def process_start_time(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat, or "" if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return ""
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else ""


def new_owner() -> str:
    pid = os.getpid()
    return Owner(host_name(), boot_id(), pid, process_start_time(pid), uuid.uuid4().hex[:8]).text()


def take(compute_id: int, owner: str) -> bool:
    now = timezone.now()
    until = now + timedelta(seconds=settings.HANGAR_RECONCILE_LEASE_SECONDS)
    held = Compute.objects.filter(pk=compute_id)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner)
    if held.filter(free).update(lease_until=until, lease_owner=owner):
        return True
    holder = held.values_list("lease_owner", flat=True).first()
    dead = Owner.parse(holder or "")
    if dead is None or not dead.provably_dead():
        return False
    # Compare-and-set on the dead owner's name: of two workers taking over, one wins.
    if held.filter(lease_owner=holder).update(lease_until=until, lease_owner=owner):
        log.warning("compute %s: took over the lease of %s (process gone)", compute_id, holder)
        return True
    return False


def renew(compute_id: int, owner: str) -> bool:
    """Extend the hold between slow steps; False if it was lost (then stop acting)."""
    return take(compute_id, owner)


def release(compute_id: int, owner: str) -> None:
    Compute.objects.filter(pk=compute_id, lease_owner=owner).update(
        lease_until=None, lease_owner=""
    )


@contextmanager
def kept(compute_id: int, owner: str) -> Iterator[None]:
    """Renews the hold every third of the lease time until the block ends. A renewal that
    finds the hold taken stops the heartbeat; the pass finds out at its next `renew`
    (between slow steps) and stops acting. A block shorter than a third of the lease
    never touches the database."""
    if connection.in_atomic_block:
        # Called inside a transaction (a test's): the hold it took is not committed, so no
        # other reconciler sees it to take over, and a renewal from another connection
        # would wait on that transaction's row lock while this one waits for it.
        yield
        return
    done = threading.Event()
    period = settings.HANGAR_RECONCILE_LEASE_SECONDS / 3

    def beat() -> None:
        try:
            while not done.wait(period):
                try:
                    if not renew(compute_id, owner):
                        return
                except DatabaseError:  # SQLite busy, a dropped connection: next beat
                    log.debug("compute %s: lease renewal failed", compute_id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    heart = threading.Thread(target=beat, name=f"lease-{compute_id}", daemon=True)
    heart.start()
    try:
        yield
    finally:
        done.set()
        heart.join()
