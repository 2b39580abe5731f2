"""`hangar`: Hangar's computes and jobs from the shell, over the REST API.

    hangar login --url http://127.0.0.1:8000 --token hgr_...
    hangar compute create -w vision --name trainers --size Standard_DS3_v2 --cluster --max 2
    hangar job submit -w vision --compute trainers --code . --follow -- python train.py

Profiles live in $XDG_CONFIG_HOME/hangar/config.toml (~/.config/hangar/config.toml), mode
0600; HANGAR_URL, HANGAR_TOKEN, HANGAR_WORKSPACE and HANGAR_PROFILE override them. Every
command takes `--output table|json`; json prints one JSON document on stdout and nothing
else. An error is one line on stderr: exit status 2 for a usage error, 1 otherwise.

Profiles are hangar/profiles.py's, tables and JSON hangar/output.py's, the HTTP calls
hangar/client.py's. Only typer and the standard library are imported at start (`hangar
--help` stays fast); httpx and rich come with the commands that use them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hangar import __version__
from hangar.output import (
    Failure,
    Output,
    console,
    end_code,
    end_line,
    note,
    print_json,
    print_table,
    show_compute,
    show_computes,
    show_job,
    show_jobs,
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
    from hangar.client import Client, Compute, JobEnd

# Options shared by the commands.
OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="table, or json (one JSON document on stdout).")
]
WorkspaceOpt = Annotated[
    str | None,
    typer.Option(
        "--workspace", "-w", help="The workspace's slug (default: the profile's workspace)."
    ),
]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", help="The profile of config.toml to use (default: its default)."),
]
ComputeArg = Annotated[str, typer.Argument(help="The compute's name or id.")]
JobArg = Annotated[int, typer.Argument(help="The job's id.")]
WaitOpt = Annotated[
    bool, typer.Option("--wait", help="Wait until the compute is no longer changing.")
]

app = typer.Typer(
    name="hangar",
    help="Hangar's computes and jobs from the command line (the REST API at /api/v1/).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich is not imported to start
    context_settings={"help_option_names": ["-h", "--help"]},
)


def group(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


workspace_app = group("Workspaces the token can see.")
compute_app = group("Compute instances and clusters.")
job_app = group("Submit, follow, wait for and cancel jobs.")
quota_app = group("Quota: limits, usage, what a compute would take, requests for more.")
app.add_typer(workspace_app, name="workspace")
app.add_typer(compute_app, name="compute")
app.add_typer(job_app, name="job")
app.add_typer(quota_app, name="quota")


def version_callback(value: bool) -> None:
    if value:
        print(f"hangar {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    profile: ProfileOpt = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=version_callback, is_eager=True, help="Print it."),
    ] = False,
) -> None:
    CHOSEN["profile"] = profile


# Commands: login, workspaces -----------------------------------------------------------


@app.command()
def login(
    url: Annotated[
        str | None, typer.Option("--url", help="The dashboard's address (or HANGAR_URL).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help="A personal access token (hgr_...; or HANGAR_TOKEN; `-` reads it from stdin; "
            "asked for when omitted).",
        ),
    ] = None,
    profile: ProfileOpt = None,
    workspace: WorkspaceOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Check a token against the server and store it in a profile (mode 0600)."""
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
        token = typer.prompt("Token", hide_input=True, err=True)
    client = make_client(url, str(token))
    workspaces = client.workspaces()  # refuses a bad token with 401
    slugs = [w["slug"] for w in workspaces]
    if workspace and workspace not in slugs:
        raise Failure(f"this token sees no workspace {workspace!r} (it sees: {', '.join(slugs)})")
    if not workspace and len(slugs) == 1:
        workspace = slugs[0]

    name = profile_name(profile) or DEFAULT_PROFILE
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
    if output is Output.json:
        print_json(summary)
    else:
        where = f", workspace {workspace}" if workspace else ""
        print(f"Logged in to {client.url} as profile {name!r}{where}; saved in {path}.")
        print(f"The token sees {len(slugs)} workspace(s): {', '.join(slugs) or 'none'}.")


