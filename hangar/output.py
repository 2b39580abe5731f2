"""What the CLI prints: tables (rich, imported when one is printed) or one JSON document
on stdout; notes and errors on stderr, one line each. How each resource is shown is its
command module's (hangar/commands/); this is the one way to print it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
Fields = list[tuple[str, Any]]


class Output(StrEnum):
    table = "table"
    json = "json"


class Failure(Exception):
    """A clear one-line error (`hangar: ...`) and an exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def warn(message: str) -> None:
    sys.stderr.write(f"hangar: {message}\n")


def note(message: str) -> None:
    """A line for the person at the terminal (stderr: stdout stays the command's)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_table(columns: list[str], rows: list[list[Any]], empty: str = "") -> None:
    from rich import box
    from rich.table import Table

    if not rows and empty:
        note(empty)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(table)


def print_fields(pairs: Fields) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, "" if value is None or value == "" else str(value))
    console().print(table)


def show_rows(
    items: Sequence[T],
    output: Output,
    columns: list[str],
    row: Callable[[T], list[Any]],
    empty: str = "",
) -> None:
    """A list of things: the JSON as the API gave it, or a table of one row each."""
    if output is Output.json:
        print_json(items)
        return
    print_table(columns, [row(item) for item in items], empty)


def show_fields(item: T, output: Output, fields: Callable[[T], Fields]) -> None:
    """One thing: the JSON as the API gave it, or its fields, one a line."""
    if output is Output.json:
        print_json(item)
        return
    print_fields(fields(item))


def show_lines(output: Output, data: Any, *lines: str) -> None:
    """The JSON, or the lines (on stdout) that say it."""
    if output is Output.json:
        print_json(data)
        return
    for line in lines:
        print(line)


def when(value: str | None) -> str:
    """An API time, shorter: "2026-05-01 12:30:05"."""
    return value.replace("T", " ")[:19] if value else ""


def size_text(size: int) -> str:
    """A size in bytes as people read it: "12 B", "4.2 KiB", "1.3 GiB"."""
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


def files_text(count: int) -> str:
    """ "1 file", "1,024 files"."""
    return f"{count:,} file{'' if count == 1 else 's'}"
