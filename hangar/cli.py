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
typer 0.29). Profiles are hangar/profiles.py's, tables and JSON hangar/output.py's, the
HTTP calls hangar/client.py's; rich is imported only by the commands that print tables.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar import __version__
from hangar.output import (
    Failure,
    Output,
    batch_end_code,
    batch_progress,
    batch_state,
    console,
    end_code,
    end_line,
    no_outputs,
    note,
    print_json,
    print_table,
    show_batch,
    show_batches,
    show_compute,
    show_computes,
    show_deployment,
    show_endpoint,
    show_endpoints,
    show_environment,
    show_environments,
    show_job,
    show_jobs,
    show_keys,
    show_model,
    show_models,
    show_outputs,
    size_text,
)
from hangar.profiles import (
    CHOSEN,
    DEFAULT_PROFILE,
    Settings,
    connect,
    make_client,
    profile_name,
    read_config,
    write_config,
)

if TYPE_CHECKING:
    from hangar.client import Client, Compute, JobEnd, JobOutputs

Command = Callable[[argparse.Namespace], int | None]


class Parser(argparse.ArgumentParser):
    """argparse's, with a usage error as one `hangar: ...` line (exit status 2)."""

    def error(self, message: str) -> Any:  # argparse's own signature returns NoReturn
        raise Failure(f"{message} (see `{self.prog} --help`)", 2)


def formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


DESCRIPTION = (
    "Hangar's computes, jobs, models and endpoints from the command line (the REST API at "
    "/api/v1/)."
)
Adder = Callable[[argparse.ArgumentParser], None]


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


GROUPS: dict[str, str] = {}  # name: help, in the order they are listed
SPECS: list[Spec] = []


def group(name: str, help: str) -> None:
    GROUPS[name] = help


def command(
    where: str | None, name: str, help: str, *, workspace: bool = True, table: bool = True
) -> Callable[[Command], Command]:
    """Register `hangar [where] name`, running the decorated function with the parsed
    arguments; every command takes --profile, most --workspace, and all but those that
    write a file's bytes (table=False) --output table|json."""

    def register(run: Command) -> Command:
        SPECS.append(Spec(where, name, help, run, OPTIONS[run], workspace, table))
        return run

    return register


# Each command's own options, remembered until the command is registered.
OPTIONS: dict[Command, Adder] = {}


def options(adder: Adder) -> Callable[[Command], Command]:
    def remember(run: Command) -> Command:
        OPTIONS[run] = adder
        return run

    return remember


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
    """The parser for this call. Every command is listed, but only the one called gets its
    options: adding every option of every command took most of a command's start."""
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


def no_options(parser: argparse.ArgumentParser) -> None:
    pass


def compute_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("compute", metavar="COMPUTE", help="The compute's name or id.")


def job_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_id", metavar="JOB", type=int, help="The job's id.")


def wait_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="Wait until the compute is no longer changing."
    )


def output_of(args: argparse.Namespace) -> Output:
    return Output(args.output)


def connected(args: argparse.Namespace) -> tuple[Client, str]:
    return connect(args.profile, getattr(args, "workspace", None))


# Commands: login, workspaces -----------------------------------------------------------


def login_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="The dashboard's address (or HANGAR_URL).")
    parser.add_argument(
        "--token",
        help="A personal access token (hgr_...; or HANGAR_TOKEN; `-` reads it from stdin; "
        "asked for when omitted).",
    )


@command(None, "login", "Check a token against the server and store it in a profile (mode 0600).")
@options(login_options)
def login(args: argparse.Namespace) -> None:
    url, token, workspace = args.url, args.token, args.workspace
    url = url or os.environ.get("HANGAR_URL")
    if not url:
        raise Failure("give the server's address with --url (e.g. http://127.0.0.1:8000)", 2)
    if token == "-":
        token = sys.stdin.readline().strip()
    elif not token:
        token = os.environ.get("HANGAR_TOKEN")
    if not token:
        if not sys.stdin.isatty():
            raise Failure("give the token with --token (or `--token -` to read it from stdin)", 2)
        import getpass

        token = getpass.getpass("Token: ", stream=sys.stderr)
    client = make_client(url, str(token))
    workspaces = client.workspaces()  # refuses a bad token with 401
    slugs = [w["slug"] for w in workspaces]
    if workspace and workspace not in slugs:
        raise Failure(f"this token sees no workspace {workspace!r} (it sees: {', '.join(slugs)})")
    if not workspace and len(slugs) == 1:
        workspace = slugs[0]

    name = profile_name(args.profile) or DEFAULT_PROFILE
    config = read_config()
    profiles = config.get("profiles", {})
    profiles = dict(profiles) if isinstance(profiles, dict) else {}
    entry = {"url": client.url, "token": str(token)}
    if workspace:
        entry["workspace"] = workspace
    profiles[name] = entry
    config["profiles"] = profiles
    if not config.get("default") or config["default"] not in profiles:
        config["default"] = name
    path = write_config(config)
    summary = {
        "profile": name,
        "url": client.url,
        "workspace": workspace,
        "workspaces": slugs,
        "config": str(path),
    }
    if output_of(args) is Output.json:
        print_json(summary)
    else:
        where = f", workspace {workspace}" if workspace else ""
        print(f"Logged in to {client.url} as profile {name!r}{where}; saved in {path}.")
        print(f"The token sees {len(slugs)} workspace(s): {', '.join(slugs) or 'none'}.")


