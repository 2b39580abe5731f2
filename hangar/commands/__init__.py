"""The `hangar` commands, one module per resource, as the server's layers are. Each module
declares its group and commands (`group`, `@command` in hangar/commands/registry.py) when
imported; the order of the imports below is the order `hangar --help` lists them in."""

from __future__ import annotations

# isort: off
from hangar.commands import workspaces  # `hangar login`, then the workspace group
from hangar.commands import computes, jobs, job_outputs, quota, environments, models
from hangar.commands import endpoints  # and `hangar score`
from hangar.commands import deployments, batch

# isort: on
from hangar.commands.registry import Command, Parser, build

__all__ = [
    "Command",
    "Parser",
    "batch",
    "build",
    "computes",
    "deployments",
    "endpoints",
    "environments",
    "job_outputs",
    "jobs",
    "models",
    "quota",
    "workspaces",
]
