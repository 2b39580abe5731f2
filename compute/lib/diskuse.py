"""How much of HANGAR_JOBS_DIR a workspace's jobs take: code snapshots, run output and
output files.

Only the folders of the workspace's own jobs are opened (code/<job>, runs/<job>), by job ids
from the database, so another workspace's files are never read. Run folders are written by
jobs, so they are hostile: every folder is opened with O_NOFOLLOW relative to its parent's
descriptor, entries are lstat'ed, links count as nothing and are never followed, and the
walk stops after MAX_ENTRIES entries or MAX_DEPTH levels (the total is then "at least").
Counting costs a walk, so the result is cached per workspace for a short time; storing a
size per job would need a migration and still miss output that grows while a job runs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from compute.lib import jobfiles, output_store, snapshots

MAX_ENTRIES = 200_000
MAX_DEPTH = 64
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class DiskUse:
    bytes: int
    complete: bool  # False: the walk stopped at a limit, the true figure is higher

    @property
    def label(self) -> str:
        return ("" if self.complete else "at least ") + human_bytes(self.bytes)


def disk_use(key: str, job_ids: Callable[[], Iterable[int]]) -> DiskUse:
    """The files of these jobs (ids from the database, never from a listing), cached
    under `key`; `job_ids` is only called when the cache has no figure."""
    cached = cache.get(key)
    if cached is None:
        cached = _count(job_ids())
        cache.set(key, cached, settings.HANGAR_DISK_USAGE_CACHE_SECONDS)
    return cached


def _count(job_ids: Iterable[int]) -> DiskUse:
    walk = _Walk()
    roots = (snapshots.code_root(), jobfiles.runs_root(), output_store.outputs_root())
    for job_id in job_ids:
        for root in roots:
            walk.folder(root / str(job_id))
    return DiskUse(walk.total, walk.complete)


class _Walk:
    def __init__(self) -> None:
        self.total = 0
        self.entries = 0
        self.complete = True

    def folder(self, path: Path) -> None:
        try:
            fd = os.open(path, OPEN_DIR)
        except OSError:
            return  # no such folder (a job that never ran), or not a folder: nothing to count
        self._walk(fd, 0)

    def _walk(self, fd: int, depth: int) -> None:
        """Counts regular files under fd (and closes it)."""
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    self.entries += 1
                    if self.entries > MAX_ENTRIES:
                        self.complete = False
                        return
                    self._entry(fd, entry, depth)
        except OSError:
            self.complete = False  # unreadable: whatever a job did to its folder
        finally:
            os.close(fd)

    def _entry(self, fd: int, entry: os.DirEntry, depth: int) -> None:
        info = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(info.st_mode):
            self.total += info.st_size
        elif stat.S_ISDIR(info.st_mode):
            if depth >= MAX_DEPTH:
                self.complete = False
                return
            try:
                child = os.open(entry.name, OPEN_DIR, dir_fd=fd)
            except OSError:
                self.complete = False  # replaced by a link since the stat: not followed
                return
            self._walk(child, depth + 1)


def human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
