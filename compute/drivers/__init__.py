"""Where nodes live. `get_driver()` returns the one chosen by HANGAR_DRIVER."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from compute.drivers.base import (
    Driver,
    DriverUnavailable,
    HostFolder,
    JobLaunch,
    JobRunner,
    NodeLog,
    NodeObservation,
    NodeSpec,
    NodeStartError,
)

__all__ = [
    "Driver",
    "DriverUnavailable",
    "HostFolder",
    "JobLaunch",
    "JobRunner",
    "NodeLog",
    "NodeObservation",
    "NodeSpec",
    "NodeStartError",
    "get_driver",
]


@cache
def build_driver(name: str, site: str) -> Driver:
    if name == "noop":
        from compute.drivers.noop import NoopDriver

        return NoopDriver(site)
    if name == "docker":
        from compute.drivers.docker import DockerDriver

        return DockerDriver(site, base_url=settings.HANGAR_DOCKER_URL or None)
    from compute.drivers.local import LocalDriver

    return LocalDriver(site, settings.HANGAR_LOCAL_NODES_DIR)


def get_driver() -> Driver:
    return build_driver(settings.HANGAR_DRIVER, settings.HANGAR_SITE)