group("workspace", "Workspaces the token can see.")
group("compute", "Compute instances and clusters.")
group("job", "Submit, follow, wait for and cancel jobs.")
group("quota", "Quota: limits, usage, what a compute would take, requests for more.")
group("environment", "Environments: what a compute's nodes run with, and their images' builds.")
group("model", "Registered models: a trained model's file, or a .zip of its folder.")
group("endpoint", "Scoring endpoints: their keys, deployments and traffic split.")
group("deployment", "An endpoint's deployments: a model version served by replicas.")
group("batch", "Batch scoring: a model's script over many input files, in mini-batches.")


@command(
    "workspace", "list", "The workspaces the token sees, and your role in each.", workspace=False
)
@options(no_options)
def workspace_list(args: argparse.Namespace) -> None:
    settings = Settings(args.profile)
    workspaces = settings.client().workspaces()
    if output_of(args) is Output.json:
        print_json(workspaces)
        return
    rows = [
        [("* " if w["slug"] == settings.workspace else "") + w["slug"], w["name"], w["role"]]
        for w in workspaces
    ]
    print_table(["SLUG", "NAME", "ROLE"], rows, "No workspaces.")


# Commands: computes ---------------------------------------------------------------------


def compute_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", help="instance, cluster or attached.")


@command("compute", "list", "The workspace's computes.")
@options(compute_list_options)
def compute_list(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_computes(client.computes(slug, kind=args.kind), output_of(args), f"No computes in {slug}.")


@command("compute", "show", "One compute.")
@options(compute_argument)
def compute_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_compute(client.compute(slug, args.compute), output_of(args))


def compute_create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="The compute's name.")
    parser.add_argument("--size", required=True, help="A VM size's name, e.g. Standard_DS3_v2.")
    parser.add_argument("--instance", action="store_true", help="A single-node instance.")
    parser.add_argument("--cluster", action="store_true", help="A cluster of nodes.")
    parser.add_argument(
        "--min", dest="min_nodes", type=int, default=0, help="Cluster: nodes kept up (0)."
    )
    parser.add_argument(
        "--max", dest="max_nodes", type=int, default=1, help="Cluster: nodes at most (1)."
    )
    parser.add_argument(
        "--tier", default="dedicated", help="Cluster: dedicated (default) or low_priority."
    )
    parser.add_argument(
        "--idle-seconds",
        type=int,
        default=120,
        help="Cluster: idle seconds before scale-down (120).",
    )
    parser.add_argument(
        "--environment",
        help="What its nodes run: an environment's name, name:version or id (default: the "
        "workspace's default; '' for the site's node image).",
    )
    parser.add_argument(
        "--idle-shutdown-minutes",
        dest="idle_shutdown",
        type=int,
        help="Instance: stop after this many idle minutes (0: never; default: the workspace's).",
    )
    wait_option(parser)


@command("compute", "create", "Create a compute instance (--instance) or cluster (--cluster).")
@options(compute_create_options)
def compute_create(args: argparse.Namespace) -> None:
    if args.instance == args.cluster:
        raise Failure("say what to create: --instance or --cluster", 2)
    client, slug = connected(args)
    if args.cluster:
        made = client.create_cluster(
            slug,
            args.name,
            args.size,
            min_nodes=args.min_nodes,
            max_nodes=args.max_nodes,
            tier=args.tier,
            idle_seconds_before_scaledown=args.idle_seconds,
            environment=args.environment,
        )
    else:
        made = client.create_instance(
            slug,
            args.name,
            args.size,
            idle_shutdown_minutes=args.idle_shutdown,
            environment=args.environment,
        )
    if args.wait:
        made = settle(client, slug, made)
    show_compute(made, output_of(args))


def settle(client: Client, slug: str, compute: Compute) -> Compute:
    try:
        return client.wait_compute(slug, compute["id"])
    except TimeoutError as error:
        raise Failure(str(error))


def compute_verb(verb: str, help: str) -> None:
    def run(args: argparse.Namespace) -> None:
        client, slug = connected(args)
        changed = getattr(client, verb)(slug, args.compute)
        if args.wait:
            changed = settle(client, slug, changed)
        show_compute(changed, output_of(args))

    def verb_options(parser: argparse.ArgumentParser) -> None:
        compute_argument(parser)
        wait_option(parser)

    command("compute", verb, help)(options(verb_options)(run))


compute_verb("start", "Start a stopped instance.")
compute_verb("stop", "Stop an instance (its node goes; it costs nothing while stopped).")
compute_verb("restart", "Restart an instance.")


def compute_resize_options(parser: argparse.ArgumentParser) -> None:
    compute_argument(parser)
    parser.add_argument("--min", dest="min_nodes", type=int, help="Nodes kept up.")
    parser.add_argument("--max", dest="max_nodes", type=int, help="Nodes at most.")
    parser.add_argument("--idle-seconds", type=int, help="Idle seconds before scale-down.")
    wait_option(parser)