@workspace_app.command("list")
def workspace_list(profile: ProfileOpt = None, output: OutputOpt = Output.table) -> None:
    """The workspaces the token sees, and your role in each."""
    settings = Settings(profile)
    workspaces = settings.client().workspaces()
    if output is Output.json:
        print_json(workspaces)
        return
    rows = [
        [("* " if w["slug"] == settings.workspace else "") + w["slug"], w["name"], w["role"]]
        for w in workspaces
    ]
    print_table(["SLUG", "NAME", "ROLE"], rows, "No workspaces.")


# Commands: computes ---------------------------------------------------------------------


@compute_app.command("list")
def compute_list(
    workspace: WorkspaceOpt = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="instance, cluster or attached.")
    ] = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """The workspace's computes."""
    client, slug = connect(profile, workspace)
    show_computes(client.computes(slug, kind=kind), output, f"No computes in {slug}.")


@compute_app.command("show")
def compute_show(
    compute: ComputeArg,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """One compute."""
    client, slug = connect(profile, workspace)
    show_compute(client.compute(slug, compute), output)


@compute_app.command("create")
def compute_create(
    name: Annotated[str, typer.Option("--name", help="The compute's name.")],
    size: Annotated[str, typer.Option("--size", help="A VM size's name, e.g. Standard_DS3_v2.")],
    instance: Annotated[bool, typer.Option("--instance", help="A single-node instance.")] = False,
    cluster: Annotated[bool, typer.Option("--cluster", help="A cluster of nodes.")] = False,
    min_nodes: Annotated[int, typer.Option("--min", help="Cluster: nodes kept up.")] = 0,
    max_nodes: Annotated[int, typer.Option("--max", help="Cluster: nodes at most.")] = 1,
    tier: Annotated[
        str, typer.Option("--tier", help="Cluster: dedicated or low_priority.")
    ] = "dedicated",
    idle_seconds: Annotated[
        int, typer.Option("--idle-seconds", help="Cluster: idle seconds before scale-down.")
    ] = 120,
    idle_shutdown: Annotated[
        int | None,
        typer.Option(
            "--idle-shutdown-minutes",
            help="Instance: stop after this many idle minutes (0: never; default: the "
            "workspace's).",
        ),
    ] = None,
    wait: WaitOpt = False,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create a compute instance (--instance) or cluster (--cluster)."""
    if instance == cluster:
        raise Failure("say what to create: --instance or --cluster", 2)
    client, slug = connect(profile, workspace)
    if cluster:
        made = client.create_cluster(
            slug,
            name,
            size,
            min_nodes=min_nodes,
            max_nodes=max_nodes,
            tier=tier,
            idle_seconds_before_scaledown=idle_seconds,
        )
    else:
        made = client.create_instance(slug, name, size, idle_shutdown_minutes=idle_shutdown)
    if wait:
        made = settle(client, slug, made)
    show_compute(made, output)


def settle(client: Client, slug: str, compute: Compute) -> Compute:
    try:
        return client.wait_compute(slug, compute["id"])
    except TimeoutError as error:
        raise Failure(str(error))


def verb_command(verb: str, doc: str) -> None:
    def command(
        compute: ComputeArg,
        wait: WaitOpt = False,
        workspace: WorkspaceOpt = None,
        profile: ProfileOpt = None,
        output: OutputOpt = Output.table,
    ) -> None:
        client, slug = connect(profile, workspace)
        changed = getattr(client, verb)(slug, compute)
        if wait:
            changed = settle(client, slug, changed)
        show_compute(changed, output)

    command.__doc__ = doc
    compute_app.command(verb)(command)


verb_command("start", "Start a stopped instance.")
verb_command("stop", "Stop an instance (its node goes; it costs nothing while stopped).")
verb_command("restart", "Restart an instance.")


@compute_app.command("resize")
def compute_resize(
    compute: ComputeArg,
    min_nodes: Annotated[int | None, typer.Option("--min", help="Nodes kept up.")] = None,
    max_nodes: Annotated[int | None, typer.Option("--max", help="Nodes at most.")] = None,
    idle_seconds: Annotated[
        int | None, typer.Option("--idle-seconds", help="Idle seconds before scale-down.")
    ] = None,
    wait: WaitOpt = False,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Change a cluster's node bounds or scale-down delay (what is not given stays)."""
    if min_nodes is None and max_nodes is None and idle_seconds is None:
        raise Failure("give --min, --max or --idle-seconds", 2)
    client, slug = connect(profile, workspace)
    changed = client.resize(
        slug,
        compute,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        idle_seconds_before_scaledown=idle_seconds,
    )
    if wait:
        changed = settle(client, slug, changed)
    show_compute(changed, output)


@compute_app.command("delete")
def compute_delete(
    compute: ComputeArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    wait: WaitOpt = False,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Delete a compute (admins only): its nodes go, its jobs are canceled."""
    client, slug = connect(profile, workspace)
    found = client.compute(slug, compute)
    if not yes:
        question = f"Delete {found['kind']} {found['name']!r} of {slug}? Its nodes go."
        try:
            agreed = typer.confirm(question, default=False, err=True)
        except (typer.Abort, EOFError):
            agreed = False
        if not agreed:
            raise Failure("not deleted (pass --yes to delete without being asked)")
    deleted = client.delete(slug, found["id"])
    if wait:
        deleted = settle(client, slug, deleted)
    show_compute(deleted, output)


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


@job_app.command(
    "submit",
    context_settings={"allow_interspersed_args": False},
)
def job_submit(
    command: Annotated[
        list[str],
        typer.Argument(
            help="The command. One argument is run as a shell line; several are quoted as "
            "they are. Put `--` before it.",
            metavar="-- COMMAND...",
        ),
    ],
    compute: Annotated[str, typer.Option("--compute", "-c", help="The compute's name or id.")],
    nodes: Annotated[int, typer.Option("--nodes", "-n", help="Nodes to run on.")] = 1,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="KEY=value (repeat).")
    ] = None,
    secret_env: Annotated[
        list[str] | None,
        typer.Option("--secret-env", help="KEY=value, stored encrypted, never shown (repeat)."),
    ] = None,
    code: Annotated[
        Path | None,
        typer.Option(
            "--code",
            help="A folder to run in: zipped minus .gitignore'd, .hangarignore'd and .git.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="The job's name.")] = "",
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Print the output until the end; exit with the job's status."
        ),
    ] = False,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Submit a job: hangar job submit -w WS -c COMPUTE [--code DIR] -- python train.py"""
    import shlex

    line = command[0] if len(command) == 1 else shlex.join(command)
    environment = variables(env, "--env")
    secrets = variables(secret_env, "--secret-env")
    if code is not None and not code.is_dir():
        raise Failure(f"--code {code}: not a folder", 2)
    client, slug = connect(profile, workspace)
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
            compute,
            line,
            nodes=nodes,
            env=environment,
            secret_env=secrets,
            code_dir=str(code) if code is not None else None,
            name=name,
            progress=advance,
        )
    except PackError as error:
        raise Failure(str(error))
    except InvalidInput as error:
        raise Failure(str(error), 2)
    finally:
        if progress is not None:
            progress.stop()
    if not follow:
        show_job(job, output)
        return
    note(f"hangar: job {job['id']} submitted to {job['compute']} ({job['status']})")
    _, end = follow_to_end(client, slug, job["id"], to_stderr=output is Output.json)
    if output is Output.json:
        print_json(client.job(slug, job["id"]))
    else:
        note(f"hangar: {end_line(job['id'], end)}")
    raise typer.Exit(end_code(end))


@job_app.command("list")
def job_list(
    workspace: WorkspaceOpt = None,
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, completed, failed, …")
    ] = None,
    compute: Annotated[
        str | None, typer.Option("--compute", "-c", help="Only this compute's.")
    ] = None,
    mine: Annotated[str | None, typer.Option("--by", help="Only this user's.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", help="At most this many, newest first (0: all).")
    ] = 50,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """The workspace's jobs, newest first."""
    client, slug = connect(profile, workspace)
    jobs = client.jobs(slug, status=status, compute=compute, submitted_by=mine, limit=limit or None)
    show_jobs(jobs, output)


@job_app.command("show")
def job_show(
    job_id: JobArg,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """One job."""
    client, slug = connect(profile, workspace)
    show_job(client.job(slug, job_id), output)


@job_app.command("logs")
def job_logs(
    job_id: JobArg,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Go on printing until the job ends.")
    ] = False,
    rank: Annotated[int, typer.Option("--rank", help="The node of a multi-node job.")] = 0,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """The job's output (of its current attempt); -f follows it to the end."""
    client, slug = connect(profile, workspace)
    if not follow:
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


@job_app.command("wait")
def job_wait(
    job_id: JobArg,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds.")
    ] = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Wait for the job to end; exit with its exit code (1: failed without one; 130:
    canceled)."""
    client, slug = connect(profile, workspace)
    try:
        end = client.wait(slug, job_id, timeout=timeout)
    except TimeoutError as error:
        raise Failure(str(error))
    if output is Output.json:
        print_json(end)
    else:
        print(end_line(job_id, end))
    raise typer.Exit(end_code(end))


@job_app.command("cancel")
def job_cancel(
    job_id: JobArg,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Cancel a job (a running one is stopped on its nodes)."""
    client, slug = connect(profile, workspace)
    show_job(client.cancel(slug, job_id), output)


# Commands: quota ------------------------------------------------------------------------


@quota_app.command("show")
def quota_show(
    workspace: WorkspaceOpt = None, profile: ProfileOpt = None, output: OutputOpt = Output.table
) -> None:
    """Each family's limit and the cores in use; the low-priority pool."""
    client, slug = connect(profile, workspace)
    usage = client.quota(slug)
    if output is Output.json:
        print_json(usage)
        return
    rows = [
        [
            f["family"],
            f["used"],
            f["limit"],
            "needs approval"
            if f["needs_approval"]
            else ("request pending" if f["request_pending"] else ""),
        ]
        for f in usage["families"]
    ]
    rows.append(["low-priority pool", usage["low_priority_used"], usage["low_priority_limit"], ""])
    print_table(["FAMILY", "USED", "LIMIT", "NOTE"], rows)


def family_note(family: dict[str, Any]) -> str:
    if family["needs_approval"]:
        return "needs approval"
    return "request pending" if family["request_pending"] else ""


@quota_app.command("what-if")
def quota_what_if(
    size: Annotated[str, typer.Option("--size", help="A VM size's name, e.g. Standard_DS3_v2.")],
    count: Annotated[int, typer.Option("--count", help="How many nodes.")] = 1,
    tier: Annotated[str, typer.Option("--tier", help="dedicated or low_priority.")] = "dedicated",
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Whether COUNT nodes of SIZE fit now (exit 1 when they do not)."""
    client, slug = connect(profile, workspace)
    answer = client.what_if(slug, size, count, tier)
    if output is Output.json:
        print_json(answer)
    else:
        print(answer["message"])
    raise typer.Exit(0 if answer["fits"] else 1)


@quota_app.command("request")
def quota_request(
    cores: Annotated[int, typer.Option("--cores", help="The new limit, in cores.")],
    why: Annotated[str, typer.Option("--why", help="What the cores are for, for how long.")],
    family: Annotated[
        str | None, typer.Option("--family", help="A VM family; none: the low-priority pool.")
    ] = None,
    workspace: WorkspaceOpt = None,
    profile: ProfileOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Ask site staff for a higher limit."""
    client, slug = connect(profile, workspace)
    made = client.request_quota(slug, cores, why, family)
    if output is Output.json:
        print_json(made)
    else:
        target = made["family"] or "the low-priority pool"
        print(f"Requested {made['requested_limit']} cores for {target}; site staff decide.")


# Entry point ----------------------------------------------------------------------------


def fail(message: str, code: int) -> int:
    """Say what went wrong in one line on stderr; the exit status to end with."""
    sys.stdout.flush()
    sys.stderr.write(f"hangar: {' '.join(message.split())}\n")
    sys.stderr.flush()
    return code


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; every error becomes one line on stderr and an exit status."""
    from typer._click import exceptions as click  # typer's own click (pinned in requirements)

    CHOSEN["profile"] = None
    try:
        result = app(args=argv, prog_name="hangar", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except Failure as error:
        return fail(str(error), error.code)
    except click.NoArgsIsHelpError as error:
        sys.stdout.write(error.ctx.get_help() + "\n" if error.ctx else "")
        return 2
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx else "hangar"
        return fail(f"{error.format_message()} (see `{where} --help`)", 2)
    except typer.TyperException as error:
        return fail(error.format_message(), error.exit_code or 1)
    except (typer.Abort, KeyboardInterrupt):
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
