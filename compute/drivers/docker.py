"""Nodes as Docker containers, through the Docker SDK. Never pulls an image."""

from __future__ import annotations

import os
import re

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from requests.exceptions import RequestException

from compute import jobfiles
from compute.drivers.base import (
    LABEL_COMPUTE,
    LABEL_SITE,
    Driver,
    DriverUnavailable,
    JobLaunch,
    NodeObservation,
    NodeSpec,
    NodeStartError,
    parse_labels,
)

EXIT_CODE = re.compile(r"Exited \((-?\d+)\)")
MIN_MEMORY = 8 * 1024 * 1024  # Docker refuses limits under 6 MiB
MIN_CPUS = 0.01


class DockerDriver(Driver):
    name = "docker"
    label = "Docker engine"

    def __init__(self, site: str, base_url: str | None = None, timeout: int = 15) -> None:
        super().__init__(site)
        self.base_url = base_url
        self.timeout = timeout
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                if self.base_url:
                    self._client = docker.DockerClient(base_url=self.base_url, timeout=self.timeout)
                else:
                    self._client = docker.from_env(timeout=self.timeout)
            except DockerException as exc:
                raise DriverUnavailable(f"{self.label} unreachable: {exc}") from None
        return self._client

    def _unavailable(self, exc: Exception) -> DriverUnavailable:
        self._client = None  # reconnect next time: the engine may have restarted
        return DriverUnavailable(f"{self.label} unreachable: {exc}")

    def ping(self) -> None:
        try:
            self.client.ping()
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def ensure_node(self, spec: NodeSpec) -> NodeObservation:
        try:
            try:
                container = self.client.containers.get(spec.container_name)
            except NotFound:
                container = self._create(spec)
            if container.status != "running":
                container.start()
                container.reload()
            return self._observe(
                container.name, container.id, container.labels, container.status, container.attrs
            )
        except (NodeStartError, DriverUnavailable):
            raise
        except APIError as exc:
            if exc.status_code and 400 <= exc.status_code < 500:
                raise NodeStartError(f"Docker refused the node: {exc.explanation}") from None
            raise self._unavailable(exc) from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def _create(self, spec: NodeSpec):
        try:
            self.client.images.get(spec.image)
        except ImageNotFound:
            # Hangar never pulls: a pull would reach for a registry this machine cannot see.
            raise NodeStartError(
                f"Image {spec.image} is not on this Docker engine. Build it with "
                "`python manage.py build_node_image` (Hangar never pulls images)."
            ) from None
        host_cpus = os.cpu_count() or 1
        try:
            return self.client.containers.create(
                spec.image,
                command=list(spec.command),
                name=spec.container_name,
                labels=spec.labels,
                environment=spec.environment,
                nano_cpus=int(min(max(spec.cpus, MIN_CPUS), host_cpus) * 1e9),
                mem_limit=max(spec.memory_bytes, MIN_MEMORY),
                init=True,
                network_mode=spec.network,
                volumes={
                    host: {"bind": inside, "mode": "ro" if read_only else "rw"}
                    for host, inside, read_only in spec.mounts
                },
                detach=True,
            )
        except APIError as exc:
            if exc.status_code == 409:  # another worker created it a moment ago: adopt it
                return self.client.containers.get(spec.container_name)
            raise

    def start_job(self, launch: JobLaunch) -> None:
        environment = dict(launch.environment)
        if launch.code_job_id is not None:
            environment["HANGAR_WORKDIR"] = f"{jobfiles.NODE_CODE}/{launch.code_job_id}"
        jobfiles.prepare_run_dir(launch.run_key)  # on this machine, mounted into the node
        run = f"{jobfiles.NODE_RUNS}/{launch.run_key}"
        self._exec(
            launch.container, ["sh", "-c", jobfiles.JOB_WRAPPER, "hangar-job", run], environment
        )

    def cancel_job(self, container: str, run_key: str) -> None:
        run = f"{jobfiles.NODE_RUNS}/{run_key}"
        self._exec(container, ["sh", "-c", jobfiles.JOB_CANCEL, "hangar-cancel", run], {})

    def _exec(self, container: str, command: list[str], environment: dict[str, str]) -> None:
        try:
            # detach: the exec returns at once; the process lives in the node, not here.
            self.client.containers.get(container).exec_run(
                command, environment=environment, detach=True
            )
        except NotFound:
            raise NodeStartError(f"Node container {container} is gone.") from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def remove_node(self, name: str) -> bool:
        try:
            self.client.containers.get(name).remove(force=True)
            return True
        except NotFound:
            return False
        except APIError as exc:
            if exc.status_code == 409:  # removal already in progress
                return False
            raise self._unavailable(exc) from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def list_nodes(self, compute_id: int | None = None) -> list[NodeObservation]:
        filters = [f"{LABEL_SITE}={self.site}"]
        if compute_id is not None:
            filters.append(f"{LABEL_COMPUTE}={compute_id}")
        try:
            # sparse: one API call for the whole list instead of one inspect per container.
            containers = self.client.containers.list(
                all=True, sparse=True, filters={"label": filters}
            )
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None
        observations = []
        for container in containers:
            attrs = container.attrs
            names = attrs.get("Names") or [container.id]
            name = names[0].lstrip("/")
            observation = self._observe(
                name, container.id, attrs.get("Labels") or {}, attrs.get("State", ""), attrs
            )
            if observation is not None:
                observations.append(observation)
        return observations

    @staticmethod
    def _observe(
        name: str, ref: str, labels: dict, status: str, attrs: dict
    ) -> NodeObservation | None:
        ids = parse_labels(labels)
        if ids is None:
            return None
        if isinstance(attrs.get("State"), dict):  # full inspect
            exit_code = attrs["State"].get("ExitCode") if status != "running" else None
        else:  # sparse list: "Exited (137) 3 seconds ago"
            match = EXIT_CODE.search(attrs.get("Status", ""))
            exit_code = int(match.group(1)) if match else None
        return NodeObservation(
            name=name,
            ref=ref,
            compute_id=ids[0],
            node_id=ids[1],
            running=status == "running",
            status=status,
            exit_code=exit_code,
        )