@command(
    "compute",
    "resize",
    "Change a cluster's node bounds or scale-down delay (what is not given stays).",
)
@options(compute_resize_options)
def compute_resize(args: argparse.Namespace) -> None:
    if args.min_nodes is None and args.max_nodes is None and args.idle_seconds is None:
        raise Failure("give --min, --max or --idle-seconds", 2)
    client, slug = connected(args)
    changed = client.resize(
        slug,
        args.compute,
        min_nodes=args.min_nodes,
        max_nodes=args.max_nodes,
        idle_seconds_before_scaledown=args.idle_seconds,
    )
    if args.wait:
        changed = settle(client, slug, changed)
    show_compute(changed, output_of(args))


def compute_delete_options(parser: argparse.ArgumentParser) -> None:
    compute_argument(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="Do not ask.")
    wait_option(parser)


def confirm(question: str) -> bool:
    """Ask on stderr; only a typed yes agrees (end of input does not)."""
    sys.stderr.write(f"{question} [y/N]: ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


@command(
    "compute", "delete", "Delete a compute (admins only): its nodes go, its jobs are canceled."
)
@options(compute_delete_options)
def compute_delete(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.compute(slug, args.compute)
    if not args.yes:
        question = f"Delete {found['kind']} {found['name']!r} of {slug}? Its nodes go."
        if not confirm(question):
            raise Failure("not deleted (pass --yes to delete without being asked)")
    deleted = client.delete(slug, found["id"])
    if args.wait:
        deleted = settle(client, slug, deleted)
    show_compute(deleted, output_of(args))


# Commands: jobs -------------------------------------------------------------------------


def variables(pairs: list[str] | None, option: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            # Never echoed: a mistyped --secret-env may be the secret itself.
            raise Failure(f"{option} takes KEY=value (one per {option})", 2)
        found[key.strip()] = value
    return found


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


@command(
    "job",
    "submit",
    "Submit a job: hangar job submit -w WS -c COMPUTE [--code DIR] -- python train.py",
)
@options(job_submit_options)
def job_submit(args: argparse.Namespace) -> int | None:
    command, code, output = args.command, args.code, output_of(args)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise Failure("give the command to run after `--` (see `hangar job submit --help`)", 2)
    if len(command) == 1:
        line = command[0]
    else:
        import shlex

        line = shlex.join(command)
    environment = variables(args.env, "--env")
    secrets = variables(args.secret_env, "--secret-env")
    if code is not None and not code.is_dir():
        raise Failure(f"--code {code}: not a folder", 2)
    client, slug = connected(args)
    progress = upload_progress() if code is not None else None
    task: Any = None

    def advance(sent: int, total: int) -> None:
        nonlocal task
        if progress is None:
            return
        if task is None:
            task = progress.add_task("upload", total=total)
        progress.update(task, completed=sent)

    from hangar.client import InvalidInput
    from hangar.pack import PackError

    try:
        if progress is not None:
            progress.start()
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
    finally:
        if progress is not None:
            progress.stop()
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


@command("job", "list", "The workspace's jobs, newest first.")
@options(job_list_options)
def job_list(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    jobs = client.jobs(
        slug,
        status=args.status,
        compute=args.compute,
        submitted_by=args.mine,
        limit=args.limit or None,
    )
    show_jobs(jobs, output_of(args))


@command("job", "show", "One job.")
@options(job_argument)
def job_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_job(client.job(slug, args.job_id), output_of(args))


def job_logs_options(parser: argparse.ArgumentParser) -> None:
    job_argument(parser)
    parser.add_argument(
        "--follow", "-f", action="store_true", help="Go on printing until the job ends."
    )
    parser.add_argument("--rank", type=int, default=0, help="The node of a multi-node job.")


@command("job", "logs", "The job's output (of its current attempt); -f follows it to the end.")
@options(job_logs_options)
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
)
@options(job_wait_options)
def job_wait(args: argparse.Namespace) -> int:
    client, slug = connected(args)
    try:
        end = client.wait(slug, args.job_id, timeout=args.timeout)
    except TimeoutError as error:
        raise Failure(str(error))
    if output_of(args) is Output.json:
        print_json(end)
    else:
        print(end_line(args.job_id, end))
    return end_code(end)


@command("job", "cancel", "Cancel a job (a running one is stopped on its nodes).")
@options(job_argument)
def job_cancel(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_job(client.cancel(slug, args.job_id), output_of(args))


def job_outputs_options(parser: argparse.ArgumentParser) -> None:
    job_argument(parser)
    parser.add_argument(
        "--download",
        "-d",
        type=Path,
        metavar="DIR",
        help="Write them into DIR (made if missing), as they are listed; files of the same "
        "name there are replaced. Names that would leave DIR, and links, are refused.",
    )
    parser.add_argument(
        "--file", metavar="PATH", help="With --download: only this file (its path as listed)."
    )


def outputs_of(client: Client, slug: str, job_id: int) -> JobOutputs:
    """The job's output files; a job that is not there (or not the token's) says which."""
    from hangar.client import ApiError

    try:
        return client.job_outputs(slug, job_id)
    except ApiError as error:
        if error.status != 404:
            raise
        raise ApiError(404, f"Not found: no job {job_id} in {slug!r}.") from None


def download_outputs(
    client: Client, slug: str, found: JobOutputs, into: Path, path: str | None
) -> list[tuple[str, int]]:
    """All the job's output files (the zip, extracted) or the one at `path`, written into
    `into`: [(path, size)]. A name that would leave it, or a link, is refused."""
    from hangar.unpack import Folder, UnpackError, download_zip, parts_of

    job_id = found["job_id"]
    try:
        if path is None:
            return download_zip(lambda file: client.download_job_outputs(slug, job_id, file), into)
        if path not in {item["path"] for item in found["files"]}:
            raise Failure(
                f"job {job_id} has no output file {path!r} (`hangar job outputs {job_id}` "
                "lists them)"
            )
        size = Folder(into).write_with(
            parts_of(path), lambda file: client.download_job_outputs(slug, job_id, file, path)
        )
        return [(path, size)]
    except UnpackError as error:
        raise Failure(f"refused to write job {job_id}'s output files: {error}")
    except OSError as error:
        raise Failure(f"{error.filename or into}: {error.strerror or error}")


@command(
    "job",
    "outputs",
    "The files a job wrote under ./outputs, kept when it ended (rank-N/... for a job of "
    "several nodes); --download DIR writes them into DIR.",
)
@options(job_outputs_options)
def job_outputs(args: argparse.Namespace) -> None:
    if args.file is not None and args.download is None:
        raise Failure("--file needs --download DIR (the folder to write it into)", 2)
    client, slug = connected(args)
    found = outputs_of(client, slug, args.job_id)
    output = output_of(args)
    if args.download is None:
        show_outputs(found, output)
        return
    if not found["files"]:
        raise Failure(" ".join([no_outputs(found), *found["notes"]]) + " Nothing to download.")
    written = download_outputs(client, slug, found, args.download, args.file)
    if output is Output.json:
        print_json(
            {
                "job_id": found["job_id"],
                "directory": str(args.download),
                "files": [{"path": path, "size": size} for path, size in written],
            }
        )
        return
    count = f"{len(written):,} file{'' if len(written) == 1 else 's'}"
    total = size_text(sum(size for _, size in written))
    note(f"hangar: wrote {count} ({total}) of job {found['job_id']}'s outputs into {args.download}")


# Commands: quota ------------------------------------------------------------------------


def family_note(family: dict[str, Any]) -> str:
    if family["needs_approval"]:
        return "needs approval"
    return "request pending" if family["request_pending"] else ""


@command("quota", "show", "Each family's limit and the cores in use; the low-priority pool.")
@options(no_options)
def quota_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    usage = client.quota(slug)
    if output_of(args) is Output.json:
        print_json(usage)
        return
    rows = [[f["family"], f["used"], f["limit"], family_note(f)] for f in usage["families"]]
    rows.append(["low-priority pool", usage["low_priority_used"], usage["low_priority_limit"], ""])
    print_table(["FAMILY", "USED", "LIMIT", "NOTE"], rows)


def quota_what_if_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", required=True, help="A VM size's name, e.g. Standard_DS3_v2.")
    parser.add_argument("--count", type=int, default=1, help="How many nodes (1).")
    parser.add_argument("--tier", default="dedicated", help="dedicated (default) or low_priority.")


@command("quota", "what-if", "Whether COUNT nodes of SIZE fit now (exit 1 when they do not).")
@options(quota_what_if_options)
def quota_what_if(args: argparse.Namespace) -> int:
    client, slug = connected(args)
    answer = client.what_if(slug, args.size, args.count, args.tier)
    if output_of(args) is Output.json:
        print_json(answer)
    else:
        print(answer["message"])
    return 0 if answer["fits"] else 1


def quota_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cores", type=int, required=True, help="The new limit, in cores.")
    parser.add_argument("--why", required=True, help="What the cores are for, for how long.")
    parser.add_argument("--family", help="A VM family; none: the low-priority pool.")


@command("quota", "request", "Ask site staff for a higher limit.")
@options(quota_request_options)
def quota_request(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    made = client.request_quota(slug, args.cores, args.why, args.family)
    if output_of(args) is Output.json:
        print_json(made)
    else:
        target = made["family"] or "the low-priority pool"
        print(f"Requested {made['requested_limit']} cores for {target}; site staff decide.")


# Commands: environments ---------------------------------------------------------------


def environment_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "environment",
        metavar="ENVIRONMENT",
        help="NAME (its newest version; the workspace's before the site's), NAME:VERSION or id.",
    )


@command("environment", "list", "The workspace's environments and the site's, with their images.")
@options(no_options)
def environment_list(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_environments(client.environments(slug), output_of(args), f"No environments in {slug}.")


@command("environment", "show", "One environment: its packages, variables and image.")
@options(environment_argument)
def environment_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_environment(client.environment(slug, args.environment), output_of(args))


def environment_build_options(parser: argparse.ArgumentParser) -> None:
    environment_argument(parser)
    parser.add_argument(
        "--wait",
        action="store_true",
        help="Wait for the build to end; exit 1 when it failed.",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="With --wait: give up after this many s."
    )


@command(
    "environment",
    "build",
    "Build an environment's image: one that failed, or one not built yet (the log is on its page).",
)
@options(environment_build_options)
def environment_build(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.build_environment(slug, args.environment)
    if args.wait:
        note(f"hangar: building {found['name']}:{found['version']} (its page: {found['url']})")
        try:
            found = client.wait_environment(slug, found["id"], timeout=args.timeout)
        except TimeoutError as error:
            raise Failure(str(error))
    show_environment(found, output_of(args))
    if found["image"]["state"] == "failed":
        reason = (found["image"]["error"].strip().splitlines() or ["see its page"])[0]
        raise Failure(f"the build of {found['name']}:{found['version']} failed: {reason}")


# Commands: models, endpoints, deployments, scoring --------------------------------------


def uploading() -> tuple[Any, Callable[[int, int], None]]:
    """A progress bar for an upload (None off a terminal) and what advances it."""
    progress = upload_progress()
    task: Any = None

    def advance(sent: int, total: int) -> None:
        nonlocal task
        if progress is None:
            return
        if task is None:
            task = progress.add_task("upload", total=total)
        progress.update(task, completed=sent)

    return progress, advance


def model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="The model: NAME (its newest version), NAME:VERSION or id."
    )


def model_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="Only this model's versions.")


@command("model", "list", "The workspace's registered models, every version, newest first.")
@options(model_list_options)
def model_list(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    models = client.models(slug)
    if args.name:
        models = [m for m in models if m["name"] == args.name]
    show_models(models, output_of(args), f"No models in {slug}.")


@command("model", "show", "One model version: its file, size and who registered it.")
@options(model_argument)
def model_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_model(client.model(slug, args.model), output_of(args))


def model_register_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="The model's name (taken: its next version).")
    parser.add_argument(
        "file", metavar="FILE", type=Path, help="The model's file, or a .zip of its folder."
    )
    parser.add_argument("--description", default="", help="What it is, for the Models page.")


@command(
    "model",
    "register",
    "Upload a model's file (or a .zip of its folder) as NAME's first or next version.",
)
@options(model_register_options)
def model_register(args: argparse.Namespace) -> None:
    path: Path = args.file
    if path.is_dir():
        raise Failure(f"{path} is a folder: zip it first (a .zip is registered as a folder)", 2)
    if not path.is_file():
        raise Failure(f"{path}: no such file", 2)
    client, slug = connected(args)
    progress, advance = uploading()
    try:
        if progress is not None:
            progress.start()
        made = client.register_model(slug, args.name, path, args.description, progress=advance)
    except OSError as error:
        raise Failure(f"{path}: {error.strerror or error}")
    finally:
        if progress is not None:
            progress.stop()
    show_model(made, output_of(args))


def endpoint_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("endpoint", metavar="ENDPOINT", help="The endpoint's name or id.")


@command("endpoint", "list", "The workspace's endpoints, their deployments' traffic and URL.")
@options(no_options)
def endpoint_list(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_endpoints(client.endpoints(slug), output_of(args), f"No endpoints in {slug}.")


@command("endpoint", "show", "One endpoint: where to score, and its deployments.")
@options(endpoint_argument)
def endpoint_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_endpoint(client.endpoint(slug, args.endpoint), output_of(args))


def endpoint_create_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="The endpoint's name (part of its URL).")
    parser.add_argument("--description", default="", help="What it serves.")


@command("endpoint", "create", "Make an endpoint (two keys, no deployment yet).")
@options(endpoint_create_options)
def endpoint_create(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_endpoint(client.create_endpoint(slug, args.name, args.description), output_of(args))


@command("endpoint", "keys", "The endpoint's primary and secondary keys (contributors).")
@options(endpoint_argument)
def endpoint_keys(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_keys(args.endpoint, client.endpoint_keys(slug, args.endpoint), output_of(args))


def regenerate_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument(
        "slot", choices=["primary", "secondary"], help="Which key: primary or secondary."
    )
    parser.add_argument("--yes", "-y", action="store_true", help="Do not ask.")


@command(
    "endpoint",
    "regenerate-key",
    "A new key in one slot: the old one stops working, the other slot's keeps working.",
)
@options(regenerate_options)
def endpoint_regenerate_key(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.endpoint(slug, args.endpoint)
    if not args.yes:
        question = (
            f"Regenerate the {args.slot} key of endpoint {found['name']!r} of {slug}? "
            "Clients sending it are refused from then on."
        )
        if not confirm(question):
            raise Failure("not regenerated (pass --yes to regenerate without being asked)")
    keys = client.regenerate_key(slug, found["id"], args.slot)
    show_keys(found["name"], keys, output_of(args))


def shares(pairs: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for pair in pairs:
        name, sep, percent = pair.partition("=")
        if not sep or not name.strip() or not percent.strip().isdigit():
            raise Failure(
                f"traffic takes DEPLOYMENT=PERCENT (e.g. blue=80 green=20), not {pair!r}", 2
            )
        found[name.strip()] = int(percent)
    return found


def traffic_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument(
        "shares",
        nargs="+",
        metavar="DEPLOYMENT=PERCENT",
        help="Every deployment's share: whole percents adding up to 100.",
    )


@command(
    "endpoint",
    "traffic",
    "Split the endpoint's requests: hangar endpoint traffic ENDPOINT blue=80 green=20",
)
@options(traffic_options)
def endpoint_traffic(args: argparse.Namespace) -> None:
    split = shares(args.shares)
    client, slug = connected(args)
    show_endpoint(client.set_traffic(slug, args.endpoint, split), output_of(args))


def deployment_create_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument("name", metavar="NAME", help="The deployment's name (blue, green, …).")
    parser.add_argument(
        "--model", "-m", required=True, help="The model: NAME (newest), NAME:VERSION or id."
    )
    parser.add_argument(
        "--script",
        required=True,
        type=Path,
        help="The scoring script: init() once, run(request_json) per request.",
    )
    parser.add_argument("--size", required=True, help="A VM size's name, e.g. Standard_DS3_v2.")
    parser.add_argument(
        "--target",
        default="managed_cluster",
        help="managed_cluster (default), container_instance or local_web_service.",
    )
    parser.add_argument(
        "--environment",
        default="",
        help="What the replicas run: an environment's name, name:version or id (default: "
        "the site's node image).",
    )
    parser.add_argument(
        "--min", dest="min_replicas", type=int, default=1, help="Replicas kept up (1)."
    )
    parser.add_argument(
        "--max", dest="max_replicas", type=int, default=1, help="Replicas at most (1)."
    )
    parser.add_argument(
        "--in-flight",
        type=int,
        default=4,
        help="Requests in flight per replica the autoscaler aims at (4).",
    )
    parser.add_argument(
        "--timeout-ms", type=int, default=5000, help="A request's timeout, in ms (5000)."
    )


@command(
    "deployment",
    "create",
    "Deploy a model behind an endpoint: its replicas start (the first deployment takes all "
    "the traffic).",
)
@options(deployment_create_options)
def deployment_create(args: argparse.Namespace) -> None:
    path: Path = args.script
    try:
        script = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Failure(f"--script {path}: no such file", 2)
    except (OSError, UnicodeError) as error:
        raise Failure(f"--script {path}: cannot read it as UTF-8 text ({error})", 2)
    client, slug = connected(args)
    made = client.deploy(
        slug,
        args.endpoint,
        args.name,
        args.model,
        script,
        args.size,
        target=args.target,
        environment=args.environment,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        target_in_flight=args.in_flight,
        request_timeout_ms=args.timeout_ms,
    )
    show_deployment(made, output_of(args))


def deployment_argument(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    parser.add_argument("deployment", metavar="DEPLOYMENT", help="The deployment's name or id.")


@command("deployment", "show", "One of an endpoint's deployments.")
@options(deployment_argument)
def deployment_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    _, found = client.deployment(slug, args.endpoint, args.deployment)
    show_deployment(found, output_of(args))


def deployment_delete_options(parser: argparse.ArgumentParser) -> None:
    deployment_argument(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="Do not ask.")


@command(
    "deployment",
    "delete",
    "Remove a deployment (not while it takes traffic beside others): its replicas stop.",
)
@options(deployment_delete_options)
def deployment_delete(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    endpoint, found = client.deployment(slug, args.endpoint, args.deployment)
    if not args.yes:
        question = (
            f"Remove deployment {found['name']!r} of endpoint {endpoint['name']!r} of {slug}? "
            "Its replicas stop."
        )
        if not confirm(question):
            raise Failure("not removed (pass --yes to remove without being asked)")
    client.undeploy(slug, endpoint["id"], found["id"])
    if output_of(args) is Output.json:
        print_json(found)
    else:
        print(f"Removed deployment {found['name']} of {endpoint['name']}; its replicas stop.")


def score_options(parser: argparse.ArgumentParser) -> None:
    endpoint_argument(parser)
    body = parser.add_mutually_exclusive_group(required=True)
    body.add_argument("--json", "-j", dest="body", metavar="JSON", help="The request, as JSON.")
    body.add_argument(
        "--file", "-f", type=Path, help="A file holding the request's JSON (`-`: stdin)."
    )
    parser.add_argument(
        "--deployment", "-d", help="Send it to this deployment, not by the traffic split."
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="Give up after this many seconds (120)."
    )


def request_of(args: argparse.Namespace) -> Any:
    import json

    if args.file is None:
        text, where = args.body, "--json"
    elif str(args.file) == "-":
        text, where = sys.stdin.read(), "the request on stdin"
    else:
        try:
            text, where = args.file.read_text(encoding="utf-8"), str(args.file)
        except FileNotFoundError:
            raise Failure(f"--file {args.file}: no such file", 2)
        except (OSError, UnicodeError) as error:
            raise Failure(f"--file {args.file}: cannot read it as UTF-8 text ({error})", 2)
    try:
        return json.loads(text)
    except ValueError as error:
        raise Failure(f"{where} is not JSON: {error}", 2)


@command(
    None,
    "score",
    "Send a request to an endpoint through the scoring gateway, with its key; print the "
    "answer.\n\nThe key is the endpoint's primary key as the API gives it to contributors, "
    "or HANGAR_ENDPOINT_KEY; the gateway is where the API says, or HANGAR_SCORE_URL.",
)
@options(score_options)
def score(args: argparse.Namespace) -> None:
    request = request_of(args)
    client, slug = connected(args)
    answer = client.score(
        slug,
        args.endpoint,
        request,
        deployment=args.deployment,
        key=os.environ.get("HANGAR_ENDPOINT_KEY") or None,
        score_url=os.environ.get("HANGAR_SCORE_URL") or None,
        timeout=args.timeout,
    )
    print_json(answer)


# Commands: batch scoring ----------------------------------------------------------------


def batch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "batch", metavar="BATCH", help="The batch job's id, or name (the newest of that name)."
    )


def batch_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=int, default=50, help="At most this many, newest first (50; 0: all)."
    )


@command("batch", "list", "The workspace's batch scoring jobs, newest first, with their progress.")
@options(batch_list_options)
def batch_list(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    batches = client.batch_jobs(slug, limit=args.limit or None)
    show_batches(batches, output_of(args), f"No batch jobs in {slug}.")


@command("batch", "show", "One batch scoring job: its state, progress, rows and inputs.")
@options(batch_argument)
def batch_show(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    show_batch(client.batch_job(slug, args.batch), output_of(args))


def batch_submit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="The batch job's name (e.g. nightly-0501).")
    inputs = parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        default=[],
        metavar="INPUT",
        help="Input files; or one folder (zipped here with every file in it, links left "
        "out); or one .zip of a folder. None with --from-job.",
    )
    # Not "*": argparse would take no INPUT right after NAME and refuse those after the
    # options. "+" waits for them; none at all is checked in batch_submit (--from-job).
    inputs.required = False
    parser.add_argument(
        "--model", "-m", required=True, help="The model: NAME (newest), NAME:VERSION or id."
    )
    parser.add_argument(
        "--script",
        required=True,
        type=Path,
        help="The scoring script: init() once per node, run(mini_batch) returning one "
        "row per file.",
    )
    parser.add_argument("--size", required=True, help="A VM size's name, e.g. Standard_D2s_v3.")
    parser.add_argument(
        "--environment",
        default="",
        help="What its nodes run: an environment's name, name:version or id (default: the "
        "site's node image).",
    )
    parser.add_argument(
        "--tier",
        choices=["dedicated", "low_priority"],
        default="dedicated",
        help="dedicated (default) or low_priority (cheaper; preempted mini-batches run again).",
    )
    parser.add_argument("--nodes", "-n", type=int, default=2, help="Nodes at most, at once (2).")
    parser.add_argument(
        "--mini-batch-size", type=int, default=10, help="Files per mini-batch (10)."
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="Attempts per mini-batch; past them it is listed in errors.csv (3).",
    )
    parser.add_argument(
        "--from-job",
        type=int,
        metavar="JOB",
        help="Score the output files of this completed job (`hangar job outputs JOB` lists "
        "them) instead of INPUTs: nothing is uploaded.",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="Follow its progress until it ends; exit 1 when some mini-batch failed "
        "(130: canceled).",
    )
    parser.add_argument(
        "--timeout", type=float, help="With --wait: give up after this many seconds."
    )


def input_paths(inputs: list[Path]) -> list[Path]:
    """The INPUTs as the API takes them: files, one folder, or one .zip (a usage error
    otherwise, before anything is sent)."""
    if not inputs:
        raise Failure("give the INPUT files, a folder or a .zip (or --from-job JOB)", 2)
    for path in inputs:
        if not path.exists():
            raise Failure(f"{path}: no such file or folder", 2)
        if not path.is_dir() and not path.is_file():
            raise Failure(f"{path}: not a file or a folder", 2)
    folders = [path for path in inputs if path.is_dir()]
    if folders and len(inputs) > 1:
        raise Failure(
            f"{folders[0]} is a folder: give one folder alone (it is zipped), or files", 2
        )
    return inputs


def read_script(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Failure(f"--script {path}: no such file", 2)
    except (OSError, UnicodeError) as error:
        raise Failure(f"--script {path}: cannot read it as UTF-8 text ({error})", 2)


def packed_note(folder: Path, packed: Any) -> None:
    """What was zipped of a folder INPUT (nothing at all: a usage error, nothing sent)."""
    if not packed.count:
        links = " (links are left out)" if packed.links else ""
        raise Failure(f"{folder}: the folder holds no file{links}", 2)
    files = f"{packed.count:,} file{'' if packed.count == 1 else 's'}"
    note(f"hangar: zipped {files} ({size_text(packed.size)}) into {packed.name}")
    if packed.links:
        shown = ", ".join(packed.links[:5]) + (", …" if len(packed.links) > 5 else "")
        note(f"hangar: left out {len(packed.links)} symbolic link(s): {shown}")


def batch_progress_note(batch: Any) -> None:
    note(f"hangar: {batch['name']} {batch_state(batch)}: {batch_progress(batch)}")


@command(
    "batch",
    "submit",
    "Submit a batch scoring job: hangar batch submit NAME -m MODEL --script FILE --size "
    "SIZE INPUT...\n\nINPUT is input files (each mini-batch gets N of them, in name "
    "order), one folder (zipped here with every regular file in it, .gitignore'd ones too; "
    "links left out) or one .zip of a folder; or, with --from-job JOB and no INPUT, the "
    "output files of a completed job.",
)
@options(batch_submit_options)
def batch_submit(args: argparse.Namespace) -> int:
    if args.from_job is not None and args.inputs:
        raise Failure("give INPUT files or --from-job JOB, not both", 2)
    inputs = [] if args.from_job is not None else input_paths(args.inputs)
    script = read_script(args.script)
    client, slug = connected(args)
    progress, advance = uploading()
    started = False

    def sending(sent: int, total: int) -> None:
        nonlocal started
        if progress is not None and not started:  # once a folder's zip is made and noted
            progress.start()
            started = True
        advance(sent, total)

    from hangar.pack import PackError

    try:
        made = client.submit_batch(
            slug,
            args.name,
            args.model,
            script,
            args.size,
            inputs,
            environment=args.environment,
            tier=args.tier,
            node_count=args.nodes,
            mini_batch_size=args.mini_batch_size,
            max_attempts=args.attempts,
            progress=sending,
            on_packed=lambda packed: packed_note(inputs[0], packed),
            from_job=args.from_job,
        )
    except PackError as error:
        raise Failure(str(error))
    except OSError as error:
        raise Failure(f"{error.filename or 'an input'}: {error.strerror or error}")
    finally:
        if started:
            progress.stop()
    if not args.wait:
        show_batch(made, output_of(args))
        return 0
    note(
        f"hangar: batch job {made['name']} submitted: {made['file_count']:,} files in "
        f"{made['batches_total']} mini-batches (its page: {made['url']})"
    )
    try:
        ended = client.wait_batch(
            slug, made["id"], timeout=args.timeout, on_progress=batch_progress_note
        )
    except TimeoutError as error:
        raise Failure(str(error))
    show_batch(ended, output_of(args))
    code = batch_end_code(ended)
    if code == 1:
        reason = (ended["error"].strip().splitlines() or [batch_progress(ended)])[0]
        note(f"hangar: batch job {ended['name']} {batch_state(ended)}: {reason}")
    return code


def batch_download_options(parser: argparse.ArgumentParser) -> None:
    batch_argument(parser)
    parser.add_argument(
        "--errors",
        action="store_true",
        help="errors.csv (the mini-batches that failed past their attempts, and why) instead "
        "of predictions.csv.",
    )
    parser.add_argument(
        "--output",
        "-o",
        default="-",
        metavar="FILE",
        help="The file to write (default, or `-`: stdout). Written whole or not at all.",
    )


@command(
    "batch",
    "download",
    "Write a batch job's predictions.csv (or --errors: errors.csv) to stdout or to -o FILE; "
    "while it runs, the rows so far.",
    table=False,
)
@options(batch_download_options)
def batch_download(args: argparse.Namespace) -> None:
    target: str = args.output
    if target in ("table", "json"):
        raise Failure(
            f"-o of batch download names the file to write; to write one named {target}, "
            f"give ./{target}",
            2,
        )
    what = "errors.csv" if args.errors else "predictions.csv"
    client, slug = connected(args)
    found = client.batch_job(slug, args.batch)
    if target in ("", "-"):
        sys.stdout.flush()
        client.download_batch(slug, found["id"], sys.stdout.buffer, errors=args.errors)
        sys.stdout.buffer.flush()
    else:
        written = download_to(client, slug, found["id"], Path(target), args.errors)
        note(f"hangar: wrote {found['name']}'s {what} to {target} ({size_text(written)})")
    if found["state"] == "running":
        note(
            f"hangar: {found['name']} is still running ({batch_progress(found)}): "
            "download again once it ends for the rest"
        )


def download_to(client: Client, slug: str, batch_id: int, path: Path, errors: bool) -> int:
    """Into a file beside `path`, renamed to it once whole: a download cut short leaves no
    half file under the name asked for (and none of its own). A path that is no regular
    file (/dev/null, a pipe) is written as it is."""
    if path.exists() and not path.is_file():
        try:
            with path.open("wb") as file:
                return client.download_batch(slug, batch_id, file, errors=errors)
        except OSError as error:
            raise Failure(f"{path}: {error.strerror or error}")
    partial = path.with_name(f".{path.name}.part")
    try:
        with partial.open("wb") as file:
            written = client.download_batch(slug, batch_id, file, errors=errors)
        partial.replace(path)
    except BaseException as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise Failure(f"{path}: {error.strerror or error}")
        raise
    return written


def batch_cancel_options(parser: argparse.ArgumentParser) -> None:
    batch_argument(parser)
    parser.add_argument("--yes", "-y", action="store_true", help="Do not ask.")


@command(
    "batch",
    "cancel",
    "End a batch job now: its running mini-batches stop; the rows of those done are kept.",
)
@options(batch_cancel_options)
def batch_cancel(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.batch_job(slug, args.batch)
    if not args.yes:
        question = (
            f"Cancel batch job {found['name']!r} of {slug} ({batch_progress(found)})? Its "
            "running mini-batches stop."
        )
        if not confirm(question):
            raise Failure("not canceled (pass --yes to cancel without being asked)")
    show_batch(client.cancel_batch(slug, found["id"]), output_of(args))


# Entry point ----------------------------------------------------------------------------


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
