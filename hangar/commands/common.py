"""What many commands share: the client and workspace of a call, the arguments several
resources take, asking before a deletion, an upload's progress bar, and the two shapes of
command most resources have (list them, show one)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from hangar.commands.registry import Adder, command
from hangar.output import Failure, Output, console, show_rows
from hangar.profiles import connect

if TYPE_CHECKING:
    from hangar.client import Client

T = TypeVar("T")
Fetch = Callable[["Client", str, argparse.Namespace], T]


def output_of(args: argparse.Namespace) -> Output:
    return Output(args.output)


def connected(args: argparse.Namespace) -> tuple[Client, str]:
    return connect(args.profile, getattr(args, "workspace", None))


def lists(
    where: str,
    name: str,
    help: str,
    adder: Adder,
    fetch: Fetch[Sequence[T]],
    columns: list[str],
    row: Callable[[T], list[Any]],
    empty: str,
) -> None:
    """Register `hangar WHERE NAME`: a list of things, one row each; `empty` (which may
    name the {slug}) is said on stderr when there are none."""

    def run(args: argparse.Namespace) -> None:
        client, slug = connected(args)
        found = fetch(client, slug, args)
        show_rows(found, output_of(args), columns, row, empty.format(slug=slug))

    command(where, name, help, adder)(run)


def shows(
    where: str,
    name: str,
    help: str,
    adder: Adder,
    fetch: Fetch[T],
    show: Callable[[T, Output], None],
) -> None:
    """Register `hangar WHERE NAME`: one thing the API answers with, shown."""

    def run(args: argparse.Namespace) -> None:
        client, slug = connected(args)
        show(fetch(client, slug, args), output_of(args))

    command(where, name, help, adder)(run)


def job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB", type=int, help="The job's id.")


def endpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT", help="The endpoint's name or id.")


def model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", "-m", required=True, help="The model: NAME (newest), NAME:VERSION or id."
    )


def size_option(parser: argparse.ArgumentParser, example: str = "Standard_DS3_v2") -> None:
    parser.add_argument("--size", required=True, help=f"A VM size's name, e.g. {example}.")


def yes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", "-y", action="store_true", help="Do not ask.")


def confirm(question: str) -> bool:
    """Ask on stderr; only a typed yes agrees (end of input does not)."""
    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def make_sure(args: argparse.Namespace, question: str, undone: str, verb: str) -> None:
    """Unless --yes: ask the question; anything but a typed yes ends the command."""
    if not args.yes and not confirm(question):
        raise Failure(f"not {undone} (pass --yes to {verb} without being asked)")


def in_time(wait: Callable[[], T]) -> T:
    """What `wait` returns; a wait that gave up is the command's failure."""
    try:
        return wait()
    except TimeoutError as error:
        raise Failure(str(error))


def read_script(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Failure(f"--script {path}: no such file", 2)
    except (OSError, UnicodeError) as error:
        raise Failure(f"--script {path}: cannot read it as UTF-8 text ({error})", 2)


def upload_progress() -> Any:
    """A rich progress bar on stderr for the upload, when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("uploading"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console(stderr=True),
        transient=True,
    )


@contextmanager
def uploading(shown: bool = True) -> Iterator[Callable[[int, int], None]]:
    """What advances an upload's progress bar (on a terminal, when `shown`). The bar starts
    with the first bytes sent: notes said before (a folder zipped) stand above it."""
    progress = upload_progress() if shown else None
    task: Any = None
    started = False

    def advance(sent: int, total: int) -> None:
        nonlocal task, started
        if progress is None:
            return
        if not started:
            progress.start()
            started = True
        if task is None:
            task = progress.add_task("upload", total=total)
        progress.update(task, completed=sent)

    try:
        yield advance
    finally:
        if progress is not None and started:
            progress.stop()
