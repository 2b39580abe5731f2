"""What the CLI prints: tables (rich, imported when one is printed) or one JSON document
on stdout; notes and errors on stderr, one line each."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from hangar.client import (
        BatchJob,
        Compute,
        Deployment,
        Endpoint,
        EndpointKeys,
        Environment,
        Job,
        JobEnd,
        JobOutputs,
        Model,
    )


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


def size_text(size: int) -> str:
    """A size in bytes as people read it: "12 B", "4.2 KiB", "1.3 GiB"."""
    value, unit = float(size), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"


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


def show_models(models: list[Model], output: Output, empty: str = "") -> None:
    if output is Output.json:
        print_json(models)
        return
    rows = [
        [
            m["id"],
            m["name"],
            m["version"],
            m["kind"],
            size_text(m["size_bytes"]),
            m["file_name"],
            m["created_by"],
            when(m["created_at"]),
        ]
        for m in models
    ]
    columns = ["ID", "NAME", "VERSION", "KIND", "SIZE", "FILE", "BY", "REGISTERED"]
    print_table(columns, rows, empty)


def show_model(model: Model, output: Output) -> None:
    if output is Output.json:
        print_json(model)
        return
    print_fields(
        [
            ("id", model["id"]),
            ("name", f"{model['name']}:{model['version']}"),
            ("description", model["description"]),
            ("kind", "a folder (zip)" if model["kind"] == "zip" else "a file"),
            ("file", model["file_name"]),
            ("size", f"{size_text(model['size_bytes'])} ({model['size_bytes']:,} bytes)"),
            ("registered by", model["created_by"]),
            ("registered", when(model["created_at"])),
            ("page", model["url"]),
        ]
    )


def replicas_text(deployment: Deployment) -> str:
    low, high = deployment["min_replicas"], deployment["max_replicas"]
    return str(low) if low == high else f"{low}–{high}"


def deployment_rows(deployments: list[Deployment]) -> list[list[Any]]:
    return [
        [
            d["name"],
            d["model"],
            d["target"],
            d["vm_size"],
            replicas_text(d),
            f"{d['traffic']}%",
        ]
        for d in deployments
    ]


def show_deployments(deployments: list[Deployment], empty: str = "") -> None:
    columns = ["DEPLOYMENT", "MODEL", "TARGET", "SIZE", "REPLICAS", "TRAFFIC"]
    print_table(columns, deployment_rows(deployments), empty)


def traffic_text(endpoint: Endpoint) -> str:
    return ", ".join(
        f"{d['name']} {d['traffic']}%" for d in endpoint["deployments"] if d["traffic"]
    )


def show_endpoints(endpoints: list[Endpoint], output: Output, empty: str = "") -> None:
    if output is Output.json:
        print_json(endpoints)
        return
    rows = [
        [e["id"], e["name"], len(e["deployments"]), traffic_text(e), e["scoring_url"]]
        for e in endpoints
    ]
    print_table(["ID", "NAME", "DEPLOYMENTS", "TRAFFIC", "SCORING URL"], rows, empty)


def show_endpoint(endpoint: Endpoint, output: Output) -> None:
    if output is Output.json:
        print_json(endpoint)
        return
    print_fields(
        [
            ("id", endpoint["id"]),
            ("name", endpoint["name"]),
            ("description", endpoint["description"]),
            ("scoring URL", f"POST {endpoint['scoring_url']}"),
            ("traffic", traffic_text(endpoint) or "none: no deployment yet"),
            ("keys changed", when(endpoint["keys_changed_at"])),
            ("created", when(endpoint["created_at"])),
            ("page", endpoint["url"]),
        ]
    )
    if endpoint["deployments"]:
        print()
        show_deployments(endpoint["deployments"])


def show_deployment(deployment: Deployment, output: Output) -> None:
    if output is Output.json:
        print_json(deployment)
        return
    print_fields(
        [
            ("id", deployment["id"]),
            ("name", deployment["name"]),
            ("model", deployment["model"]),
            ("environment", deployment["environment"] or "the site's node image"),
            ("target", deployment["target"]),
            ("size", deployment["vm_size"]),
            ("replicas", replicas_text(deployment)),
            ("in flight per replica", deployment["target_in_flight"]),
            ("request timeout", f"{deployment['request_timeout_ms']} ms"),
            ("traffic", f"{deployment['traffic']}%"),
        ]
    )


def show_keys(name: str, keys: EndpointKeys, output: Output) -> None:
    if output is Output.json:
        print_json(keys)
        return
    print_fields([("primary", keys["primary"]), ("secondary", keys["secondary"])])
    note(f"Send one as `Authorization: Bearer KEY` to endpoint {name}; both work.")


def image_text(environment: Environment) -> str:
    image = environment["image"]
    return image["state"].replace("_", " ")


def show_environments(environments: list[Environment], output: Output, empty: str = "") -> None:
    if output is Output.json:
        print_json(environments)
        return
    rows = [
        [
            e["id"],
            f"{e['name']}:{e['version']}",
            "site" if e["curated"] else "workspace",
            image_text(e),
            size_text(e["image"]["size_bytes"]) if e["image"]["size_bytes"] else "",
            len(e["debian_packages"]) + len(e["pip_requirements"]),
        ]
        for e in environments
    ]
    print_table(["ID", "ENVIRONMENT", "FROM", "IMAGE", "SIZE", "PACKAGES"], rows, empty)


def show_environment(environment: Environment, output: Output) -> None:
    if output is Output.json:
        print_json(environment)
        return
    image = environment["image"]
    variables = " ".join(f"{k}={v}" for k, v in environment["variables"].items())
    pairs: list[tuple[str, Any]] = [
        ("id", environment["id"]),
        ("name", f"{environment['name']}:{environment['version']}"),
        ("description", environment["description"]),
        ("from", "the site (curated)" if environment["curated"] else "this workspace"),
        ("debian packages", " ".join(environment["debian_packages"])),
        ("pip requirements", " ".join(environment["pip_requirements"])),
        ("variables", variables),
        ("image", image["tag"]),
        ("state", image_text(environment)),
        ("image id", image["image_id"][:19]),
        ("size", size_text(image["size_bytes"]) if image["size_bytes"] else ""),
        ("build started", when(image["started_at"])),
        ("build ended", when(image["finished_at"])),
    ]
    if image["error"]:
        pairs.append(("error", image["error"].strip()))
    pairs.append(("page", environment["url"]))
    print_fields(pairs)


BATCH_STATES = {"partial": "completed with errors"}  # as the Batch page says it


def batch_state(batch: BatchJob) -> str:
    return BATCH_STATES.get(batch["state"], batch["state"])


def batch_progress(batch: BatchJob) -> str:
    """ "7 of 10 mini-batches done, 1 failed", as the batch job's page says it."""
    line = f"{batch['batches_done']} of {batch['batches_total']} mini-batches done"
    failed = batch["batches_failed"]
    return f"{line}, {failed} failed" if failed else line


