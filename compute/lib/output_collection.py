"""Collecting job output files: each run (one rank of the job's last attempt) is collected
once, by the controller that ends the job, before the node's work folder is cleared, into a
private staging folder beside its place in the store (output_store.py) and renamed into place
in one step: a run's outputs are there whole or not at all, a worker killed midway leaves only
a staging folder (never listed, removed by the next try), and a second collection finds the
first done.

What a job wrote is hostile. A driver hands each entry to a `Sink`, which keeps folders and
regular files only: links, hard-linked files, devices, FIFOs and names that are not plain
text (control characters, `..`, a slash, not UTF-8) are left out and named in the job's
note. The caps (HANGAR_JOB_OUTPUTS_LIMIT_MB, _MAX_FILES, _MAX_DEPTH) hold for the job's
ranks together; a job past one has its whole set refused with the reason — a random part of
a job's outputs is worse than none. Bytes are counted as written, whatever a size said.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import os
import secrets
import stat
import tarfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.conf import settings

from compute.lib import snapshots
from compute.lib.output_store import (
    CHUNK,
    FILES,
    MANIFEST,
    OPEN_DIR,
    OPEN_FILE,
    Manifest,
    outputs_root,
    run_dir,
)

STAGING = ".staging-"
STALE_STAGING_SECONDS = 600
MAX_NAME_BYTES = 255
LEFT_OUT_SHOWN = 10  # named in the note; the rest counted
# Characters a name may not hold: controls (newline, tab, escape), format characters
# (bidirectional overrides that make a name read as another), separators of lines.
BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


class Refused(Exception):
    """The job's outputs break a cap: none of its files are kept, this says why."""


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_files: int
    max_depth: int
    # Why past max_bytes, when it is not the job's cap (the workspace's room, smaller).
    bytes_refusal: str = ""

    def less(self, used_bytes: int, used_files: int) -> Limits:
        return dataclasses.replace(
            self, max_bytes=self.max_bytes - used_bytes, max_files=self.max_files - used_files
        )

    def within(self, room: int, refusal: str) -> Limits:
        """At most `room` bytes, refused with `refusal` past them, if that is less."""
        if room >= self.max_bytes:
            return self
        return dataclasses.replace(self, max_bytes=max(room, 0), bytes_refusal=refusal)


def limits() -> Limits:
    return Limits(
        settings.HANGAR_JOB_OUTPUTS_LIMIT_MB * 1024 * 1024,
        settings.HANGAR_JOB_OUTPUTS_MAX_FILES,
        settings.HANGAR_JOB_OUTPUTS_MAX_DEPTH,
    )


# Names -----------------------------------------------------------------------------------


def shown(name: str, limit: int = 80) -> str:
    """A hostile name as text that is safe to put in a message: unprintable characters
    (and bytes that were not UTF-8) become `?`."""
    cleaned = "".join(
        "?" if unicodedata.category(ch) in BAD_CATEGORIES else ch
        for ch in name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    )
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def name_problem(name: str) -> str:
    """Why one path component cannot be kept as it is ("" if it can)."""
    if name in ("", ".", ".."):
        return "is not a file name"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not UTF-8 text"
    if len(encoded) > MAX_NAME_BYTES:
        return "is too long a name"
    if "/" in name or "\\" in name:
        return "has a slash in its name"
    if any(unicodedata.category(ch) in BAD_CATEGORIES for ch in name):
        return "has control characters in its name"
    return ""


# Collecting ------------------------------------------------------------------------------


