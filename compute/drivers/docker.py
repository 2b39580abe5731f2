"""Nodes as Docker containers, through the Docker SDK. Never pulls an image."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.tls import TLSConfig
from docker.types import DeviceRequest, LogConfig, Mount
from requests.exceptions import RequestException

from compute.drivers import node_scripts as scripts
from compute.drivers.base import (
    LABEL_COMPUTE,
    LABEL_SITE,
    Driver,
    DriverUnavailable,
    JobLaunch,
    NodeLog,
    NodeObservation,
    NodeSpec,
    NodeStartError,
    parse_labels,
)
from compute.drivers.node_runs import (
    FOLLOWED,
    OUTPUTS,
    Follower,
    code_archive,
    end_without_code,
    node_outputs_dir,
    node_run_dir,
    parse_exit,
)
from compute.lib import jobfiles, output_collection, output_store, replicas
from compute.lib.jobfiles import RunState

log = logging.getLogger(__name__)

EXIT_CODE = re.compile(r"Exited \((-?\d+)\)")
MIN_MEMORY = 8 * 1024 * 1024  # Docker refuses limits under 6 MiB
MIN_CPUS = 0.01
FOLLOW_FRESH_SECONDS = 2.0
START_TIMEOUT = 15.0
POOL_SIZE = 64
# A node's log: its last lines, fewer when they are long (a node may print a line of any
# length); the most read from the engine for one look.
LOG_TAILS = (500, 50, 5, 1)
LOG_READ_LIMIT = 4 * 1024 * 1024
# Go's os.FileMode bits in the stat header of the archive API.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27


# The Docker API version asked of an engine reached over TLS (Docker 20.10 and later): a
# fixed one, so the client asks nothing before its settings below are in place.
TLS_API_VERSION = "1.41"


def tls_client(
    base_url: str, timeout: int, tls: TLSConfig | None, pool_size: int = 10
) -> docker.DockerClient:
    """A client of an engine by URL. With TLS, the host's own CA and client certificate
    are what count: requests would otherwise let REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE of
    the worker's environment replace the CA (psf/requests#3829), and refuse the engine."""
    if tls is None:
        return docker.DockerClient(base_url=base_url, timeout=timeout, max_pool_size=pool_size)
    client = docker.DockerClient(
        base_url=base_url,
        timeout=timeout,
        max_pool_size=pool_size,
        tls=tls,
        version=TLS_API_VERSION,
    )
    client.api.trust_env = False
    return client


