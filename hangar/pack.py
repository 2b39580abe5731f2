"""A code folder as the zip a job runs from: what `.gitignore` and `.hangarignore` leave.

The rules are git's: blank lines and `# comments` are skipped; `!pattern` takes a file back;
`dir/` matches directories only; a pattern with a `/` at its start or middle is anchored to
the folder of the ignore file it is in, one without matches at any depth; `*`, `?`,
`[abc]` and `**` (any number of folders) glob. The last matching rule wins, and as in git a
file inside an ignored folder cannot be taken back (the folder is never entered). Ignore
files in subfolders apply below them; `.hangarignore` is read after `.gitignore`, so it can
ignore more or take back what git ignores. `.git` is always left out, symbolic links are
never followed (nor packed), and a folder larger than the limit is refused before anything
is written.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from hangar import CODE_SIZE_LIMIT

IGNORE_FILES = (".gitignore", ".hangarignore")
ALWAYS_SKIPPED = frozenset({".git"})
MIB = 1024 * 1024
DEFAULT_LIMIT = CODE_SIZE_LIMIT


class PackError(Exception):
    """The folder cannot be packed; the message says why, in one line."""


@dataclass(frozen=True)
class Rule:
    pattern: str  # as written, for messages
    regex: re.Pattern[str]
    negated: bool
    directories_only: bool
    base: str  # the ignore file's folder, relative to the packed one ("" at its root)

    def matches(self, path: str, is_dir: bool) -> bool:
        if self.directories_only and not is_dir:
            return False
        if self.base:
            if not path.startswith(self.base + "/"):
                return False
            path = path[len(self.base) + 1 :]
        return self.regex.fullmatch(path) is not None


def parse_rules(text: str, base: str = "") -> list[Rule]:
    """The rules of one ignore file whose folder is `base` (relative, "/"-separated)."""
    rules = []
    for raw in text.splitlines():
        rule = parse_line(raw, base)
        if rule is not None:
            rules.append(rule)
    return rules


def parse_line(raw: str, base: str = "") -> Rule | None:
    line = raw.rstrip("\r")
    if not line or line.startswith("#"):
        return None
    # Trailing spaces are dropped unless escaped with a backslash.
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        stripped += " "
    line = stripped
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    elif line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    directories_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    if not line:
        return None
    body = glob_to_regex(line)
    regex = re.compile(body if anchored else f"(?:.*/)?{body}", re.DOTALL)
    return Rule(raw.strip(), regex, negated, directories_only, base)


def glob_to_regex(pattern: str) -> str:
    """A gitignore glob as a regular expression over a "/"-separated relative path."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                starts_part = i == 0 or pattern[i - 1] == "/"
                ends_part = i + 2 == n or pattern[i + 2] == "/"
                if starts_part and ends_part:
                    if i + 2 == n:  # "dir/**": everything inside; "**": everything
                        out.append(".*")
                        i += 2
                    else:  # "**/x" or "a/**/x": zero or more folders
                        out.append("(?:.*/)?")
                        i += 3
                    continue
                i += 2  # "a**b": as one "*"
                out.append("[^/]*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = i + 1
            if end < n and pattern[end] in "!^":
                end += 1
            if end < n and pattern[end] == "]":
                end += 1
            while end < n and pattern[end] != "]":
                end += 1
            if end >= n:  # no closing bracket: a literal "["
                out.append(re.escape(c))
            else:
                inside = pattern[i + 1 : end]
                negate = inside[:1] in ("!", "^")
                if negate:
                    inside = inside[1:]
                # Ranges keep their "-"; anything else is literal inside the class.
                body = "".join(ch if ch == "-" else re.escape(ch) for ch in inside)
                out.append(f"(?!/)[{'^' if negate else ''}{body}]")
                i = end
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def ignored(rules: Iterable[Rule], path: str, is_dir: bool) -> bool:
    """Whether the last rule matching `path` ignores it."""
    verdict = False
    for rule in rules:
        if rule.matches(path, is_dir):
            verdict = not rule.negated
    return verdict


@dataclass
class Selection:
    """The files a folder packs to, and what was left out on the way."""

    root: Path
    files: list[tuple[Path, str, int]] = field(default_factory=list)  # (path, name, bytes)
    links: list[str] = field(default_factory=list)  # symbolic links, not followed
    size: int = 0

    @property
    def names(self) -> list[str]:
        return [name for _, name, _ in self.files]


def select(folder: str | os.PathLike[str], limit: int | None = DEFAULT_LIMIT) -> Selection:
    """Walk `folder` and pick what its ignore rules keep; PackError over `limit` bytes."""
    root = Path(folder).expanduser()
    try:
        info = root.lstat()
    except OSError as error:
        raise PackError(f"cannot read the code folder {root}: {reason(error)}")
    if stat.S_ISLNK(info.st_mode):
        root = root.resolve()  # the folder named itself may be a link; nothing inside is
        info = root.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise PackError(f"the code folder {root} is not a folder")
    chosen = Selection(root)
    walk(root, "", [], chosen, limit)
    chosen.files.sort(key=lambda entry: entry[1])
    return chosen


def walk(folder: Path, rel: str, rules: list[Rule], chosen: Selection, limit: int | None) -> None:
    rules = rules + list(read_rules(folder, rel))
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        raise PackError(f"cannot read {folder}: {reason(error)}")
    for entry in entries:
        if entry.name in ALWAYS_SKIPPED:
            continue
        path = f"{rel}/{entry.name}" if rel else entry.name
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as error:
            raise PackError(f"cannot read {entry.path}: {reason(error)}")
        is_dir = stat.S_ISDIR(mode)
        if ignored(rules, path, is_dir):
            continue
        if stat.S_ISLNK(mode):
            chosen.links.append(path)
        elif is_dir:
            walk(Path(entry.path), path, rules, chosen, limit)
        elif stat.S_ISREG(mode):
            size = entry.stat(follow_symlinks=False).st_size
            chosen.size += size
            chosen.files.append((Path(entry.path), path, size))
            if limit is not None and chosen.size > limit:
                raise PackError(
                    f"the code folder {chosen.root} holds more than {mib(limit)} "
                    f"(the limit) once .gitignore and .hangarignore are applied: "
                    "list what the job does not need (data, checkpoints, environments) "
                    "in .hangarignore"
                )
        # sockets, pipes and devices are not code


def read_rules(folder: Path, rel: str) -> Iterator[Rule]:
    for name in IGNORE_FILES:
        path = folder / name
        if path.is_symlink() or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as error:
            raise PackError(f"cannot read {path}: {reason(error)}")
        yield from parse_rules(text, rel)


@dataclass
class Packed:
    """A packed folder: a zip in a temporary file (closed, and so removed, by `close`)."""

    file: IO[bytes]
    name: str  # "<folder>.zip"
    count: int  # files inside
    size: int  # their bytes, unpacked
    links: list[str]  # symbolic links left out

    @property
    def zip_size(self) -> int:
        self.file.seek(0, os.SEEK_END)
        size = self.file.tell()
        self.file.seek(0)
        return size

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Packed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pack(folder: str | os.PathLike[str], limit: int | None = DEFAULT_LIMIT) -> Packed:
    """Zip what `select` keeps of `folder` (names relative to it) into a temporary file."""
    return zip_selection(select(folder, limit), "code")


def zip_selection(chosen: Selection, what: str) -> Packed:
    archive = tempfile.TemporaryFile(prefix=f"hangar-{what}-", suffix=".zip")
    try:
        with zipfile.ZipFile(
            archive, "w", compression=zipfile.ZIP_DEFLATED, strict_timestamps=False
        ) as zipped:
            for path, name, _ in chosen.files:
                try:
                    zipped.write(path, name)
                except OSError as error:
                    raise PackError(f"cannot read {path}: {reason(error)}")
    except BaseException:
        archive.close()
        raise
    archive.seek(0)
    name = (chosen.root.resolve().name or what) + ".zip"
    return Packed(archive, name, len(chosen.files), chosen.size, chosen.links)


def select_all(folder: str | os.PathLike[str]) -> Selection:
    """Every regular file under `folder`, whatever ignore files say (a batch job's inputs
    are data, not code: .git and .gitignore'd files too). Links are not followed."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise PackError(f"the folder {root} is not a folder")
    root = root.resolve() if root.is_symlink() else root
    chosen = Selection(root)
    pending = [(root, "")]
    while pending:
        folder_path, rel = pending.pop()
        try:
            entries = list(os.scandir(folder_path))
        except OSError as error:
            raise PackError(f"cannot read {folder_path}: {reason(error)}")
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError as error:
                raise PackError(f"cannot read {entry.path}: {reason(error)}")
            if stat.S_ISLNK(info.st_mode):
                chosen.links.append(path)
            elif stat.S_ISDIR(info.st_mode):
                pending.append((Path(entry.path), path))
            elif stat.S_ISREG(info.st_mode):
                chosen.size += info.st_size
                chosen.files.append((Path(entry.path), path, info.st_size))
    chosen.files.sort(key=lambda entry: entry[1])
    chosen.links.sort()
    return chosen


def pack_all(folder: str | os.PathLike[str]) -> Packed:
    """Zip every regular file of `folder` (names relative to it, no link) into a temporary
    file: `select_all`'s choice, for a batch job's inputs."""
    return zip_selection(select_all(folder), "inputs")


def mib(size: int) -> str:
    return f"{size / MIB:g} MiB"


def reason(error: OSError) -> str:
    return (error.strerror or str(error)).lower()


__all__ = [
    "DEFAULT_LIMIT",
    "PackError",
    "Packed",
    "pack",
    "pack_all",
    "parse_rules",
    "select",
    "select_all",
]