class Sink:
    """Receives one run's outputs from a driver, entry by entry, into a staging folder.

    `parts` are the path components under ./outputs. A driver hands over every entry it
    finds, whatever its kind: the sink decides what is kept (`folder`, `file`) and what is
    left out (`leave_out`), and raises Refused past a cap.
    """

    def __init__(
        self,
        folder: Path,
        budget: Limits | Callable[[], Limits],
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.root = folder
        # Worked out (and `prepare`, making the folder, called) at the first entry: most
        # runs write no ./outputs, and they cost no query and no folder.
        self._budget = budget
        self._prepare = prepare
        self.started = False
        self.manifest = Manifest()
        self.bytes = 0
        # Every entry a driver hands over, kept or not (a link, a file in a folder left
        # out): walking and reading them costs the worker whatever is kept, so all count.
        self.entries = 0
        self.made: set[tuple[str, ...]] = {()}
        self.dropped: set[tuple[str, ...]] = set()  # folders left out: their insides too

    def _check(self, parts: tuple[str, ...]) -> str:
        for part in parts:
            problem = name_problem(part)
            if problem:
                return problem
        return ""

    @property
    def budget(self) -> Limits:
        if not isinstance(self._budget, Limits):
            self._budget = self._budget()
        return self._budget

    def start(self) -> None:
        """Its folder made, once: at the first entry, or a refusal before one."""
        if not self.started:
            self.started = True
            if self._prepare is not None:
                self._prepare()

    def _arrive(self) -> None:
        """One more entry of ./outputs, whatever becomes of it."""
        self.start()
        self.entries += 1
        if self.entries > self.budget.max_files:
            self.too_many()

    def _deep(self, parts: tuple[str, ...]) -> None:
        if len(parts) > self.budget.max_depth:
            raise Refused(
                f"./outputs goes more than {settings.HANGAR_JOB_OUTPUTS_MAX_DEPTH} folders "
                "deep (HANGAR_JOB_OUTPUTS_MAX_DEPTH): none of its files were kept."
            )

    def too_many(self) -> None:
        raise Refused(
            f"./outputs holds more than {settings.HANGAR_JOB_OUTPUTS_MAX_FILES:,} entries "
            "(files and folders, links and whatever else is left out; "
            "HANGAR_JOB_OUTPUTS_MAX_FILES, for all of a job's ranks): none of its files "
            "were kept."
        )

    def _take(self, size: int) -> None:
        self.bytes += size
        if self.bytes > self.budget.max_bytes:
            raise Refused(
                self.budget.bytes_refusal
                or f"./outputs holds more than {settings.HANGAR_JOB_OUTPUTS_LIMIT_MB:,} MiB "
                "(HANGAR_JOB_OUTPUTS_LIMIT_MB, for all of a job's ranks): none of its "
                "files were kept."
            )

    def _inside_dropped(self, parts: tuple[str, ...]) -> bool:
        return any(parts[:n] in self.dropped for n in range(1, len(parts)))

    def leave_out(self, parts: tuple[str, ...], why: str) -> None:
        """An entry a driver would not hand over as a folder or a file (a link, a FIFO)."""
        self._arrive()
        self._left_out(parts, why)

    def _left_out(self, parts: tuple[str, ...], why: str) -> None:
        if self._inside_dropped(parts):
            return
        self.manifest.left_out_count += 1
        if len(self.manifest.left_out) < LEFT_OUT_SHOWN:
            self.manifest.left_out.append(f"“{shown('/'.join(parts))}” {why}")

    def folder(self, parts: tuple[str, ...]) -> bool:
        """True if the folder is kept (a driver may skip what is inside one that is not)."""
        self._arrive()
        if self._inside_dropped(parts):
            return False
        problem = self._check(parts)
        if problem:
            self._left_out(parts, problem)
            self.dropped.add(parts)
            return False
        self._deep(parts)
        self._ensure(parts, named=len(parts))
        return True

    def _ensure(self, parts: tuple[str, ...], named: int = 0) -> None:
        """Folders down to `parts`; those a tar never named (only a file inside) count as
        entries too, or a few files deep down would make many folders uncounted."""
        for n in range(1, len(parts) + 1):
            if parts[:n] not in self.made:
                if n != named:
                    self._arrive()
                os.mkdir(self.root.joinpath(*parts[:n]), 0o700)
                self.made.add(parts[:n])

    def file(self, parts: tuple[str, ...], source: IO[bytes], size: int | None = None) -> None:
        """A regular file of `size` bytes (as its header or stat said, if known). One left
        out still counts: its entry, and its bytes, which a tar stream makes Hangar read."""
        self._arrive()
        if size is not None and self.bytes + size > self.budget.max_bytes:
            self._take(size)  # refuses now, before a byte is copied or read through
        if self._inside_dropped(parts):
            self.bytes += size or 0
            return
        problem = self._check(parts)
        if problem:
            self._left_out(parts, problem)
            self.bytes += size or 0
            return
        self._deep(parts)
        self._ensure(parts[:-1])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.root.joinpath(*parts), flags, 0o600)
        except FileExistsError:
            self._left_out(parts, "appears twice")
            self.bytes += size or 0
            return
        written = 0
        with os.fdopen(fd, "wb") as target:
            while chunk := source.read(CHUNK):
                self._take(len(chunk))
                written += len(chunk)
                target.write(chunk)
        self.manifest.files.append(("/".join(parts), written))