class DockerDriver(Driver):
    name = "docker"
    label = "Docker engine"

    def __init__(
        self,
        site: str,
        base_url: str | None = None,
        timeout: int = 15,
        tls: tuple[str, str, str] | None = None,
    ) -> None:
        super().__init__(site)
        self.base_url = base_url
        self.timeout = timeout
        self.tls = tls  # (CA, client certificate, key) files, for tcp:// with TLS
        # The engine's CPUs when it is another machine's (a node host's); else this one's.
        self.host_cpus: float | None = None
        self._client: docker.DockerClient | None = None

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                # Each followed run holds one connection for its whole run: room for many.
                if self.base_url:
                    tls = None
                    if self.tls is not None:
                        ca, cert, key = self.tls
                        tls = TLSConfig(client_cert=(cert, key), ca_cert=ca, verify=True)
                    self._client = tls_client(self.base_url, self.timeout, tls, POOL_SIZE)
                else:
                    self._client = docker.from_env(timeout=self.timeout, max_pool_size=POOL_SIZE)
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
            observed = self._observe(
                container.name, container.id, container.labels, container.status, container.attrs
            )
            if observed is None:  # a container of that name that Hangar did not label
                raise NodeStartError(f"{spec.container_name} exists without Hangar's labels.")
            return observed
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
        for folder in spec.folders:
            if not folder.read_only:  # a replica's socket folder: made before it starts
                replicas.prepare_socket_folder(Path(folder.host_path))
        host_cpus = self.host_cpus or os.cpu_count() or 1
        memory = max(spec.memory_bytes, MIN_MEMORY)
        try:
            return self.client.containers.create(
                spec.image,
                command=list(spec.command),
                name=spec.container_name,
                labels=spec.labels,
                environment=spec.environment,
                nano_cpus=int(min(max(spec.cpus, MIN_CPUS), host_cpus) * 1e9),
                mem_limit=memory,
                memswap_limit=memory,  # no swap beyond the memory the VM size gives
                init=True,
                # What the node's own process prints (a replica's scoring server, its
                # user's script within) is capped on this machine's disk: jobs' output
                # goes to their records, so only a noisy replica could fill it.
                log_config=LogConfig(
                    type=LogConfig.types.JSON, config={"max-size": "10m", "max-file": "2"}
                ),
                network_mode=spec.network,
                # A GPU size on a host that has GPUs (placement counted them free).
                device_requests=(
                    [DeviceRequest(count=spec.gpus, capabilities=[["gpu"]])] if spec.gpus else None
                ),
                # A tenant's sandbox: not root, no capability, no privilege gained by exec,
                # a bounded process count, nothing writable but /tmp and its own /work,
                # and no folder of this machine's mounted in (a serving replica's alone
                # see its model and scripts read-only, and the folder of its socket).
                # Code and output cross through the Docker API (put_archive, exec streams).
                user=scripts.NODE_USER,
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                pids_limit=spec.pids_limit,
                read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,exec,size={spec.tmp_mb}m,mode=1777"},  # noqa: S108
                mounts=[
                    Mount(scripts.NODE_WORK, None, type="volume", labels=spec.labels),
                    *(
                        Mount(f.node_path, f.host_path, type="bind", read_only=f.read_only)
                        for f in spec.folders
                    ),
                ],
                detach=True,
            )
        except APIError as exc:
            if exc.status_code == 409:  # another worker created it a moment ago: adopt it
                return self.client.containers.get(spec.container_name)
            raise

    # Jobs ---------------------------------------------------------------------------

    def start_job(self, launch: JobLaunch) -> None:
        """Copy the code in, start the run in the node (at most once per attempt: a relaunch
        follows the run already there), and keep following its output into the record."""
        jobfiles.prepare_run_dir(launch.run_key)
        environment = {**launch.environment, "HOME": "/tmp"}  # noqa: S108 (the node's own)
        try:
            # By name: no inspect of the container on the way (it costs a round trip).
            if launch.code_job_id is not None:
                self.client.api.put_archive(
                    launch.container, scripts.NODE_WORK, code_archive(launch.code_job_id)
                )
                environment["HANGAR_WORKDIR"] = f"{scripts.NODE_CODE}/{launch.code_job_id}"
            offset = jobfiles.output_offset(launch.run_key)
            stream = self._exec_stream(
                launch.container,
                scripts.START_AND_FOLLOW,
                [
                    node_run_dir(launch.run_key),
                    str(offset or 0),
                    str(jobfiles.output_limit()),
                    scripts.WRAPPER,
                ],
                environment,
            )
        except NotFound:
            raise NodeStartError(f"Node container {launch.container} is gone.") from None
        except APIError as exc:
            if exc.status_code == 409:
                raise NodeStartError(f"Node container {launch.container} is not running.") from None
            raise self._unavailable(exc) from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None
        follower = Follower(launch.run_key, stream, offset, launch.on_finish)
        if not follower.wait_until_started(START_TIMEOUT):
            raise NodeStartError(f"The job did not start on {launch.container}.")
        follower.start()

    def job_state(self, run_key: str, container: str = "") -> RunState:
        """The record says it all while a follower copies; otherwise look in the node once,
        copy what is new, and follow again (a worker died, say)."""
        state = jobfiles.read_run(run_key)
        if state.exit_code is not None or not container or Follower.is_following(run_key):
            return state
        since = jobfiles.seconds_since(run_key, FOLLOWED)
        if since is not None and since < FOLLOW_FRESH_SECONDS:
            return state
        return self._look(run_key, container)

    def _look(self, run_key: str, container: str) -> RunState:
        offset = jobfiles.output_offset(run_key)
        arguments = [node_run_dir(run_key), "cut" if offset is None else str(offset)]
        try:
            result = self.client.containers.get(container).exec_run(
                ["sh", "-c", scripts.LOOK, "hangar-look", *arguments],
                user=scripts.JOB_USER,
                demux=True,
            )
        except NotFound:
            return jobfiles.read_run(run_key)  # the node is lost: the reconciler requeues
        except APIError as exc:
            if exc.status_code == 409:  # not running: likewise
                return jobfiles.read_run(run_key)
            raise self._unavailable(exc) from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None
        head, _, output = (result.output[0] or b"").partition(b"\n")
        if head == b"waiting":
            return jobfiles.read_run(run_key)
        jobfiles.mark_started(run_key)
        if offset is not None and output:
            jobfiles.write_output(run_key, offset, output)
        if head.startswith(b"exit="):
            jobfiles.write_exit_code(run_key, parse_exit(head[5:]))
        elif head == b"dead":
            end_without_code(run_key)
        else:
            self.follow(run_key, container)
        return jobfiles.read_run(run_key)

    def follow(self, run_key: str, container: str) -> None:
        """Follow a run that is already going (its output stays live on the page)."""
        offset = jobfiles.output_offset(run_key)
        try:
            stream = self._exec_stream(
                container,
                scripts.START_AND_FOLLOW,
                # The wrapper never runs here: the run folder exists, so this only follows.
                [node_run_dir(run_key), str(offset or 0), str(jobfiles.output_limit()), "exit 1"],
                {},
            )
        except (DockerException, RequestException):
            return  # the next look tries again
        Follower(run_key, stream, offset, None).start()

    def _exec_stream(
        self, container: str, script: str, arguments: list[str], environment: dict[str, str]
    ) -> Iterator[tuple[bytes | None, bytes | None]]:
        api = self.client.api
        exec_id = api.exec_create(
            container,
            ["sh", "-c", script, "hangar", *arguments],
            stdout=True,
            stderr=True,
            environment=environment,
            user=scripts.JOB_USER,
            workdir=scripts.NODE_WORK,
        )["Id"]
        return api.exec_start(exec_id, stream=True, demux=True)

    def cancel_job(self, container: str, run_key: str) -> None:
        self._exec_detached(container, scripts.CANCEL, [node_run_dir(run_key)])

    def release_run(self, container: str, run_key: str) -> None:
        api = self.client.api
        try:
            # By name, and without asking for the exit code afterwards (exec_run would
            # inspect the container first and the exec after: two more round trips).
            exec_id = api.exec_create(
                container, ["sh", "-c", scripts.CLEAR, "hangar-clear"], user=scripts.JOB_USER
            )["Id"]
            api.exec_start(exec_id)  # returns when the clean-up has ended
        except NotFound:
            return  # the node is gone, and its files with it
        except APIError as exc:
            if exc.status_code == 409:
                return
            raise self._unavailable(exc) from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def collect_outputs(
        self, container: str, run_key: str, code_job_id: int | None, sink: output_collection.Sink
    ) -> None:
        """./outputs as the engine archives it (get_archive: nothing runs in the node, and
        a node on another host is read the same way). The engine archives a link as the
        link, never its target; the sink keeps only folders and regular files."""
        path = node_outputs_dir(run_key, code_job_id)
        try:
            stream, info = self.client.api.get_archive(
                container, path, chunk_size=output_store.CHUNK
            )
        except NotFound:
            return  # no ./outputs (or the node is gone, its files with it)
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None
        mode = int((info or {}).get("mode", 0))
        if mode & GO_MODE_SYMLINK or not mode & GO_MODE_DIR:
            sink.leave_out((OUTPUTS,), "is not a folder (a link or a file)")
            return
        try:
            output_collection.from_tar(stream, OUTPUTS, sink)
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def _exec_detached(self, container: str, script: str, arguments: list[str]) -> None:
        try:
            # detach: the exec returns at once; the process lives in the node, not here.
            self.client.containers.get(container).exec_run(
                ["sh", "-c", script, "hangar", *arguments], user=scripts.JOB_USER, detach=True
            )
        except NotFound:
            raise NodeStartError(f"Node container {container} is gone.") from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def remove_node(self, name: str) -> bool:
        try:
            # v: the node's /work volume goes with it.
            self.client.containers.get(name).remove(force=True, v=True)
            replicas.remove_socket_folder(name)  # a serving replica's, if it was one
            return True
        except NotFound:
            replicas.remove_socket_folder(name)
            return False
        except APIError as exc:
            if exc.status_code == 409:  # removal already in progress
                return False
            raise self._unavailable(exc) from None
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None

    def node_log(self, name: str, tail_bytes: int) -> NodeLog:
        """`docker logs --tail`: the last lines, and of them the last `tail_bytes`. What a
        node wrote is hostile: never more than LOG_READ_LIMIT read per try, fewer lines
        asked for when they are longer than that."""
        try:
            for tail in LOG_TAILS:
                kept, lines, whole = self._read_log(name, tail, tail_bytes)
                if whole or tail == LOG_TAILS[-1]:
                    # Lines before these (as many as asked for came), or bytes cut off.
                    cut = not whole or lines >= tail or len(kept) >= tail_bytes
                    return NodeLog(output=bytes(kept), cut=cut)
        except NotFound:
            return NodeLog(
                available=False, note="The replica's container is gone, and its output with it."
            )
        except (DockerException, RequestException) as exc:
            raise self._unavailable(exc) from None
        raise AssertionError("unreachable")  # the last tail always returns

    def _read_log(self, name: str, tail: int, tail_bytes: int) -> tuple[bytearray, int, bool]:
        """The last `tail_bytes` of the last `tail` lines, how many lines came, and whether
        they were read whole (under LOG_READ_LIMIT)."""
        # follow=False said: with stream=True the SDK would follow until the node ends.
        stream = self.client.api.logs(
            name, stdout=True, stderr=True, stream=True, follow=False, tail=tail
        )
        kept, read, lines = bytearray(), 0, 0
        try:
            for chunk in stream:
                read += len(chunk)
                lines += chunk.count(b"\n")
                kept += chunk
                if len(kept) > tail_bytes:
                    del kept[: len(kept) - tail_bytes]
                if read > LOG_READ_LIMIT:
                    return kept, lines, False
        finally:
            stream.close()
        return kept, lines, True

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
