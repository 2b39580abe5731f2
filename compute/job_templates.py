"""Job templates (compute/job_templates.toml): a filled-in submit form to start from, such
as the demo's classifier on the scikit-learn environment."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TEMPLATES_FILE = Path(__file__).resolve().parent / "job_templates.toml"


@dataclass(frozen=True)
class JobTemplate:
    key: str
    title: str
    description: str
    command: str
    environment: str = ""  # a curated environment's name; empty: the compute's own
    script_name: str = ""
    script: str = ""


@cache
def job_templates() -> dict[str, JobTemplate]:
    with open(TEMPLATES_FILE, "rb") as handle:
        entries = tomllib.load(handle)
    return {
        key: JobTemplate(
            key=key,
            title=entry["title"],
            description=entry.get("description", ""),
            command=entry["command"],
            environment=entry.get("environment", ""),
            script_name=entry.get("script_name", ""),
            script=entry.get("script", "").lstrip("\n"),
        )
        for key, entry in entries.items()
    }