@contextlib.contextmanager
def collecting(run_key: str, budget: Limits | Callable[[], Limits]) -> Iterator[Sink]:
    """A Sink into a fresh staging folder; on leaving, the run's outputs are put in place
    in one rename (refused ones too: an empty set with the reason). An error other than
    Refused leaves nothing: the next try starts over. A run that wrote no ./outputs (no
    entry reached the sink) leaves nothing either, and costs no folder: collecting it
    again finds nothing again."""
    final = run_dir(run_key)
    parent = final.parent
    staging = parent / f"{STAGING}{final.name}-{secrets.token_hex(4)}"

    def prepare() -> None:
        outputs_root().mkdir(parents=True, exist_ok=True, mode=0o700)
        parent.mkdir(exist_ok=True, mode=0o700)
        _remove_stale_staging(parent, final.name)
        staging.mkdir(mode=0o700)
        (staging / FILES).mkdir(mode=0o700)

    placed = False
    sink = Sink(staging / FILES, budget, prepare)
    try:
        try:
            yield sink
        except Refused as refusal:
            sink.start()  # a refusal may come before any entry (too many names in a folder)
            snapshots.remove_tree(staging / FILES)
            (staging / FILES).mkdir(mode=0o700)
            sink.manifest = Manifest(refused=str(refusal))
        if not sink.started:
            placed = True  # nothing to place, nothing to remove
            return
        sink.manifest.files.sort()
        (staging / MANIFEST).write_bytes(sink.manifest.to_json())
        _freeze(staging)
        try:
            os.rename(staging, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            # Another pass collected it meanwhile (a lease that lapsed): the first stays.
        else:
            placed = True
        # The run's outputs are in place: any other staging folder of it is a dead
        # worker's (SIGKILLed mid-copy, and the pass after it came within seconds, long
        # before that folder read as stale) or a late pass's, whose rename would fail.
        _remove_stale_staging(parent, final.name, older_than=0, keep=staging.name)
    finally:
        if not placed and sink.started:
            snapshots.remove_tree(staging)


def _freeze(folder: Path) -> None:
    for parent, dirs, files in os.walk(folder, topdown=False):
        for name in files:
            os.chmod(os.path.join(parent, name), 0o400, follow_symlinks=False)
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o500, follow_symlinks=False)
    os.chmod(folder, 0o500)


def _remove_stale_staging(
    parent: Path, run_part: str, older_than: float = STALE_STAGING_SECONDS, keep: str = ""
) -> None:
    """Staging folders of this run left by a worker killed mid-collection."""
    now = time.time()
    with os.scandir(parent) as entries:
        for entry in entries:
            if not entry.name.startswith(f"{STAGING}{run_part}-") or entry.name == keep:
                continue
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime >= older_than:
                    snapshots.remove_tree(Path(entry.path))


# What drivers hand over: a tar stream (Docker) or a folder (host processes) -------------


class _ChunkReader(io.RawIOBase):
    """A file over an iterator of byte chunks (the Docker API's archive stream)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks = iter(chunks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def from_tar(chunks: Iterable[bytes], top: str, sink: Sink) -> None:
    """Entries of a tar stream whose first component is `top` (the archived ./outputs)."""
    reader = io.BufferedReader(_ChunkReader(chunks), CHUNK)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for member in archive:
                raw = member.name.split("/")
                parts = tuple(raw[1:])
                if raw[0] != top or any(p in ("", ".", "..") for p in parts) or "\0" in member.name:
                    sink.leave_out(tuple(raw), "is outside ./outputs")
                    continue
                if not parts:
                    if not member.isdir():
                        sink.leave_out((top,), "is not a folder")
                    continue
                if member.isdir():
                    sink.folder(parts)
                elif member.isreg():
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        sink.file(parts, extracted, member.size)
                else:
                    sink.leave_out(parts, kind_of_tar(member))
    except tarfile.TarError as exc:
        raise OSError(errno.EIO, f"the outputs archive is unreadable: {exc}") from None


def kind_of_tar(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "is a symbolic link"
    if member.islnk():
        return "is a hard link"
    if member.isfifo():
        return "is a FIFO"
    if member.ischr() or member.isblk():
        return "is a device"
    return "is not a regular file"


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_ISFIFO(mode):
        return "is a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"


def from_folder(fd: int, sink: Sink, parts: tuple[str, ...] = ()) -> None:
    """Entries of a folder a job wrote (closes `fd`). Every entry is lstat'ed relative to
    its folder's descriptor and opened with O_NOFOLLOW; a file is kept only if the opened
    descriptor is a regular file with one link (a hard link could be anyone's file)."""
    try:
        names = []
        with os.scandir(fd) as entries:
            for entry in entries:
                names.append(entry.name)
                if len(names) > sink.budget.max_files:
                    sink.too_many()
        for name in sorted(names):
            inner = (*parts, name)
            try:
                info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue  # gone meanwhile
            if stat.S_ISDIR(info.st_mode):
                if not sink.folder(inner):
                    continue
                try:
                    child = os.open(name, OPEN_DIR, dir_fd=fd)
                except OSError:
                    sink.leave_out(inner, "changed while it was read")
                    continue
                from_folder(child, sink, inner)
            elif stat.S_ISREG(info.st_mode):
                try:
                    file_fd = os.open(name, OPEN_FILE, dir_fd=fd)
                except OSError:
                    sink.leave_out(inner, "changed while it was read")
                    continue
                with os.fdopen(file_fd, "rb") as handle:
                    opened = os.fstat(file_fd)
                    if not stat.S_ISREG(opened.st_mode):
                        sink.leave_out(inner, kind_of(opened.st_mode))
                    elif opened.st_nlink != 1:
                        sink.leave_out(inner, "is a hard link")
                    else:
                        os.set_blocking(file_fd, True)
                        sink.file(inner, handle, opened.st_size)
            else:
                sink.leave_out(inner, kind_of(info.st_mode))
    finally:
        os.close(fd)
