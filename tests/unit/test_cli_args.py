"""How `hangar job submit` splits its own options from the command it runs: everything from
the command's first word on is the command's, as with the typer CLI before it."""

from __future__ import annotations

import pytest

from hangar import cli
from hangar.output import Failure


def parsed(*argv: str):
    return cli.build(list(argv)).parse_args(list(argv))


def test_options_after_the_command_are_the_commands_own():
    args = parsed("job", "submit", "-c", "gpu", "python", "train.py", "-n", "4", "-h")
    assert args.command == ["python", "train.py", "-n", "4", "-h"] and args.nodes == 1
    args = parsed("job", "submit", "-c", "gpu", "python", "-c", "print(1)")
    assert args.compute == "gpu" and args.command == ["python", "-c", "print(1)"]


def test_our_options_go_before_the_command_or_before_a_double_dash():
    args = parsed("job", "submit", "-w", "ws", "-c", "gpu", "-o", "json", "--", "true")
    assert (args.workspace, args.output, args.command) == ("ws", "json", ["--", "true"])


def test_no_command_is_a_usage_error_with_exit_status_2(capsys):
    assert cli.run(["job", "submit", "-c", "gpu", "-w", "ws"]) == 2
    assert "give the command to run" in capsys.readouterr().err
    with pytest.raises(Failure):
        parsed("job", "submit", "--", "true")  # --compute is required