def show_batches(batches: list[BatchJob], output: Output, empty: str = "") -> None:
    if output is Output.json:
        print_json(batches)
        return
    rows = [
        [
            b["id"],
            b["name"],
            b["state"],
            b["model"],
            f"{b['batches_done']}/{b['batches_total']}",
            b["batches_failed"] or "",
            b["row_count"],
            when(b["created_at"]),
        ]
        for b in batches
    ]
    columns = ["ID", "NAME", "STATE", "MODEL", "DONE", "FAILED", "ROWS", "SUBMITTED"]
    print_table(columns, rows, empty)


def show_batch(batch: BatchJob, output: Output) -> None:
    if output is Output.json:
        print_json(batch)
        return
    size = batch["input_bytes"]
    files = f"{batch['file_count']:,} file{'' if batch['file_count'] == 1 else 's'}"
    # What was uploaded: one file's or zip's name; several files are "N files" already.
    inputs = "" if batch["input_name"] == files else f"{batch['input_name']}: "
    print_fields(
        [
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
    )


def batch_end_code(batch: BatchJob) -> int:
    """The exit status `hangar batch submit --wait` ends with: 0 when every mini-batch
    succeeded; 1 when some or all failed; 130 when it was canceled (as a job's)."""
    state = batch["state"]
    if state == "succeeded":
        return 0
    return 130 if state == "canceled" else 1
