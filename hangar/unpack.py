"""Files from the server written into a folder of the user's, read as hostile.

A job's output files come from a job (whatever code it ran) through the server, so a name
may try to leave the folder: `../x`, `/etc/x`, `..\\x`, a zip entry that is a symbolic
link, a name with control characters meant for the terminal. Every name is checked before
anything is written, and a zip with one bad name is refused whole. Inside the folder no
link is followed: each folder on the way is opened with O_NOFOLLOW from its parent's
descriptor (a link put there, by anyone, is in the way, not a way out), and each file is
written beside its name and renamed onto it once whole.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

CHUNK = 1024 * 1024
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Controls (newline, escape), format characters (bidirectional overrides), line separators.
BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


class UnpackError(Exception):
    """A name or an entry that is not written; the message says which and why."""


def shown(name: str) -> str:
    return "".join("?" if unicodedata.category(ch) in BAD_CATEGORIES else ch for ch in name)


def parts_of(name: str) -> tuple[str, ...]:
    """The folders and file of a relative, "/"-separated name that stays inside the folder
    it is written into; UnpackError for any other."""
    if name.startswith("/") or "\\" in name:
        raise UnpackError(f"“{shown(name)}” is not a relative path")
    parts = tuple(name.split("/"))
    if any(part in ("", ".", "..") for part in parts):
        raise UnpackError(f"“{shown(name)}” is not a plain path (empty, `.` or `..` in it)")
    if any(unicodedata.category(ch) in BAD_CATEGORIES for ch in name):
        raise UnpackError(f"“{shown(name)}” has control characters in its name")
    return parts


class Folder:
    """A folder of the user's to write into, by names checked by parts_of."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def folder(self, parts: tuple[str, ...]) -> Iterator[int]:
        """The folder `parts` under this one, made if missing, as a descriptor; every step
        opened without following a link."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, OPEN_DIR)
        try:
            for n, part in enumerate(parts):
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                try:
                    inner = os.open(part, OPEN_DIR, dir_fd=fd)
                except OSError:
                    where = "/".join(parts[: n + 1])
                    raise UnpackError(f"{self.path / where} is in the way: not a folder") from None
                os.close(fd)
                fd = inner
            yield fd
        finally:
            os.close(fd)

    def write(self, parts: tuple[str, ...], source: IO[bytes]) -> int:
        """`source` as the file `parts`, whole or not at all; the bytes written."""
        return self.write_with(parts, lambda target: copy(source, target))

    def write_with(self, parts: tuple[str, ...], fill: Callable[[IO[bytes]], int]) -> int:
        """The file `parts`, as `fill(file)` writes it, renamed onto its name once whole
        (over a file of that name, or a link: never through it)."""
        with self.folder(parts[:-1]) as fd:
            partial = f".{parts[-1][:200]}.part-{secrets.token_hex(4)}"
            file_fd = os.open(partial, NEW_FILE, 0o644, dir_fd=fd)
            try:
                with os.fdopen(file_fd, "wb") as target:
                    written = fill(target)
                os.replace(partial, parts[-1], src_dir_fd=fd, dst_dir_fd=fd)
            except BaseException:
                os.unlink(partial, dir_fd=fd)
                raise
        return written


def copy(source: IO[bytes], target: IO[bytes]) -> int:
    written = 0
    while chunk := source.read(CHUNK):
        target.write(chunk)
        written += len(chunk)
    return written


def checked_entries(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """Every entry of the zip with its parts, once all are known to be plain folders and
    files with names inside the folder (UnpackError naming the first that is not)."""
    entries, seen = [], set()
    for info in archive.infolist():
        parts = parts_of(info.filename.removesuffix("/") if info.is_dir() else info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise UnpackError(f"“{shown(info.filename)}” is not a regular file (a link?)")
        if parts in seen:
            raise UnpackError(f"“{shown(info.filename)}” is in the zip twice")
        seen.add(parts)
        entries.append((info, parts))
    return entries


def extract_zip(source: IO[bytes], folder: Folder) -> list[tuple[str, int]]:
    """The zip's files written into `folder` ([(path, size)] by path). A zip with a name
    that would leave the folder, a link or a device in it is refused before any file is
    written."""
    try:
        with zipfile.ZipFile(source) as archive:
            entries = checked_entries(archive)
            written = []
            for info, parts in entries:
                if info.is_dir():
                    with folder.folder(parts):
                        pass
                    continue
                with archive.open(info) as member:
                    written.append(("/".join(parts), folder.write(parts, member)))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise UnpackError(f"the server's zip is unreadable: {error}") from None
    return sorted(written)


def download_zip(download: Callable[[IO[bytes]], int], into: Path) -> list[tuple[str, int]]:
    """Download a zip with `download(file)` into a hidden file in `into` (the files it
    holds go there anyway), then extract it there; the file is gone either way."""
    into.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=into, prefix=".hangar-download-") as spooled:
        download(spooled)
        spooled.seek(0)
        return extract_zip(spooled, Folder(into))
