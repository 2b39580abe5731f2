"""How a command is declared (`@command`) and how the parser of one call is
built from them. Every command is listed, but only the one called gets its options:
adding every option of every command took most of a command's start."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hangar import __version__
from hangar.output import Failure, Output

Command = Callable[[argparse.Namespace], int | None]
Adder = Callable[[argparse.ArgumentParser], None]

DESCRIPTION = (
    "Hangar's computes, jobs, models and endpoints from the command line (the REST API at "
    "/api/v1/)."
)


class Parser(argparse.ArgumentParser):
    """argparse's, with a usage error as one `hangar: ...` line (exit status 2)."""

    def error(self, message: str) -> Any:  # argparse's own signature returns NoReturn
        raise Failure(f"{message} (see `{self.prog} --help`)", 2)


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


@dataclass
class Spec:
    """One command: `hangar [group] name`, what it runs and the options it adds."""

    group: str | None
    name: str
    help: str
    run: Command
    options: Adder
    workspace: bool
    table: bool  # takes --output table|json (not one whose output is a file's bytes)


# In the order they are listed: each command module's, in the order hangar.commands
# imports them.
GROUPS: dict[str, str] = {}  # name: help
SPECS: list[Spec] = []


def group(name: str, help: str) -> None:
    GROUPS[name] = help


def command(
    where: str | None,
    name: str,
    help: str,
    adder: Adder,
    *,
    workspace: bool = True,
    table: bool = True,
) -> Callable[[Command], Command]:
    """Register `hangar [where] name`, running the decorated function with the parsed
    arguments; `adder` adds its own options. Every command takes --profile, most
    --workspace, and all but those that write a file's bytes (table=False) --output
    table|json."""

    def register(run: Command) -> Command:
        SPECS.append(Spec(where, name, help, run, adder, workspace, table))
        return run

    return register


def no_options(parser: argparse.ArgumentParser) -> None:
    pass


def chosen_words(argv: list[str]) -> list[str]:
    """The command's words (`job`, `wait`) before any of its options, past the root's."""
    words, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == "--profile":
            skip = True  # its value is not a word of the command
        elif argument.startswith("-"):
            continue
        else:
            words.append(argument)
            if len(words) == 2:
                break
    return words


def build(argv: list[str]) -> Parser:
    """The parser for this call: every command listed, the called one with its options."""
    words = chosen_words(argv)
    root = Parser(prog="hangar", description=DESCRIPTION, formatter_class=formatter)
    root.add_argument(
        "--profile",
        dest="root_profile",
        metavar="PROFILE",
        help="The profile of config.toml to use (default: its default).",
    )
    root.add_argument(
        "--version", action="version", version=f"hangar {__version__}", help="Print it."
    )
    commands = root.add_subparsers(title="commands", metavar="COMMAND")
    parents: dict[str | None, argparse._SubParsersAction] = {None: commands}
    for spec in (s for s in SPECS if s.group is None):
        add_command(commands, spec, chosen=words[:1] == [spec.name])
    for name, help in GROUPS.items():
        parser = commands.add_parser(name, help=help, description=help, formatter_class=formatter)
        parser.set_defaults(parser=parser)  # `hangar job` alone prints the job commands
        if words[:1] == [name]:
            parents[name] = parser.add_subparsers(title="commands", metavar="COMMAND")
    for spec in SPECS:
        if spec.group is not None and spec.group in parents:
            add_command(parents[spec.group], spec, chosen=words[1:2] == [spec.name])
    return root


def add_command(parent: argparse._SubParsersAction, spec: Spec, chosen: bool) -> None:
    parser = parent.add_parser(
        spec.name, help=spec.help.splitlines()[0], description=spec.help, formatter_class=formatter
    )
    parser.set_defaults(run=spec.run)
    if not chosen:
        return
    if spec.workspace:
        parser.add_argument(
            "--workspace",
            "-w",
            metavar="SLUG",
            help="The workspace's slug (default: the profile's workspace).",
        )
    parser.add_argument(
        "--profile", help="The profile of config.toml to use (default: its default)."
    )
    if spec.table:
        parser.add_argument(
            "--output",
            "-o",
            choices=[o.value for o in Output],
            default=Output.table.value,
            help="table, or json (one JSON document on stdout).",
        )
    spec.options(parser)
