"""`hangar job outputs JOB`: the files a job kept, listed or downloaded."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from hangar.commands.common import connected, job_argument, output_of
from hangar.commands.registry import command
from hangar.output import (
    Failure,
    Output,
    files_text,
    note,
    print_json,
    print_table,
    size_text,
)

if TYPE_CHECKING:
    from hangar.client import Client, JobOutputs


def no_outputs(found: JobOutputs) -> str:
    """Why a job has no output files to show: not ended yet, or it kept none."""
    from hangar.client import JOB_TERMINAL

    if found["status"] in JOB_TERMINAL:
        return f"Job {found['job_id']} kept no output files."
    return f"Job {found['job_id']} is {found['status']}: its output files are kept when it ends."


def show_outputs(found: JobOutputs, output: Output) -> None:
    """A job's output files, path and size; on stderr what was not kept and why."""
    if output is Output.json:
        print_json(found)
        return
    rows = [[item["path"], size_text(item["size"])] for item in found["files"]]
    print_table(["PATH", "SIZE"], rows, no_outputs(found))
    for line in found["notes"]:
        note(f"hangar: {line}")


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
    job_outputs_options,
)
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
    total = size_text(sum(size for _, size in written))
    note(
        f"hangar: wrote {files_text(len(written))} ({total}) of job {found['job_id']}'s outputs "
        f"into {args.download}"
    )
