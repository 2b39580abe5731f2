"""`hangar batch ...`: batch scoring, a model's script over many input files in
mini-batches."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hangar.commands.common import (
    connected,
    in_time,
    lists,
    make_sure,
    model_option,
    output_of,
    read_script,
    shows,
    size_option,
    uploading,
    yes_option,
)
from hangar.commands.registry import command, group
from hangar.output import Failure, Fields, Output, files_text, note, show_fields, size_text, when

if TYPE_CHECKING:
    from hangar.client import BatchJob, Client

group("batch", "Batch scoring: a model's script over many input files, in mini-batches.")

BATCH_STATES = {"partial": "completed with errors"}  # as the Batch page says it


def batch_state(batch: BatchJob) -> str:
    return BATCH_STATES.get(batch["state"], batch["state"])


def batch_progress(batch: BatchJob) -> str:
    """ "7 of 10 mini-batches done, 1 failed", as the batch job's page says it."""
    line = f"{batch['batches_done']} of {batch['batches_total']} mini-batches done"
    failed = batch["batches_failed"]
    return f"{line}, {failed} failed" if failed else line


def batch_row(b: BatchJob) -> list[object]:
    return [
        b["id"],
        b["name"],
        b["state"],
        b["model"],
        f"{b['batches_done']}/{b['batches_total']}",
        b["batches_failed"] or "",
        b["row_count"],
        when(b["created_at"]),
    ]


def batch_fields(batch: BatchJob) -> Fields:
    size = batch["input_bytes"]
    files = files_text(batch["file_count"])
    # What was uploaded: one file's or zip's name; several files are "N files" already.
    inputs = "" if batch["input_name"] == files else f"{batch['input_name']}: "
    return [
        ("id", batch["id"]),
        ("name", batch["name"]),
        ("state", batch_state(batch)),
        ("progress", batch_progress(batch)),
        ("rows", f"{batch['row_count']:,}"),
        ("error", batch["error"]),
        ("model", batch["model"]),
        ("environment", batch["environment"] or "the site's node image"),
        ("size", batch["vm_size"]),
        ("tier", batch["tier"]),
        ("nodes", f"up to {batch['node_count']}"),
        ("mini-batch", f"{batch['mini_batch_size']} files, {batch['max_attempts']} attempts"),
        ("inputs", f"{inputs}{files}, {size_text(size)}"),
        ("submitted by", batch["created_by"]),
        ("submitted", when(batch["created_at"])),
        ("finished", when(batch["finished_at"])),
        ("page", batch["url"]),
        ("predictions", batch["predictions_url"]),
        ("errors", batch["errors_url"]),
    ]


def show_batch(batch: BatchJob, output: Output) -> None:
    show_fields(batch, output, batch_fields)


def batch_end_code(batch: BatchJob) -> int:
    """The exit status `hangar batch submit --wait` ends with: 0 when every mini-batch
    succeeded; 1 when some or all failed; 130 when it was canceled (as a job's)."""
    state = batch["state"]
    if state == "succeeded":
        return 0
    return 130 if state == "canceled" else 1


def batch_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "batch", metavar="BATCH", help="The batch job's id, or name (the newest of that name)."
    )


def batch_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit", type=int, default=50, help="At most this many, newest first (50; 0: all)."
    )


lists(
    "batch",
    "list",
    "The workspace's batch scoring jobs, newest first, with their progress.",
    batch_list_options,
    lambda client, slug, args: client.batch_jobs(slug, limit=args.limit or None),
    ["ID", "NAME", "STATE", "MODEL", "DONE", "FAILED", "ROWS", "SUBMITTED"],
    batch_row,
    "No batch jobs in {slug}.",
)
shows(
    "batch",
    "show",
    "One batch scoring job: its state, progress, rows and inputs.",
    batch_argument,
    lambda client, slug, args: client.batch_job(slug, args.batch),
    show_batch,
)


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
    model_option(parser)
    parser.add_argument(
        "--script",
        required=True,
        type=Path,
        help="The scoring script: init() once per node, run(mini_batch) returning one "
        "row per file.",
    )
    size_option(parser, example="Standard_D2s_v3")
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


def packed_note(folder: Path, packed: Any) -> None:
    """What was zipped of a folder INPUT (nothing at all: a usage error, nothing sent)."""
    if not packed.count:
        links = " (links are left out)" if packed.links else ""
        raise Failure(f"{folder}: the folder holds no file{links}", 2)
    note(f"hangar: zipped {files_text(packed.count)} ({size_text(packed.size)}) into {packed.name}")
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
    batch_submit_options,
)
def batch_submit(args: argparse.Namespace) -> int:
    if args.from_job is not None and args.inputs:
        raise Failure("give INPUT files or --from-job JOB, not both", 2)
    inputs = [] if args.from_job is not None else input_paths(args.inputs)
    script = read_script(args.script)
    client, slug = connected(args)

    from hangar.pack import PackError

    try:
        # The bar starts with the first bytes sent: once a folder's zip is made and noted.
        with uploading() as sending:
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
    if not args.wait:
        show_batch(made, output_of(args))
        return 0
    note(
        f"hangar: batch job {made['name']} submitted: {made['file_count']:,} files in "
        f"{made['batches_total']} mini-batches (its page: {made['url']})"
    )
    ended = in_time(
        lambda: client.wait_batch(
            slug, made["id"], timeout=args.timeout, on_progress=batch_progress_note
        )
    )
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
    batch_download_options,
    table=False,
)
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
    yes_option(parser)


@command(
    "batch",
    "cancel",
    "End a batch job now: its running mini-batches stop; the rows of those done are kept.",
    batch_cancel_options,
)
def batch_cancel(args: argparse.Namespace) -> None:
    client, slug = connected(args)
    found = client.batch_job(slug, args.batch)
    question = (
        f"Cancel batch job {found['name']!r} of {slug} ({batch_progress(found)})? Its "
        "running mini-batches stop."
    )
    make_sure(args, question, "canceled", "cancel")
    show_batch(client.cancel_batch(slug, found["id"]), output_of(args))
