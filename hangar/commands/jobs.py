"""`hangar job ...`: submit, follow, wait for and cancel jobs (their output files:
hangar/commands/job_outputs.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hangar.commands.common import (
    connected,
    in_time,
    job_argument,
    lists,
    output_of,
    shows,
    uploading,
)
from hangar.commands.registry import command, group
from hangar.output import Failure, Fields, Output, note, print_json, show_fields, show_lines, when

if TYPE_CHECKING:
    from hangar.client import Client, Job, JobEnd

group("job", "Submit, follow, wait for and cancel jobs.")


def exit_text(job: Job | JobEnd) -> str:
    code = job["exit_code"]
    return "" if code is None else str(code)


def job_row(j: Job) -> list[object]:
    return [
        j["id"],
        j["name"],
        j["compute"],
        j["status"],
        exit_text(j),
        j["node_count"],
        j["submitted_by"],
        when(j["queued_at"]),
    ]


def job_fields(job: Job) -> Fields:
    return [
        ("id", job["id"]),
        ("name", job["name"]),
        ("compute", job["compute"]),
        ("command", job["command"]),
        ("nodes", job["node_count"]),
        ("environment", job.get("environment") or "the compute's"),
        ("image", job.get("image") or ""),
        ("status", job["status"]),
        ("exit code", exit_text(job)),
        ("error", job["error"]),
        ("code", job["code"]),
        ("submitted by", job["submitted_by"]),
        ("retries", job["retries"]),
        ("queued", when(job["queued_at"])),
        ("running", when(job["running_at"])),
        ("finished", when(job["finished_at"])),
        ("page", job["url"]),
    ]


def show_job(job: Job, output: Output) -> None:
    show_fields(job, output, job_fields)


def end_code(end: JobEnd | Job) -> int:
    """The exit status `hangar job wait` ends with: the job's own; 1 for a failure without
    one; 130 for a canceled job."""
    status, code = end["status"], end["exit_code"]
    if status == "completed":
        return 0
    if status == "canceled":
        return 130
    if isinstance(code, int) and 0 < code < 256:
        return code
    return 1


def end_line(job_id: int, end: JobEnd) -> str:
    code = end["exit_code"]
    line = f"job {job_id} {end['status']}"
    if code is not None:
        line += f" (exit code {code})"
    if end["error"]:
        line += f": {end['error']}"
    return line


def variables(pairs: list[str] | None, option: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            # Never echoed: a mistyped --secret-env may be the secret itself.
            raise Failure(f"{option} takes KEY=value (one per {option})", 2)
        found[key.strip()] = value
    return found


def follow_to_end(
    client: Client, slug: str, job_id: int, to_stderr: bool = False
) -> tuple[str, JobEnd]:
    """Print the job's output as it comes (stdout, or stderr), until its end."""
    stream = sys.stderr if to_stderr else sys.stdout
    seen: list[str] = []
    follow = client.follow(
        slug, job_id, on_attempt=lambda n: note(f"hangar: job {job_id} retried: attempt {n + 1}")
    )
    for text in follow:
        seen.append(text)
        stream.write(text)
        stream.flush()
    assert follow.end is not None
    return "".join(seen), follow.end


def job_submit_options(parser: argparse.ArgumentParser) -> None:
    # Everything from the command's first word on is the command's, as typed (options
    # after it are the program's, not ours): put ours before it, or `--` in between.
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="The command. One argument is run as a shell line; several are quoted as they "
        "are. Put `--` before it.",
    )
    parser.add_argument("--compute", "-c", required=True, help="The compute's name or id.")
    parser.add_argument("--nodes", "-n", type=int, default=1, help="Nodes to run on (1).")
    parser.add_argument("--env", "-e", action="append", help="KEY=value (repeat).")
    parser.add_argument(
        "--environment",
        default="",
        help="Run in this environment (name, name:version or id) instead of the compute's; "
        "a cluster starts nodes of it. Not the variables: those are --env.",
    )
    parser.add_argument(
        "--secret-env", action="append", help="KEY=value, stored encrypted, never shown (repeat)."
    )
    parser.add_argument(
        "--code",
        type=Path,
        help="A folder to run in: zipped minus .gitignore'd, .hangarignore'd and .git.",
    )
    parser.add_argument("--name", default="", help="The job's name.")
    parser.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="Print the output until the end; exit with the job's status.",
    )


def command_line(command: list[str]) -> str:
    """The command after `--`: one argument is a shell line, several are quoted."""
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise Failure("give the command to run after `--` (see `hangar job submit --help`)", 2)
    if len(command) == 1:
        return command[0]
    import shlex

    return shlex.join(command)


