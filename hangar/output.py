"""What the CLI prints: tables (rich, imported when one is printed) or one JSON document
on stdout; notes and errors on stderr, one line each."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from hangar.client import Compute, Job, JobEnd


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


def print_fields(pairs: list[tuple[str, Any]]) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in pairs:
        table.add_row(key, "" if value is None or value == "" else str(value))
    console().print(table)


def when(value: str | None) -> str:
    """An API time, shorter: "2026-05-01 12:30:05"."""
    return value.replace("T", " ")[:19] if value else ""


def nodes_of(compute: Compute) -> str:
    if compute["kind"] == "cluster":
        return f"{compute['min_nodes']}–{compute['max_nodes']}"
    return "1" if compute["kind"] == "instance" else ""


def show_computes(computes: list[Compute], output: Output, empty: str = "") -> None:
    if output is Output.json:
        print_json(computes)
        return
    rows = [
        [c["id"], c["name"], c["kind"], c["state"], c["vm_size"], c["tier"], nodes_of(c)]
        for c in computes
    ]
    print_table(["ID", "NAME", "KIND", "STATE", "SIZE", "TIER", "NODES"], rows, empty)


def show_compute(compute: Compute, output: Output) -> None:
    if output is Output.json:
        print_json(compute)
        return
    pairs: list[tuple[str, Any]] = [
        ("id", compute["id"]),
        ("name", compute["name"]),
        ("kind", compute["kind"]),
        ("state", compute["state"]),
        ("size", compute["vm_size"]),
        ("tier", compute["tier"]),
    ]
    if compute["kind"] != "attached":
        pairs.append(("environment", compute.get("environment") or "the site's node image"))
    if compute["kind"] == "cluster":
        pairs += [
            ("nodes", nodes_of(compute)),
            ("scale down after", f"{compute['idle_seconds_before_scaledown']} s idle"),
            ("autoscaler", compute["autoscale_note"]),
        ]
    elif compute["kind"] == "instance":
        minutes = compute["idle_shutdown_minutes"]
        pairs.append(("idle shutdown", f"after {minutes} min" if minutes else "never"))
    pairs += [
        ("last error", compute["last_error"]),
        ("created", when(compute["created_at"])),
        ("page", compute["url"]),
    ]
    print_fields(pairs)


def exit_text(job: Job | JobEnd) -> str:
    code = job["exit_code"]
    return "" if code is None else str(code)


def show_jobs(jobs: list[Job], output: Output) -> None:
    if output is Output.json:
        print_json(jobs)
        return
    rows = [
        [
            j["id"],
            j["name"],
            j["compute"],
            j["status"],
            exit_text(j),
            j["node_count"],
            j["submitted_by"],
            when(j["queued_at"]),
        ]
        for j in jobs
    ]
    columns = ["ID", "NAME", "COMPUTE", "STATUS", "EXIT", "NODES", "BY", "QUEUED"]
    print_table(columns, rows, "No jobs.")


def show_job(job: Job, output: Output) -> None:
    if output is Output.json:
        print_json(job)
        return
    print_fields(
        [
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
    )


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
