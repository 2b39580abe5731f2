"""Nodes on several Docker engines: one driver that hands each call to the engine of the
node it is about. Which engine a container is on is the controllers' to say (the node's
row names its host): `locate(container name)` answers a host name, or "" for the default
engine. A node spec names its host (placement chose it).

An image a host lacks is copied to it from an engine that has it, streamed (`docker save`
into `docker load`, no registry), once per host and image at a time (a lock). `docker
load` tags the image only once every layer is in: a half-copied image is never present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from docker.errors import DockerException, ImageNotFound
from requests.exceptions import RequestException

from compute.drivers.base import (
    Driver,
    DriverUnavailable,
    JobLaunch,
    NodeLog,
    NodeObservation,
    NodeSpec,
    NodeStartError,
)
from compute.drivers.docker import DockerDriver
from compute.lib.jobfiles import RunState
from compute.lib.output_collection import Sink

COPY_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Engine:
    """A node host as the driver needs it: its name, URL, TLS files and CPUs."""

    name: str
    url: str
    tls: tuple[str, str, str] | None = None  # (ca, cert, key) file paths
    cpus: float | None = None
    # Unreachable, within its grace: a look at its nodes fails (nothing is written off).
    down: bool = False
    # Unreachable past its grace: its nodes are written off; it is not asked at all.
    lost: bool = False


class MultiHostDriver(Driver):
    name = "docker"
    label = "Docker engines"

    def __init__(
        self,
        site: str,
        default: DockerDriver,
        engines: list[Engine],
        locate: Callable[[str], str],
        on_copy: Callable[[str, str, int, bool], None] | None = None,
        copy_lock: Callable[[str, str], object] | None = None,
    ) -> None:
        super().__init__(site)
        self.default = default
        self.engines = {engine.name: engine for engine in engines}
        self.drivers: dict[str, DockerDriver] = {}
        self.locate = locate
        self.on_copy = on_copy  # (host, image, bytes so far, done)
        self.copy_lock = copy_lock  # a context manager per (host, image), across workers

    # Which engine -------------------------------------------------------------------

    def engine_driver(self, host: str) -> DockerDriver:
        if not host:
            return self.default
        engine = self.engines.get(host)
        if engine is None:
            raise DriverUnavailable(f"Node host {host} is not registered any more")
        if engine.down or engine.lost:
            raise DriverUnavailable(f"Node host {host} is unreachable")
        driver = self.drivers.get(host)
        if driver is None:
            driver = DockerDriver(self.site, base_url=engine.url, tls=engine.tls)
            driver.label = f"Docker engine of host {host}"
            if engine.cpus:
                driver.host_cpus = engine.cpus
            self.drivers[host] = driver
        return driver

    def of_container(self, name: str) -> DockerDriver:
        return self.engine_driver(self.locate(name))

    # Nodes --------------------------------------------------------------------------

    def ensure_node(self, spec: NodeSpec) -> NodeObservation:
        target = self.engine_driver(spec.host)
        if spec.host and not self._has_image(target, spec.image):
            self.copy_image(spec.image, spec.host)
        return target.ensure_node(spec)

    def remove_node(self, name: str) -> bool:
        host = self.locate(name)
        engine = self.engines.get(host)
        if engine is not None and engine.lost:
            return False  # its engine is gone: the sweep removes it if it comes back
        return self.of_container(name).remove_node(name)

    def list_nodes(self, compute_id: int | None = None) -> list[NodeObservation]:
        """Every engine's containers (of one compute); an engine unreachable within its
        grace fails the look (its nodes are not to be taken for gone yet); one past it is
        left out (its nodes were written off)."""
        found = self.default.list_nodes(compute_id)
        for engine in self.engines.values():
            if engine.lost:
                continue
            if engine.down:
                if compute_id is None:
                    continue  # the sweep's look for strays: the others still count
                raise DriverUnavailable(f"Node host {engine.name} is unreachable")
            found += self.engine_driver(engine.name).list_nodes(compute_id)
        return found

    def ping(self) -> None:
        self.default.ping()

    def node_log(self, name: str, tail_bytes: int) -> NodeLog:
        return self.of_container(name).node_log(name, tail_bytes)

    # Jobs ---------------------------------------------------------------------------

    def start_job(self, launch: JobLaunch) -> None:
        self.of_container(launch.container).start_job(launch)

    def cancel_job(self, container: str, run_key: str) -> None:
        self.of_container(container).cancel_job(container, run_key)

    def job_state(self, run_key: str, container: str = "") -> RunState:
        if not container:
            return self.default.job_state(run_key)
        return self.of_container(container).job_state(run_key, container)

    def release_run(self, container: str, run_key: str) -> None:
        self.of_container(container).release_run(container, run_key)

    def collect_outputs(
        self, container: str, run_key: str, code_job_id: int | None, sink: Sink
    ) -> None:
        self.of_container(container).collect_outputs(container, run_key, code_job_id, sink)

    # Images -------------------------------------------------------------------------

    @staticmethod
    def _has_image(driver: DockerDriver, image: str) -> bool:
        try:
            driver.client.images.get(image)
            return True
        except ImageNotFound:
            return False
        except (DockerException, RequestException) as exc:
            raise driver._unavailable(exc) from None

    def copy_image(self, image: str, host: str) -> None:
        """`image` onto `host` from an engine that has it (the default first)."""
        target = self.engine_driver(host)
        lock = self.copy_lock(host, image) if self.copy_lock else None
        if lock is not None:
            lock.__enter__()  # type: ignore[attr-defined]
        try:
            if self._has_image(target, image):
                return  # another worker copied it while this one waited
            source = self._source_of(image, host)
            if source is None:
                raise NodeStartError(
                    f"Image {image} is on no Docker engine of this Hangar: build it first "
                    "(Hangar never pulls images)."
                )
            try:
                stream = source.client.api.get_image(image, chunk_size=COPY_CHUNK)
                target.client.api.load_image(self._counted(stream, host, image), quiet=True)
            except (DockerException, RequestException, OSError) as exc:
                # Whatever broke it off: nothing half-loaded counts, the next start copies.
                raise DriverUnavailable(
                    f"Copying image {image} to host {host} failed: {exc}"
                ) from None
            if not self._has_image(target, image):
                raise DriverUnavailable(f"Copying image {image} to host {host} did not finish")
        finally:
            if lock is not None:
                lock.__exit__(None, None, None)  # type: ignore[attr-defined]

    def _source_of(self, image: str, host: str) -> DockerDriver | None:
        candidates = [self.default] + [
            self.engine_driver(name)
            for name, engine in self.engines.items()
            if name != host and not (engine.down or engine.lost)
        ]
        for candidate in candidates:
            try:
                if self._has_image(candidate, image):
                    return candidate
            except DriverUnavailable:
                continue
        return None

    def _counted(self, stream: Iterator[bytes], host: str, image: str) -> Iterator[bytes]:
        copied = 0
        for chunk in stream:
            copied += len(chunk)
            if self.on_copy is not None:
                self.on_copy(host, image, copied, False)
            yield chunk
        if self.on_copy is not None:
            self.on_copy(host, image, copied, True)