@command(
    "job",
    "submit",
    "Submit a job: hangar job submit -w WS -c COMPUTE [--code DIR] -- python train.py",
    job_submit_options,
)
def job_submit(args: argparse.Namespace) -> int | None:
    code, output = args.code, output_of(args)
    line = command_line(args.command)
    environment = variables(args.env, "--env")
    secrets = variables(args.secret_env, "--secret-env")
    if code is not None and not code.is_dir():
        raise Failure(f"--code {code}: not a folder", 2)
    client, slug = connected(args)

    from hangar.client import InvalidInput
    from hangar.pack import PackError

    try:
        with uploading(shown=code is not None) as advance:
            job = client.submit(
                slug,
                args.compute,
                line,
                nodes=args.nodes,
                env=environment,
                secret_env=secrets,
                code_dir=str(code) if code is not None else None,
                name=args.name,
                progress=advance,
                runs_in=args.environment,
            )
    except PackError as error:
        raise Failure(str(error))
    except InvalidInput as error:
        raise Failure(str(error), 2)
    if not args.follow:
        show_job(job, output)
        return None
    note(f"hangar: job {job['id']} submitted to {job['compute']} ({job['status']})")
    _, end = follow_to_end(client, slug, job["id"], to_stderr=output is Output.json)
    if output is Output.json:
        print_json(client.job(slug, job["id"]))
    else:
        note(f"hangar: {end_line(job['id'], end)}")
    return end_code(end)


def job_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", help="queued, running, completed, failed, …")
    parser.add_argument("--compute", "-c", help="Only this compute's.")
    parser.add_argument("--by", dest="mine", help="Only this user's.")
    parser.add_argument(
        "--limit", type=int, default=50, help="At most this many, newest first (50; 0: all)."
    )


lists(
    "job",
    "list",
    "The workspace's jobs, newest first.",
    job_list_options,
    lambda client, slug, args: client.jobs(
        slug,
        status=args.status,
        compute=args.compute,
        submitted_by=args.mine,
        limit=args.limit or None,
    ),
    ["ID", "NAME", "COMPUTE", "STATUS", "EXIT", "NODES", "BY", "QUEUED"],
    job_row,
    "No jobs.",
)
shows(
    "job",
    "show",
    "One job.",
    job_argument,
    lambda client, slug, args: client.job(slug, args.job_id),
    show_job,
)


def job_logs_options(parser: argparse.ArgumentParser) -> None:
    job_argument(parser)
    parser.add_argument(
        "--follow", "-f", action="store_true", help="Go on printing until the job ends."
    )
    parser.add_argument("--rank", type=int, default=0, help="The node of a multi-node job.")


@command(
    "job",
    "logs",
    "The job's output (of its current attempt); -f follows it to the end.",
    job_logs_options,
)
def job_logs(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    job_id, rank, output = args.job_id, args.rank, output_of(args)
    if not args.follow:
        from hangar.client import ApiError

        try:
            text = client.output(slug, job_id, rank=rank)
        except ApiError as error:
            if error.status != 404 or "no output" not in error.detail:
                raise
            text = ""  # queued: nothing written yet
        if output is Output.json:
            print_json({"job": job_id, "rank": rank, "output": text})
        else:
            sys.stdout.write(text)
        return
    if output is Output.json:
        stream = client.follow(slug, job_id, rank=rank)
        text = "".join(stream)
        print_json({"job": job_id, "rank": rank, "output": text, "end": stream.end})
        return
    _, end = follow_to_end(client, slug, job_id)
    if sys.stderr.isatty():
        note(f"hangar: {end_line(job_id, end)}")


def job_wait_options(parser: argparse.ArgumentParser) -> None:
    job_argument(parser)
    parser.add_argument("--timeout", type=float, help="Give up after this many seconds.")


@command(
    "job",
    "wait",
    "Wait for the job to end; exit with its exit code (1: failed without one; 130: canceled).",
    job_wait_options,
)
def job_wait(args: argparse.Namespace) -> int:
    client, slug = connected(args)
    end = in_time(lambda: client.wait(slug, args.job_id, timeout=args.timeout))
    show_lines(output_of(args), end, end_line(args.job_id, end))
    return end_code(end)


shows(
    "job",
    "cancel",
    "Cancel a job (a running one is stopped on its nodes).",
    job_argument,
    lambda client, slug, args: client.cancel(slug, args.job_id),
    show_job,
)
