"""Job code snapshots: HANGAR_JOBS_DIR/code/<job>/, read-only, written once. Registered
models are stored the same way (`Store`: HANGAR_MODELS_DIR/<model>/, their own cap).

A snapshot is built in a private temporary folder next to its final place (same
filesystem), checked, frozen, then renamed into place in one step. So a job either has its
whole snapshot or none, a failure leaves nothing behind, and a new job never inherits a
folder that is already there (SQLite hands a rolled-back job id to the next job).
Unpacked bytes are counted as they are written: a zip bomb stops at HANGAR_CODE_LIMIT_MB
whatever sizes the archive declares.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from django.conf import settings

MAX_ZIP_FILES = 10_000
MAX_NAME_BYTES = 255  # one path component on Linux filesystems
CHUNK = 1024 * 1024
# Each one means the archive itself is broken or uses something zipfile cannot unpack.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)

log = logging.getLogger(__name__)


class CodeError(ValueError):
    pass


@dataclass(frozen=True)
class Store:
    """Where snapshots of one kind live, and what each may take once unpacked."""

    what: str  # "code", "model": the word errors use
    root: Path
    limit_mb: int

    def folder(self, key: int) -> Path:
        return self.root / str(key)

    def too_big(self) -> CodeError:
        return CodeError(f"The {self.what} is larger than {self.limit_mb} MiB once unpacked.")


def code_store() -> Store:
    return Store("code", Path(settings.HANGAR_JOBS_DIR) / "code", settings.HANGAR_CODE_LIMIT_MB)


def model_store() -> Store:
    return Store("model", Path(settings.HANGAR_MODELS_DIR), settings.HANGAR_MODEL_LIMIT_MB)


def code_root() -> Path:
    return code_store().root


def code_dir(job_id: int) -> Path:
    return code_store().folder(job_id)


def limit_bytes() -> int:
    return settings.HANGAR_CODE_LIMIT_MB * 1024 * 1024


def too_big() -> CodeError:
    return code_store().too_big()


def safe_name(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/")).strip()
    if not base or base in (".", "..") or base.startswith(".") or "\0" in base:
        raise CodeError(f"“{_short(name)}” is not a usable file name.")
    if len(base.encode()) > MAX_NAME_BYTES:
        raise CodeError(f"The file name “{_short(name)}” is too long.")
    return base


def store_script(job_id: int, filename: str, text: str) -> None:
    store_file(job_id, filename, text.encode())


def store_file(
    job_id: int, filename: str, data: bytes | IO[bytes], store: Store | None = None
) -> None:
    store = store or code_store()
    name = safe_name(filename)
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with _staged(store, job_id) as folder:
        _copy(source, folder / name, _Budget(store))


def store_files(key: int, files: dict[str, bytes], store: Store) -> None:
    """Several files of Hangar's own making (a replica's scripts) as one snapshot."""
    with _staged(store, key) as folder:
        budget = _Budget(store)
        for filename, data in files.items():
            _copy(io.BytesIO(data), folder / safe_name(filename), budget)


def serving_store() -> Store:
    """A deployment's scoring script and Hangar's scoring server, read-only in its replicas."""
    return Store(
        "scoring script", Path(settings.HANGAR_SERVING_DIR) / "code", settings.HANGAR_CODE_LIMIT_MB
    )


def batch_code_store() -> Store:
    """A batch job's scoring script, Hangar's runner and its mini-batch list, read-only in
    its nodes."""
    return Store(
        "scoring script",
        Path(settings.HANGAR_SERVING_DIR) / "batch-code",
        settings.HANGAR_CODE_LIMIT_MB,
    )


def batch_input_store() -> Store:
    """A batch job's input files, read-only in its nodes."""
    return Store(
        "input", Path(settings.HANGAR_SERVING_DIR) / "batch-inputs", settings.HANGAR_MODEL_LIMIT_MB
    )


