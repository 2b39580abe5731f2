"""Job output files as stored: what a job wrote under `./outputs` in its working folder (the
cloud ML studio convention), kept once its run ends (collected by output_collection.py).

A run's files (one rank of the job's last attempt) sit in
HANGAR_JOBS_DIR/outputs/<job>/<a<attempt>-r<rank>-<token>>/ as

    manifest.json   {"files": [[path, size], ...], "left_out": [...], "refused": ""}
    files/...       the files themselves, read-only

put there whole in one rename, or not at all. This module reads them back: a run's
manifest, a job's listing, one file opened without following any link, all of them as a zip
made while it is sent, and their removal.
"""

from __future__ import annotations

import io
import json
import os
import stat
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from django.conf import settings

from compute.lib import snapshots

MANIFEST = "manifest.json"
FILES = "files"
CHUNK = 1024 * 1024
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Non-blocking: a FIFO swapped in after the look would otherwise hang the open.
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def outputs_root() -> Path:
    return Path(settings.HANGAR_JOBS_DIR) / "outputs"


def job_dir(job_id: int) -> Path:
    return outputs_root() / str(int(job_id))


def _run_part(run_key: str) -> tuple[str, str]:
    from compute.lib.jobfiles import check_run_key

    job_part, run_part = check_run_key(run_key)
    if not job_part.isdigit():
        raise ValueError(f"not a run key: {run_key!r}")
    return job_part, run_part


def run_dir(run_key: str) -> Path:
    job_part, run_part = _run_part(run_key)
    return outputs_root() / job_part / run_part


# A run's manifest -------------------------------------------------------------------------


@dataclass
class Manifest:
    files: list[tuple[str, int]] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    left_out_count: int = 0
    refused: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def note(self) -> str:
        """What a person reads about what was not kept ("" when all was)."""
        if self.refused:
            return self.refused
        if not self.left_out_count:
            return ""
        named = "; ".join(self.left_out)
        more = self.left_out_count - len(self.left_out)
        tail = f"; and {more} more" if more > 0 else ""
        return (
            f"{self.left_out_count} entr{'y' if self.left_out_count == 1 else 'ies'} of "
            f"./outputs left out (only folders and regular files with plain names are "
            f"kept: no links, hard links, devices or FIFOs): {named}{tail}."
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "files": self.files,
                "left_out": self.left_out,
                "left_out_count": self.left_out_count,
                "refused": self.refused,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        data = json.loads(raw)
        return cls(
            files=[(str(path), int(size)) for path, size in data.get("files", [])],
            left_out=[str(x) for x in data.get("left_out", [])],
            left_out_count=int(data.get("left_out_count", 0)),
            refused=str(data.get("refused", "")),
        )


def read_manifest(run_key: str) -> Manifest | None:
    """The run's collected outputs, or None if it was not collected (yet)."""
    try:
        raw = (run_dir(run_key) / MANIFEST).read_bytes()
    except (OSError, ValueError):
        return None
    try:
        return Manifest.from_json(raw)
    except (ValueError, TypeError, KeyError):
        return None


def open_path_nofollow(root: Path, parts: Iterable[str]) -> int | None:
    """A folder under `root` (which is trusted) as a descriptor, each component opened
    without following a link; None if any is missing, a link or not a folder."""
    try:
        fd = os.open(root, OPEN_DIR)
    except OSError:
        return None
    for part in parts:
        try:
            next_fd = os.open(part, OPEN_DIR, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = next_fd
    return fd


# Reading what was kept -------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFile:
    path: str  # as shown and downloaded: rank-N/... for jobs of several nodes
    size: int
    run_key: str
    inner: str  # its path in the run's files/


def listing(runs: list[tuple[int, str]], several: bool) -> tuple[list[OutputFile], list[str]]:
    """(files, notes) of a job's runs [(rank, run key)], by path. A job of several nodes
    shows each rank's under rank-N/; a job of one node its files as they were written."""
    found: list[OutputFile] = []
    notes: list[str] = []
    for rank, run_key in sorted(runs):
        manifest = read_manifest(run_key)
        if manifest is None:
            continue
        prefix = f"rank-{rank}/" if several else ""
        found += [OutputFile(prefix + path, size, run_key, path) for path, size in manifest.files]
        note = manifest.note()
        if note:
            notes.append(f"Rank {rank}: {note}" if several else note)
    found.sort(key=lambda f: f.path)
    return found, notes


def open_file(item: OutputFile) -> IO[bytes]:
    """A kept file for reading, reached without following any link."""
    parts = item.inner.split("/")
    fd = open_path_nofollow(run_dir(item.run_key) / FILES, parts[:-1])
    if fd is None:
        raise FileNotFoundError(item.path)
    try:
        file_fd = os.open(parts[-1], OPEN_FILE, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(file_fd).st_mode):
        os.close(file_fd)
        raise FileNotFoundError(item.path)
    os.set_blocking(file_fd, True)
    return os.fdopen(file_fd, "rb")


class _Drain(io.RawIOBase):
    """What zipfile writes, kept until the response takes it (zipfile wraps it to tell
    positions; it never seeks, so entries carry data descriptors)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def zip_stream(files: list[OutputFile]) -> Iterator[bytes]:
    """The files as one zip, made while it is sent: never whole in memory or on disk."""
    drain = _Drain()
    with zipfile.ZipFile(drain, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for item in files:
            info = zipfile.ZipInfo(item.path, date_time=time.localtime()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with open_file(item) as source, archive.open(info, "w", force_zip64=True) as target:
                while chunk := source.read(CHUNK):
                    target.write(chunk)
                    if sum(len(p) for p in drain.parts) >= CHUNK:
                        yield drain.take()
            yield drain.take()
    yield drain.take()


def remove_job(job_id: int) -> None:
    """A job's outputs, every run's and any staging left, gone."""
    snapshots.remove_tree(job_dir(job_id))
