"""`hangar`: Hangar's computes, jobs, models and endpoints from the shell, over the REST API.

    hangar login --url http://127.0.0.1:8000 --token hgr_...
    hangar compute create -w vision --name trainers --size Standard_DS3_v2 --cluster --max 2
    hangar job submit -w vision --compute trainers --code . --follow -- python train.py
    hangar score -w vision flowers --json '{"petals": [5.1, 3.5]}'
    hangar batch submit -w vision nightly -m flowers --script b.py --size Standard_D2s_v3 in/

Profiles live in $XDG_CONFIG_HOME/hangar/config.toml (~/.config/hangar/config.toml), mode
0600; HANGAR_URL, HANGAR_TOKEN, HANGAR_WORKSPACE and HANGAR_PROFILE override them. Every
command takes `--output table|json`; json prints one JSON document on stdout and nothing
else (but `batch download`, whose `-o` is the file its CSV is written to). An error is
one line on stderr: exit status 2 for a usage error, 1 otherwise.

The commands are the standard library's argparse: every `hangar` call is a new process, and
a typer-made command took 100–150 ms to start before it did anything (pydantic came with
typer 0.29). Each command is declared in hangar/commands/, one module per resource; profiles are
hangar/profiles.py's, tables and JSON hangar/output.py's, the HTTP calls hangar/client.py's;
rich is imported only by the commands that print tables. This module is the entry point.
"""

from __future__ import annotations

import argparse
import os
import sys

from hangar.commands import Command, build
from hangar.output import Failure
from hangar.profiles import CHOSEN

__all__ = ["build", "main", "run"]


def fail(message: str, code: int) -> int:
    """Say what went wrong in one line on stderr; the exit status to end with."""
    sys.stdout.flush()
    sys.stderr.write(f"hangar: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return code


def dispatch(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = build(argv)
    args = root.parse_args(argv)
    run: Command | None = getattr(args, "run", None)
    if run is None:  # `hangar` or `hangar job` alone: what there is to run
        parser: argparse.ArgumentParser = getattr(args, "parser", root)
        sys.stdout.write(parser.format_help())
        return 2
    CHOSEN["profile"] = args.root_profile
    args.profile = args.profile or args.root_profile
    return run(args) or 0


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; every error becomes one line on stderr and an exit status."""
    CHOSEN["profile"] = None
    try:
        return dispatch(argv)
    except Failure as error:
        return fail(str(error), error.code)
    except SystemExit as done:  # --help and --version end here
        return done.code if isinstance(done.code, int) else 0
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`hangar job logs 3 | head`): not an error worth a line.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        from hangar.client import ApiError, InvalidInput

        if isinstance(error, ApiError):
            return fail(error.message, 1)
        if isinstance(error, InvalidInput):
            return fail(str(error), 2)
        if os.environ.get("HANGAR_DEBUG"):
            raise
        return fail(
            f"unexpected error: {type(error).__name__}: {error} (HANGAR_DEBUG=1 shows where)", 1
        )


def main() -> None:
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="replace")
    sys.exit(run())


if __name__ == "__main__":
    main()