def store_uploads(key: int, uploads: list[tuple[str, IO[bytes]]], store: Store) -> None:
    """Several uploaded files as one snapshot, side by side (two of one name: refused)."""
    with _staged(store, key) as folder:
        budget = _Budget(store)
        for filename, source in uploads:
            name = safe_name(filename)
            try:
                _copy(source, folder / name, budget)
            except FileExistsError:
                raise CodeError(f"Two files are named “{_short(name)}”.") from None


def store_copies(
    key: int, files: Iterable[tuple[str, Callable[[], IO[bytes]]]], store: Store
) -> None:
    """Files Hangar keeps elsewhere (a job's output files) copied as one snapshot at their
    relative paths, with the caps of an upload: MAX_ZIP_FILES files, the store's bytes."""
    with _staged(store, key) as folder:
        budget, count = _Budget(store), 0
        for relative, opener in files:
            count += 1
            if count > MAX_ZIP_FILES:
                raise CodeError(f"There are more than {MAX_ZIP_FILES} files.")
            path = PurePosixPath(relative)
            if relative.startswith("/") or ".." in path.parts or not path.parts:
                raise CodeError(f"“{_short(relative)}” points outside its folder.")
            destination = folder.joinpath(*path.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with opener() as source:
                _copy(source, destination, budget)


def files_in(folder: Path) -> list[str]:
    """Every regular file under a stored snapshot, as sorted relative paths."""
    found = []
    for parent, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            path = os.path.join(parent, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                found.append(os.path.relpath(path, folder))
    return sorted(found)


def check_zip(archive: zipfile.ZipFile, store: Store | None = None) -> list[zipfile.ZipInfo]:
    """Refuse archives that escape their folder or say they would fill the disk.

    The declared sizes only refuse early; the byte count while unpacking is what holds.
    """
    store = store or code_store()
    members = archive.infolist()
    if len(members) > MAX_ZIP_FILES:
        raise CodeError(f"The zip holds {len(members)} files; the limit is {MAX_ZIP_FILES}.")
    if sum(m.file_size for m in members) > store.limit_mb * 1024 * 1024:
        raise store.too_big()
    for member in members:
        path = PurePosixPath(member.filename)
        if member.filename.startswith("/") or ".." in path.parts or "\0" in member.filename:
            raise CodeError(f"The zip entry “{_short(member.filename)}” points outside its folder.")
        if any(len(part.encode()) > MAX_NAME_BYTES for part in path.parts):
            raise CodeError(f"The zip entry “{_short(member.filename)}” has too long a name.")
    return members


def store_zip(job_id: int, data: bytes | IO[bytes], store: Store | None = None) -> None:
    store = store or code_store()
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with zipfile.ZipFile(source) as archive:
            members = check_zip(archive, store)
            with _staged(store, job_id) as folder:
                budget = _Budget(store)
                for member in members:
                    _unpack(archive, member, folder, budget)
    except CodeError:
        raise
    except (*ZIP_ERRORS, OSError, ValueError) as exc:  # e.g. a negative seek from bad offsets
        raise CodeError(f"The uploaded file is not a zip archive Hangar can unpack ({exc}).")


TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_tar_name(name: str) -> bool:
    return name.lower().endswith(TAR_SUFFIXES)


def store_tar(key: int, data: bytes | IO[bytes], store: Store) -> None:
    """A tar archive (plain, gzip, bzip2 or xz) unpacked as a snapshot, with the rules of
    zips: no entry outside its folder, names that fit, the unpacked bytes counted against
    the store's cap as they are written, links, devices and FIFOs left out (never made)."""
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with tarfile.open(fileobj=source, mode="r:*") as archive, _staged(store, key) as folder:
            budget, count = _Budget(store), 0
            for member in archive:  # read as it goes: never the whole listing at once
                count += 1
                if count > MAX_ZIP_FILES:
                    raise CodeError(f"The archive holds more than {MAX_ZIP_FILES} files.")
                path = PurePosixPath(member.name)
                if member.name.startswith("/") or ".." in path.parts or "\0" in member.name:
                    raise CodeError(
                        f"The tar entry “{_short(member.name)}” points outside its folder."
                    )
                if any(len(part.encode()) > MAX_NAME_BYTES for part in path.parts):
                    raise CodeError(f"The tar entry “{_short(member.name)}” has too long a name.")
                if not path.parts:
                    continue
                destination = folder.joinpath(*path.parts)
                if member.isdir():
                    destination.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    continue  # links could point anywhere; devices and FIFOs are no data
                destination.parent.mkdir(parents=True, exist_ok=True)
                extracted = archive.extractfile(member)
                if extracted is not None:
                    with extracted:
                        _copy(extracted, destination, budget)
    except CodeError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
        raise CodeError(f"The uploaded file is not a tar archive Hangar can unpack ({exc}).")


def _unpack(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path, budget: _Budget
) -> None:
    if stat.S_ISLNK(member.external_attr >> 16):
        return  # links could point anywhere
    destination = folder.joinpath(*PurePosixPath(member.filename).parts)
    if member.is_dir():
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(member) as source:
        _copy(source, destination, budget)


class _Budget:
    """The bytes a snapshot may still take, counted as they are written."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.left = store.limit_mb * 1024 * 1024

    def take(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise self.store.too_big()


def _copy(source: IO[bytes], destination: Path, budget: _Budget) -> None:
    # O_EXCL: a second entry of the same name is a clash, never an overwrite.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with os.fdopen(os.open(destination, flags, 0o600), "wb") as target:
        while chunk := source.read(CHUNK):
            budget.take(len(chunk))
            target.write(chunk)


@contextlib.contextmanager
def _staged(store: Store, key: int) -> Iterator[Path]:
    """A private folder to build the snapshot in; renamed to <root>/<key> if all went well."""
    final = store.folder(key)
    staging: Path | None = None
    what = store.what
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(final):
            log.warning("refusing to reuse the existing %s folder %s", what, final)
            owner = f"job #{key}" if what == "code" else f"{what} #{key}"
            raise CodeError(
                f"A {what} folder for {owner} already exists on this server and is never "
                "reused; ask a site admin to remove it."
            )
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{key}-", dir=final.parent))
        yield staging
        _freeze(staging)
        # A non-empty folder, a file or a link already at `final` makes rename fail.
        os.rename(staging, final)
        staging = None
    except OSError as exc:
        raise CodeError(f"The {what} could not be stored: {exc.strerror or exc}.") from None
    except ValueError as exc:  # e.g. a NUL in a name; CodeError passes through unchanged
        raise exc if isinstance(exc, CodeError) else CodeError(f"The {what} is unusable: {exc}.")
    finally:
        if staging is not None:
            remove_tree(staging)


def _freeze(folder: Path) -> None:
    """Read-only for everyone: the snapshot is what ran, whatever the job tries.

    Readable by all because the job may run as another user inside its node.
    """
    for parent, dirs, files in os.walk(folder, topdown=False):
        for name in files + dirs:
            path = os.path.join(parent, name)
            if os.path.islink(path):
                raise CodeError("A snapshot may not contain links.")
            os.chmod(path, 0o555 if name in dirs else 0o444)
    os.chmod(folder, 0o555)  # noqa: S103


def remove_code(job_id: int) -> None:
    remove_tree(code_dir(job_id))


def remove_tree(path: Path) -> None:
    """Delete a read-only tree without ever following a link (a link is removed itself)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        _make_writable(fd)
    finally:
        os.close(fd)
    shutil.rmtree(path)  # fd-based on Linux: it never follows a link


def _make_writable(fd: int) -> None:
    os.fchmod(fd, 0o700)
    for entry in os.scandir(fd):
        if entry.is_dir(follow_symlinks=False):
            child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            try:
                _make_writable(child)
            finally:
                os.close(child)


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"
