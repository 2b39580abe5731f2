"""A small typed client for Hangar's REST API (`/api/v1/`), for scripts and notebooks.

    from hangar.client import Client

    hangar = Client("http://127.0.0.1:8000", token="hgr_...")
    job = hangar.submit("vision", "trainers", "python train.py", code_dir="./project")
    for text in hangar.follow("vision", job["id"]):
        print(text, end="")
    print(hangar.wait("vision", job["id"]))  # {"status": "completed", "exit_code": 0, ...}

Every refusal of the server raises `ApiError(status, detail, errors)` with the API's own
words; a server that cannot be reached raises `ApiError` with status 0. Lists follow the
API's cursor pages to the end. The token is sent in the `Authorization` header and never
appears in a message, a log or a `repr`.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack
from typing import IO, TYPE_CHECKING, Any, TypedDict, cast

from hangar import CODE_SIZE_LIMIT, __version__
from hangar.http import ConnectFailed, Http, Response, TimedOut, TransportError

if TYPE_CHECKING:
    from hangar.pack import Packed

API_PREFIX = "/api/v1"
PAGE_SIZE = 100  # the API's largest page
# A 429 is retried (after its Retry-After) this many times when the wait is short.
THROTTLE_RETRIES = 2
THROTTLE_LONGEST_WAIT = 60.0
# Following a job: the server writes a comment every half second, so this long without a
# byte means the connection is gone. A dropped stream is reconnected from the last offset
# for this long before giving up.
FOLLOW_READ_TIMEOUT = 60.0
RECONNECT_FOR = 60.0
UPLOAD_TIMEOUT = 300.0

JOB_TERMINAL = ("completed", "failed", "canceled")
IMAGE_UNDER_WAY = ("queued", "building")
BATCH_ENDED = ("succeeded", "partial", "failed", "canceled")
COMPUTE_TRANSITIONAL = ("creating", "stopping", "starting", "restarting", "resizing", "deleting")


class Workspace(TypedDict):
    slug: str
    name: str
    description: str
    role: str | None


class Compute(TypedDict):
    id: int
    name: str
    kind: str  # "instance" | "cluster" | "attached"
    state: str
    vm_size: str | None
    tier: str
    min_nodes: int
    max_nodes: int
    idle_seconds_before_scaledown: int
    idle_shutdown_minutes: int | None
    idle_deadline: str | None
    last_error: str
    autoscale_note: str
    environment: str | None  # "name:version"; none: the site's node image
    created_at: str
    state_changed_at: str
    url: str


class Job(TypedDict):
    id: int
    name: str
    compute: str
    compute_id: int
    command: str
    node_count: int
    status: str  # queued, preparing, running, completed, failed, canceled
    exit_code: int | None
    error: str
    submitted_by: str | None
    retries: int
    queued_at: str
    running_at: str | None
    finished_at: str | None
    cancel_requested_at: str | None
    code: str | None
    environment: str | None  # what it runs in: its own choice or its compute's
    image: str  # the image its nodes ran, once placed
    url: str


class JobEnd(TypedDict):
    status: str
    exit_code: int | None
    error: str


class Image(TypedDict):
    tag: str
    state: str  # not_built, queued, building, ready, failed
    image_id: str
    size_bytes: int | None
    error: str  # why its build failed: the package manager's lines
    started_at: str | None
    finished_at: str | None


class Environment(TypedDict):
    id: int
    name: str
    version: int
    description: str
    curated: bool  # the site's, seen by every workspace
    debian_packages: list[str]
    pip_requirements: list[str]
    variables: dict[str, str]
    image: Image
    created_at: str
    url: str


class Model(TypedDict):
    id: int
    name: str
    version: int
    description: str
    kind: str  # "file" | "zip" (a folder)
    file_name: str
    size_bytes: int
    created_by: str | None
    created_at: str
    url: str


class Deployment(TypedDict):
    id: int
    name: str
    model: str  # "name:version"
    environment: str | None
    target: str  # local_web_service, container_instance or managed_cluster
    vm_size: str
    min_replicas: int
    max_replicas: int
    target_in_flight: int
    request_timeout_ms: int
    traffic: int  # percent of the endpoint's requests


class Endpoint(TypedDict):
    id: int
    name: str
    description: str
    scoring_path: str
    scoring_url: str  # where a request is POSTed: the gateway's address and the path
    deployments: list[Deployment]
    keys_changed_at: str
    created_at: str
    url: str


class EndpointKeys(TypedDict):
    primary: str
    secondary: str


class BatchJob(TypedDict):
    id: int
    name: str
    state: str  # running, succeeded, partial (some mini-batches failed), failed, canceled
    model: str  # "name:version"
    environment: str | None  # none: the site's node image
    vm_size: str
    tier: str
    node_count: int
    mini_batch_size: int  # files per mini-batch
    max_attempts: int  # per mini-batch
    input_name: str  # what was uploaded: a file's or zip's name, or "N files"
    file_count: int
    input_bytes: int
    batches_total: int
    batches_done: int
    batches_failed: int
    row_count: int
    error: str
    created_by: str | None
    created_at: str
    finished_at: str | None
    url: str
    predictions_url: str
    errors_url: str


class OutputFile(TypedDict):
    path: str  # rank-N/... for a job of several nodes
    size: int
    url: str


class JobOutputs(TypedDict):
    job_id: int
    status: str
    files: list[OutputFile]
    total_bytes: int
    notes: list[str]  # what was not kept and why (links left out, a cap passed)
    zip_url: str | None


class ApiError(Exception):
    """The server refused (its status, `detail` and per-field `errors`), or could not be
    reached (status 0)."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: Mapping[str, list[str]] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.errors: dict[str, list[str]] = dict(errors or {})
        self.retry_after = retry_after
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """One line that says what went wrong, in the API's words."""
        if self.status == 0:
            return self.detail
        if self.status == 401:
            return f"the server refused the token (401): {self.detail}"
        parts = [
            message if field == "__all__" else f"{field}: {message}"
            for field, messages in self.errors.items()
            for message in messages
        ]
        if not parts:
            return f"{self.detail} ({self.status})"
        if len(parts) == 1 and self.detail in parts[0]:
            return f"{parts[0]} ({self.status})"
        return f"{self.detail} ({self.status}): {'; '.join(parts)}"

    def __repr__(self) -> str:
        return f"ApiError({self.status!r}, {self.detail!r}, {self.errors!r})"


class InvalidInput(ValueError):
    """An argument the client refuses before asking the server (say, `KEY=value` lines)."""


class ScoreError(ApiError):
    """The scoring gateway (or the replica behind it) did not answer a request with a
    success: its status and the `error` (and `detail`) of its JSON body."""

    @property
    def message(self) -> str:
        if self.status == 0:
            return self.detail
        return f"the gateway answered {self.status}: {self.detail}"


def base_url(url: str) -> str:
    """`http://host:8000`, `http://host:8000/` and `http://host:8000/api/v1` alike."""
    url = url.strip().rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(f"the server URL must start with http:// or https://, not {url!r}")
    return url


def shown_url(url: str) -> str:
    """The URL without any user:password@ part, for messages."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def error_of(response: Response) -> ApiError:
    """The API's `{detail, errors}` as an ApiError (or a line about what answered instead)."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    detail, errors = "", {}
    if isinstance(body, dict):
        found = body.get("detail")
        detail = found if isinstance(found, str) else ""
        raw = body.get("errors")
        if isinstance(raw, dict):
            errors = {
                str(field): [
                    str(m) for m in (messages if isinstance(messages, list) else [messages])
                ]
                for field, messages in raw.items()
            }
    if not detail and response.is_redirect:
        where = (response.headers.get("Location") or "").partition(API_PREFIX)[0]
        detail = f"the server redirects to {shown_url(where)}: use that URL"
    if not detail:
        detail = (
            f"{response.reason_phrase or 'Error'} from {response.method} "
            f"{API_PREFIX}{response.path}, "
            "not in the words of Hangar's API: is the URL right?"
        )
    return ApiError(status, detail, errors, retry_after=retry_after_of(response))


def retry_after_of(response: Response) -> float | None:
    """Seconds to wait, as the server asked (None: not said, or not a wait: negative,
    infinite or NaN, which time.sleep would choke on)."""
    value = response.headers.get("Retry-After")
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


def variable_lines(variables: Mapping[str, str] | None, what: str) -> str:
    """`{"A": "1"}` as the API's "A=1" lines (a value may hold no line break)."""
    lines = []
    for key, value in (variables or {}).items():
        key, value = str(key), str(value)
        if not key or "=" in key or any(c.isspace() for c in key):
            raise InvalidInput(f"{what}: {key!r} is not a variable name")
        if "\n" in value or "\r" in value:
            raise InvalidInput(f"{what}: the value of {key} holds a line break")
        lines.append(f"{key}={value}")
    return "\n".join(lines)


def slug_path(workspace: str) -> str:
    return f"/workspaces/{urllib.parse.quote(str(workspace), safe='')}"


class Upload:
    """A file handed to the upload that reports how much of it was read (sent)."""

    def __init__(
        self,
        file: IO[bytes],
        progress: Callable[[int, int], None] | None,
        *,
        before: int = 0,
        total: int | None = None,
    ) -> None:
        self.file = file
        self.progress = progress
        size = file.seek(0, 2)
        file.seek(0)
        # One of several files: progress counts the bytes of those sent before it, of all.
        self.before = before
        self.total = size if total is None else total

    def read(self, size: int = -1) -> bytes:
        chunk = self.file.read(size)
        if self.progress is not None:
            self.progress(self.before + self.file.tell(), self.total)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()


class Client:
    """Hangar's API at `url` (the dashboard's address), as the owner of `token`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.url = base_url(url)
        token = token.strip()
        if not token or any(c.isspace() for c in token) or not token.isprintable():
            raise InvalidInput("the token is empty or not a token (it reads hgr_...)")
        self._http = Http(
            self.url + API_PREFIX,
            {
                "Authorization": f"Bearer {token}",
                "User-Agent": f"hangar-cli/{__version__}",
                "Accept": "application/json",
            },
            timeout,
        )

    def __repr__(self) -> str:
        return f"Client({shown_url(self.url)!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Transport ----------------------------------------------------------------------

    def unreachable(self, error: TransportError) -> ApiError:
        where = shown_url(self.url)
        if isinstance(error, ConnectFailed):
            return ApiError(0, f"cannot reach {where}: {error.reason}")
        if isinstance(error, TimedOut):
            return ApiError(0, f"{where} did not answer in time ({error.reason})")
        return ApiError(0, f"lost the connection to {where}: {error.reason}")

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        """One call; a short 429 is waited out and retried, any other refusal raises."""
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                response = self._http.request(method, path, **kwargs)
            except TransportError as error:
                raise self.unreachable(error) from None
            if response.is_success:
                return response
            refusal = error_of(response)
            wait = refusal.retry_after
            if refusal.status == 429 and attempt < THROTTLE_RETRIES and wait is not None:
                if wait <= THROTTLE_LONGEST_WAIT:
                    time.sleep(wait)
                    continue
            raise refusal
        raise AssertionError("unreachable")  # pragma: no cover

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                f"{method} {path} answered something other than JSON: is the URL right?",
            )

    def pages(
        self, path: str, params: Mapping[str, Any] | None = None, limit: int | None = None
    ) -> Iterator[Any]:
        """Every item of a cursor-paginated list, following `next` to the end (or `limit`)."""
        query: dict[str, Any] = {
            k: v for k, v in (params or {}).items() if v is not None and v != ""
        }
        query["page_size"] = PAGE_SIZE if limit is None else max(1, min(PAGE_SIZE, limit))
        count = 0
        while True:
            page = self.call("GET", path, params=query)
            for item in page.get("results", []):
                yield item
                count += 1
                if limit is not None and count >= limit:
                    return
            following = page.get("next")
            if not following:
                return
            # Only its query: the server's idea of its own host may not be ours (a proxy).
            query = {
                "page_size": query["page_size"],
                **dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(following).query)),
            }

    # Workspaces and computes ----------------------------------------------------------

    def workspaces(self) -> list[Workspace]:
        return list(self.pages("/workspaces"))

    def computes(
        self, workspace: str, kind: str | None = None, state: str | None = None
    ) -> list[Compute]:
        """The workspace's computes (`kind`: instance, cluster or attached)."""
        return list(self.pages(f"{slug_path(workspace)}/computes", {"kind": kind, "state": state}))

    def compute_id(self, workspace: str, name_or_id: str | int) -> int:
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            return int(name_or_id)
        return self.compute(workspace, name_or_id)["id"]

    def compute(self, workspace: str, name_or_id: str | int) -> Compute:
        """One compute, by id or by name."""
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            return cast(
                Compute, self.call("GET", f"{slug_path(workspace)}/computes/{int(name_or_id)}")
            )
        for compute in self.computes(workspace):
            if compute["name"] == name_or_id:
                return compute
        raise ApiError(404, f"Not found: no compute named {name_or_id!r} in {workspace!r}.")

    def create_cluster(
        self,
        workspace: str,
        name: str,
        vm_size: str,
        *,
        min_nodes: int = 0,
        max_nodes: int = 1,
        tier: str = "dedicated",
        idle_seconds_before_scaledown: int = 120,
        environment: str | None = None,
    ) -> Compute:
        """A cluster of `vm_size` nodes (a catalog size's name, e.g. "Standard_DS3_v2").
        `environment`: its id, name or name:version; None for the workspace's default."""
        payload: dict[str, Any] = {
            "name": name,
            "vm_size": vm_size,
            "min_nodes": min_nodes,
            "max_nodes": max_nodes,
            "tier": tier,
            "idle_seconds_before_scaledown": idle_seconds_before_scaledown,
        }
        if environment is not None:
            payload["environment"] = environment
        return cast(
            Compute, self.call("POST", f"{slug_path(workspace)}/computes/clusters", json=payload)
        )

    def create_instance(
        self,
        workspace: str,
        name: str,
        vm_size: str,
        *,
        idle_shutdown_minutes: int | None = None,
        setup_script: str = "",
        secret_environment: Mapping[str, str] | None = None,
        assigned_to: str | None = None,
        environment: str | None = None,
    ) -> Compute:
        """A single-node instance. `idle_shutdown_minutes`: None for the workspace's
        default, 0 for never (if the workspace allows it). `environment`: as a cluster's."""
        payload: dict[str, Any] = {
            "name": name,
            "vm_size": vm_size,
            "setup_script": setup_script,
            "secret_environment": dict(secret_environment or {}),
        }
        if idle_shutdown_minutes is not None:
            payload["idle_shutdown_minutes"] = idle_shutdown_minutes
        if assigned_to:
            payload["assigned_to"] = assigned_to
        if environment is not None:
            payload["environment"] = environment
        return cast(
            Compute, self.call("POST", f"{slug_path(workspace)}/computes/instances", json=payload)
        )

    def _verb(self, workspace: str, compute: str | int, verb: str) -> Compute:
        compute_id = self.compute_id(workspace, compute)
        return cast(
            Compute, self.call("POST", f"{slug_path(workspace)}/computes/{compute_id}/{verb}")
        )

    def start(self, workspace: str, compute: str | int) -> Compute:
        return self._verb(workspace, compute, "start")

    def stop(self, workspace: str, compute: str | int) -> Compute:
        return self._verb(workspace, compute, "stop")

    def restart(self, workspace: str, compute: str | int) -> Compute:
        return self._verb(workspace, compute, "restart")

    def resize(
        self,
        workspace: str,
        compute: str | int,
        *,
        min_nodes: int | None = None,
        max_nodes: int | None = None,
        idle_seconds_before_scaledown: int | None = None,
    ) -> Compute:
        """A cluster's bounds and scale-down delay; what is not given stays as it is."""
        current = self.compute(workspace, compute)
        payload = {
            "min_nodes": current["min_nodes"] if min_nodes is None else min_nodes,
            "max_nodes": current["max_nodes"] if max_nodes is None else max_nodes,
            "idle_seconds_before_scaledown": (
                current["idle_seconds_before_scaledown"]
                if idle_seconds_before_scaledown is None
                else idle_seconds_before_scaledown
            ),
        }
        return cast(
            Compute,
            self.call("PATCH", f"{slug_path(workspace)}/computes/{current['id']}", json=payload),
        )

    def delete(self, workspace: str, compute: str | int) -> Compute:
        """Delete a compute (admins only): its nodes go, its history stays."""
        compute_id = self.compute_id(workspace, compute)
        return cast(Compute, self.call("DELETE", f"{slug_path(workspace)}/computes/{compute_id}"))

    def wait_compute(
        self, workspace: str, compute: str | int, timeout: float | None = 600.0
    ) -> Compute:
        """Poll until the compute leaves its transitional state (creating, starting, …)."""
        compute_id = self.compute_id(workspace, compute)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.25
        while True:
            found = self.compute(workspace, compute_id)
            if found["state"] not in COMPUTE_TRANSITIONAL:
                return found
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"compute {found['name']} is still {found['state']} after {timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    # Jobs -------------------------------------------------------------------------------

    def submit(
        self,
        workspace: str,
        compute: str | int,
        command: str,
        nodes: int = 1,
        env: Mapping[str, str] | None = None,
        secret_env: Mapping[str, str] | None = None,
        code_dir: str | None = None,
        name: str = "",
        *,
        script: str | None = None,
        script_name: str = "train.py",
        size_limit: int | None = CODE_SIZE_LIMIT,
        progress: Callable[[int, int], None] | None = None,
        runs_in: str = "",
    ) -> Job:
        """Submit `command` to a compute (its name or id). `runs_in`: an environment (id,
        name or name:version) other than the compute's. `code_dir`: a folder packed as a
        zip (minus what .gitignore and .hangarignore ignore, and .git), unpacked in the job's
        working folder; or `script`, one file named `script_name`. `secret_env` values are
        stored encrypted and never shown back. `progress(sent, total)` follows the upload."""
        data = {
            "compute": str(compute),
            "command": command,
            "name": name,
            "node_count": str(nodes),
            "environment": variable_lines(env, "environment"),
            "secret_environment": variable_lines(secret_env, "secret environment"),
            "runs_in": runs_in,
        }
        if script is not None:
            data.update(script=script, script_name=script_name)
        path = f"{slug_path(workspace)}/jobs"
        if code_dir is None:
            return cast(Job, self.call("POST", path, data=data))
        from hangar.pack import pack  # zipfile and the ignore rules: only for code

        with pack(code_dir, size_limit) as packed:
            upload = Upload(packed.file, progress)
            files = {"upload": (packed.name, upload, "application/zip")}
            return cast(
                Job,
                self.call(
                    "POST",
                    path,
                    data=data,
                    files=files,
                    timeout=UPLOAD_TIMEOUT,
                ),
            )

    # Environments -----------------------------------------------------------------------

    def environments(self, workspace: str) -> list[Environment]:
        """The workspace's environments and the site's curated ones, every version."""
        return list(self.pages(f"{slug_path(workspace)}/environments"))

    def environment(self, workspace: str, reference: str | int) -> Environment:
        """One environment: by id, `name:version`, or name (its newest version); the
        workspace's own before a curated one of that name, as the API's choices are."""
        text = str(reference).strip()
        if isinstance(reference, int) or text.isdigit():
            path = f"{slug_path(workspace)}/environments/{int(text)}"
            return cast(Environment, self.call("GET", path))
        name, colon, version = text.partition(":")
        found = [
            e
            for e in self.environments(workspace)
            if e["name"] == name and (not colon or str(e["version"]) == version)
        ]
        if not found:
            what = (
                f"version {version} of environment {name!r}"
                if colon
                else f"environment named {name!r}"
            )
            raise ApiError(404, f"Not found: no {what} in {workspace!r}.")
        return max(found, key=lambda e: (not e["curated"], e["version"]))

    def build_environment(self, workspace: str, reference: str | int) -> Environment:
        """Build its image: a failed one again, or one not built yet (409 otherwise)."""
        environment_id = self.environment(workspace, reference)["id"]
        path = f"{slug_path(workspace)}/environments/{environment_id}/build"
        return cast(Environment, self.call("POST", path))

    def wait_environment(
        self, workspace: str, reference: str | int, timeout: float | None = 1800.0
    ) -> Environment:
        """Poll until the environment's image is no longer queued or building."""
        environment_id = self.environment(workspace, reference)["id"]
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.5
        while True:
            found = self.environment(workspace, environment_id)
            state = found["image"]["state"]
            if state not in IMAGE_UNDER_WAY:
                return found
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"environment {found['name']}:{found['version']} is still {state} "
                    f"after {timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    # Models, endpoints and deployments ----------------------------------------------

    def models(self, workspace: str) -> list[Model]:
        """The workspace's registered models, every version, newest first."""
        return list(self.pages(f"{slug_path(workspace)}/models"))

    def model(self, workspace: str, reference: str | int) -> Model:
        """One model: by id, by `name:version`, or by name (its newest version)."""
        text = str(reference).strip()
        if isinstance(reference, int) or text.isdigit():
            return cast(Model, self.call("GET", f"{slug_path(workspace)}/models/{int(text)}"))
        name, colon, version = text.partition(":")
        found = [
            m
            for m in self.models(workspace)
            if m["name"] == name and (not colon or str(m["version"]) == version)
        ]
        if not found:
            what = f"version {version} of model {name!r}" if colon else f"model named {name!r}"
            raise ApiError(404, f"Not found: no {what} in {workspace!r}.")
        return max(found, key=lambda m: m["version"])

    def register_model(
        self,
        workspace: str,
        name: str,
        path: str | os.PathLike[str],
        description: str = "",
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> Model:
        """Upload a model's file (a .zip is a folder, unpacked by the server) under `name`:
        its first version, or the next one when the name is taken."""
        data = {"name": name, "description": description}
        with open(path, "rb") as file:
            upload = Upload(file, progress)
            files = {"upload": (os.path.basename(path), upload, "application/octet-stream")}
            return cast(
                Model,
                self.call(
                    "POST",
                    f"{slug_path(workspace)}/models",
                    data=data,
                    files=files,
                    timeout=UPLOAD_TIMEOUT,
                ),
            )

    # Batch scoring ----------------------------------------------------------------------

    def batch_jobs(self, workspace: str, limit: int | None = None) -> list[BatchJob]:
        """The workspace's batch scoring jobs, newest first (every page unless `limit`)."""
        return list(self.pages(f"{slug_path(workspace)}/batch-jobs", limit=limit))

    def batch_job(self, workspace: str, name_or_id: str | int) -> BatchJob:
        """One batch scoring job, by id or by name (the newest of that name: names may
        repeat)."""
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            path = f"{slug_path(workspace)}/batch-jobs/{int(name_or_id)}"
            return cast(BatchJob, self.call("GET", path))
        for batch in self.pages(f"{slug_path(workspace)}/batch-jobs"):
            if batch["name"] == name_or_id:
                return cast(BatchJob, batch)
        raise ApiError(404, f"Not found: no batch job named {name_or_id!r} in {workspace!r}.")

    def batch_path(self, workspace: str, batch: str | int) -> str:
        if isinstance(batch, int) or str(batch).isdigit():
            return f"{slug_path(workspace)}/batch-jobs/{int(batch)}"
        return f"{slug_path(workspace)}/batch-jobs/{self.batch_job(workspace, batch)['id']}"

    def submit_batch(
        self,
        workspace: str,
        name: str,
        model: str | int,
        scoring_script: str,
        vm_size: str,
        inputs: Sequence[str | os.PathLike[str]],
        *,
        environment: str = "",
        tier: str = "dedicated",
        node_count: int = 2,
        mini_batch_size: int = 10,
        max_attempts: int = 3,
        progress: Callable[[int, int], None] | None = None,
        on_packed: Callable[[Packed], None] | None = None,
        from_job: int | None = None,
    ) -> BatchJob:
        """Score `inputs` with `model` (name, name:version or id) in mini-batches of
        `mini_batch_size` files, on up to `node_count` nodes of its own. `inputs`: several
        files (side by side, by their names), one .zip of a folder (unpacked by the server),
        or one folder, zipped here with every regular file in it (links left out).
        `scoring_script`: its text, with init() and run(mini_batch). `progress(sent, total)`
        follows the upload, over every file; `on_packed` hears of a folder's zip (its file
        count, size and the links left out) before it is sent. `from_job` instead of
        `inputs`: a completed job's id, whose output files are the inputs (nothing is
        uploaded)."""
        data = {
            "name": name,
            "model": str(model),
            "scoring_script": scoring_script,
            "vm_size": vm_size,
            "environment": environment,
            "tier": tier,
            "node_count": str(node_count),
            "mini_batch_size": str(mini_batch_size),
            "max_attempts": str(max_attempts),
        }
        paths = [os.fspath(p) for p in inputs]
        if from_job is not None:
            if paths:
                raise InvalidInput("give the input files or a job's id, not both")
            data["from_job"] = str(int(from_job))
            path = f"{slug_path(workspace)}/batch-jobs"
            return cast(BatchJob, self.call("POST", path, data=data))
        if not paths:
            raise InvalidInput("give the input files (several files, a folder or a .zip)")
        with ExitStack() as opened:
            if len(paths) == 1 and os.path.isdir(paths[0]):
                from hangar.pack import pack_all

                packed = opened.enter_context(pack_all(paths[0]))
                if on_packed is not None:
                    on_packed(packed)
                named: list[tuple[str, IO[bytes]]] = [(packed.name, packed.file)]
            else:
                named = [(os.path.basename(p), opened.enter_context(open(p, "rb"))) for p in paths]
            sizes = [file.seek(0, 2) for _, file in named]
            total, before = sum(sizes), 0
            files = []
            for (filename, file), size in zip(named, sizes, strict=True):
                upload = Upload(file, progress, before=before, total=total)
                kind = "application/zip" if filename.lower().endswith(".zip") else ""
                files.append(("inputs", (filename, upload, kind or "application/octet-stream")))
                before += size
            return cast(
                BatchJob,
                self.call(
                    "POST",
                    f"{slug_path(workspace)}/batch-jobs",
                    data=data,
                    files=files,
                    timeout=UPLOAD_TIMEOUT,
                ),
            )

    def cancel_batch(self, workspace: str, batch: str | int) -> BatchJob:
        """End it now: its running mini-batches stop, the rows of those done are kept
        (409 once it has ended)."""
        return cast(BatchJob, self.call("POST", f"{self.batch_path(workspace, batch)}/cancel"))

    def wait_batch(
        self,
        workspace: str,
        batch: str | int,
        *,
        timeout: float | None = None,
        on_progress: Callable[[BatchJob], None] | None = None,
        poll: float = 5.0,
    ) -> BatchJob:
        """Poll until the batch job has ended; `on_progress` hears of it each time its
        mini-batches' counts (or its state) change, and once at the start."""
        path = self.batch_path(workspace, batch)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay, seen = 0.5, None
        trouble_since: float | None = None
        while True:
            try:
                found = cast(BatchJob, self.call("GET", path))
                trouble_since = None
            except ApiError as error:
                if error.status not in (0, 429, 502, 503, 504):
                    raise
                trouble_since = trouble_since or time.monotonic()
                if time.monotonic() - trouble_since > RECONNECT_FOR:
                    raise
                time.sleep(min(error.retry_after or 2.0, THROTTLE_LONGEST_WAIT))
                continue
            counts = (found["state"], found["batches_done"], found["batches_failed"])
            if counts != seen:
                seen = counts
                if on_progress is not None:
                    on_progress(found)
            if found["state"] in BATCH_ENDED:
                return found
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(
                    f"batch job {found['name']} is still {found['state']} after {timeout:g} s"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, poll)

    def download_batch(
        self, workspace: str, batch: str | int, into: IO[bytes], *, errors: bool = False
    ) -> int:
        """Write the batch job's predictions.csv (or errors.csv) into `into` as the server
        streams it; the bytes written. While it runs, the rows so far."""
        path = f"{self.batch_path(workspace, batch)}/{'errors' if errors else 'predictions'}"
        return self.download(path, into)

    def download(self, path: str, into: IO[bytes]) -> int:
        """Write what the server streams at `path` into `into`; the bytes written."""
        written = 0
        try:
            with self._http.stream("GET", path, params=None, timeout=UPLOAD_TIMEOUT) as response:
                if not response.is_success:
                    raise error_of(response.read())
                for chunk in response.chunks():
                    into.write(chunk)
                    written += len(chunk)
        except TransportError as error:
            raise self.unreachable(error) from None
        return written

    def endpoints(self, workspace: str) -> list[Endpoint]:
        """The workspace's endpoints, by name, each with its deployments."""
        return list(self.pages(f"{slug_path(workspace)}/endpoints"))

    def endpoint(self, workspace: str, name_or_id: str | int) -> Endpoint:
        """One endpoint, by id or by name."""
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            path = f"{slug_path(workspace)}/endpoints/{int(name_or_id)}"
            return cast(Endpoint, self.call("GET", path))
        for endpoint in self.endpoints(workspace):
            if endpoint["name"] == name_or_id:
                return endpoint
        raise ApiError(404, f"Not found: no endpoint named {name_or_id!r} in {workspace!r}.")

    def endpoint_path(self, workspace: str, endpoint: str | int) -> str:
        if isinstance(endpoint, int) or str(endpoint).isdigit():
            return f"{slug_path(workspace)}/endpoints/{int(endpoint)}"
        return f"{slug_path(workspace)}/endpoints/{self.endpoint(workspace, endpoint)['id']}"

    def create_endpoint(self, workspace: str, name: str, description: str = "") -> Endpoint:
        """A new endpoint with two fresh keys and no deployment yet."""
        payload = {"name": name, "description": description}
        return cast(Endpoint, self.call("POST", f"{slug_path(workspace)}/endpoints", json=payload))

    def endpoint_keys(self, workspace: str, endpoint: str | int) -> EndpointKeys:
        """The endpoint's two keys (contributors and admins only)."""
        path = f"{self.endpoint_path(workspace, endpoint)}/keys"
        return cast(EndpointKeys, self.call("GET", path))

    def regenerate_key(self, workspace: str, endpoint: str | int, slot: str) -> EndpointKeys:
        """A new key in `slot` ("primary" or "secondary"); the other keeps working."""
        path = f"{self.endpoint_path(workspace, endpoint)}/keys/{urllib.parse.quote(slot)}"
        return cast(EndpointKeys, self.call("POST", f"{path}/regenerate"))

    def deploy(
        self,
        workspace: str,
        endpoint: str | int,
        name: str,
        model: str | int,
        scoring_script: str,
        vm_size: str,
        *,
        target: str = "managed_cluster",
        environment: str = "",
        min_replicas: int = 1,
        max_replicas: int = 1,
        target_in_flight: int = 4,
        request_timeout_ms: int = 5000,
    ) -> Deployment:
        """A deployment of `model` (name, name:version or id) behind the endpoint, its
        replicas started; the endpoint's first deployment takes all of its traffic."""
        payload = {
            "name": name,
            "model": str(model),
            "scoring_script": scoring_script,
            "target": target,
            "vm_size": vm_size,
            "environment": environment,
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_in_flight": target_in_flight,
            "request_timeout_ms": request_timeout_ms,
        }
        path = f"{self.endpoint_path(workspace, endpoint)}/deployments"
        return cast(Deployment, self.call("POST", path, json=payload))

    def deployment(
        self, workspace: str, endpoint: str | int, name_or_id: str | int
    ) -> tuple[Endpoint, Deployment]:
        """The endpoint and one of its deployments, by name or id."""
        found = self.endpoint(workspace, endpoint)
        for deployment in found["deployments"]:
            if str(name_or_id) in (deployment["name"], str(deployment["id"])):
                return found, deployment
        raise ApiError(
            404, f"Not found: endpoint {found['name']!r} has no deployment {name_or_id!r}."
        )

    def undeploy(self, workspace: str, endpoint: str | int, deployment: str | int) -> None:
        """Remove a deployment (not while it takes traffic beside others); its replicas stop."""
        found, chosen = self.deployment(workspace, endpoint, deployment)
        path = f"{slug_path(workspace)}/endpoints/{found['id']}/deployments/{chosen['id']}"
        self.call("DELETE", path)

    def set_traffic(
        self, workspace: str, endpoint: str | int, shares: Mapping[str, int]
    ) -> Endpoint:
        """Every deployment's percent of the requests, by name ({"blue": 80, "green": 20});
        whole percents adding up to 100."""
        path = f"{self.endpoint_path(workspace, endpoint)}/traffic"
        return cast(Endpoint, self.call("PUT", path, json=dict(shares)))

    def score(
        self,
        workspace: str,
        endpoint: str | int,
        request: Any,
        *,
        deployment: str | None = None,
        key: str | None = None,
        score_url: str | None = None,
        timeout: float = 120.0,
    ) -> Any:
        """Send `request` (JSON) to the endpoint through the scoring gateway and return the
        answer. The key is the endpoint's primary one (from the API; contributors) unless
        `key` is given; `deployment` names one deployment instead of the traffic split;
        `score_url` is the gateway's address when not the one the API says. A refusal of the
        gateway or a failure of the replica raises ScoreError with its words."""
        found = self.endpoint(workspace, endpoint)
        if key is None:
            key = self.endpoint_keys(workspace, found["id"])["primary"]
        url = found["scoring_url"]
        if score_url:
            url = base_url(score_url) + found["scoring_path"]
        parts = urllib.parse.urlsplit(url)
        headers = {
            "Authorization": f"Bearer {key}",
            "User-Agent": f"hangar-cli/{__version__}",
            "Accept": "application/json",
        }
        if deployment:
            headers["X-Hangar-Deployment"] = deployment
        gateway = Http(f"{parts.scheme}://{parts.netloc}", headers, timeout)
        where = shown_url(f"{parts.scheme}://{parts.netloc}")
        try:
            response = gateway.request("POST", parts.path, json=request)
        except ConnectFailed as error:
            raise ScoreError(0, f"cannot reach the gateway at {where}: {error.reason}") from None
        except TimedOut as error:
            raise ScoreError(
                0, f"the gateway at {where} did not answer in time ({error.reason})"
            ) from None
        except TransportError as error:
            raise ScoreError(
                0, f"lost the connection to the gateway at {where}: {error.reason}"
            ) from None
        finally:
            gateway.close()
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success:
            if answer is None and response.content:
                raise ScoreError(response.status_code, "the answer is not JSON")
            return answer
        said = answer if isinstance(answer, dict) else {}
        words = [str(said[k]) for k in ("error", "detail") if said.get(k)]
        detail = ": ".join(words) or response.reason_phrase or "no reason given"
        raise ScoreError(response.status_code, detail, retry_after=retry_after_of(response))

    # Quota ------------------------------------------------------------------------------

    def quota(self, workspace: str) -> dict[str, Any]:
        """Each family's limit, approval and cores in use; the low-priority pool."""
        return cast(dict[str, Any], self.call("GET", f"{slug_path(workspace)}/quota"))

    def what_if(
        self, workspace: str, vm_size: str, count: int = 1, tier: str = "dedicated"
    ) -> dict[str, Any]:
        """Whether `count` nodes of `vm_size` fit now, and why not."""
        params = {"vm_size": vm_size, "count": count, "tier": tier}
        return cast(
            dict[str, Any], self.call("GET", f"{slug_path(workspace)}/quota/what-if", params=params)
        )

    def request_quota(
        self, workspace: str, cores: int, justification: str, family: str | None = None
    ) -> dict[str, Any]:
        """Ask site staff for a higher limit (a family's, or with none the low-priority pool)."""
        payload = {"family": family, "cores": cores, "justification": justification}
        return cast(
            dict[str, Any],
            self.call("POST", f"{slug_path(workspace)}/quota/requests", json=payload),
        )

    def quota_requests(self, workspace: str) -> list[dict[str, Any]]:
        return list(self.pages(f"{slug_path(workspace)}/quota/requests"))

    def job(self, workspace: str, job_id: int) -> Job:
        return cast(Job, self.call("GET", f"{slug_path(workspace)}/jobs/{int(job_id)}"))

    def jobs(
        self,
        workspace: str,
        *,
        status: str | None = None,
        compute: str | int | None = None,
        submitted_by: str | None = None,
        limit: int | None = None,
    ) -> list[Job]:
        """Newest first, every page unless `limit`; `compute` by name or id."""
        params = {
            "status": status,
            "compute": None if compute is None else self.compute_id(workspace, compute),
            "submitted_by": submitted_by,
        }
        return list(self.pages(f"{slug_path(workspace)}/jobs", params, limit))

    def cancel(self, workspace: str, job_id: int) -> Job:
        return cast(Job, self.call("POST", f"{slug_path(workspace)}/jobs/{int(job_id)}/cancel"))

    def job_outputs(self, workspace: str, job_id: int) -> JobOutputs:
        """The files the job wrote under ./outputs, kept when its runs ended (none while
        it runs), and what was not kept, and why."""
        return cast(
            JobOutputs, self.call("GET", f"{slug_path(workspace)}/jobs/{int(job_id)}/outputs")
        )

    def download_job_outputs(
        self, workspace: str, job_id: int, into: IO[bytes], path: str | None = None
    ) -> int:
        """Write one output file (`path`, as listed) or, without one, all of them as a zip
        into `into`; the bytes written (404 when the job kept none, or no such file)."""
        where = f"{slug_path(workspace)}/jobs/{int(job_id)}/outputs"
        if path is None:
            return self.download(f"{where}.zip", into)
        return self.download(f"{where}/{urllib.parse.quote(path)}", into)

    def output(self, workspace: str, job_id: int, rank: int = 0) -> str:
        """The output so far of the job's current attempt (of one rank's node)."""
        response = self.request(
            "GET", f"{slug_path(workspace)}/jobs/{int(job_id)}/output", params={"rank": rank}
        )
        return response.content.decode("utf-8", errors="replace")

    def follow(
        self,
        workspace: str,
        job_id: int,
        offset: int = 0,
        *,
        rank: int = 0,
        on_attempt: Callable[[int], None] | None = None,
    ) -> Follow:
        """The job's output as it is written: iterate for text chunks; once the job has
        finished the iteration stops and `.end` holds its end (also the generator's return
        value). Reconnects from the last offset after a timeout or a dropped connection."""
        return Follow(self, workspace, int(job_id), offset, rank=rank, on_attempt=on_attempt)

    def wait(
        self, workspace: str, job_id: int, timeout: float | None = None, poll: float = 30.0
    ) -> JobEnd:
        """Until the job has finished: its status, exit code and error. The server holds
        each request until the job ends or `poll` seconds pass (long polling), so the end
        is known within tens of milliseconds, with one request per `poll` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        trouble_since: float | None = None
        while True:
            left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            try:
                job = self.call(
                    "GET",
                    f"{slug_path(workspace)}/jobs/{int(job_id)}/wait",
                    params={"timeout": left},
                    timeout=left + 30,
                )
                trouble_since = None
            except ApiError as error:
                if error.status not in (0, 429, 502, 503, 504):
                    raise
                trouble_since = trouble_since or time.monotonic()
                if time.monotonic() - trouble_since > RECONNECT_FOR:
                    raise
                time.sleep(min(error.retry_after or 2.0, THROTTLE_LONGEST_WAIT))
                continue
            if job["status"] in JOB_TERMINAL:
                return {
                    "status": job["status"],
                    "exit_code": job["exit_code"],
                    "error": job["error"],
                }
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout:g} s")

    def events(self, path: str, params: Mapping[str, Any]) -> Iterator[tuple[str, dict]]:
        """The server-sent events of one GET, as (name, data) pairs; ("", {}) for each
        keep-alive comment."""
        data: list[str]
        try:
            with self._http.stream(
                "GET", path, params=params, timeout=FOLLOW_READ_TIMEOUT
            ) as response:
                if not response.is_success:
                    raise error_of(response.read())
                name, data = "message", []  # the event being read, its data lines
                for line in response.lines():
                    if not line:
                        if data:
                            yield name, json.loads("\n".join(data))
                        name, data = "message", []
                        continue
                    if line.startswith(":"):
                        yield "", {}  # a keep-alive comment: the stream is alive
                        continue
                    field, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if field == "event":
                        name = value
                    elif field == "data":
                        data.append(value)
        except TransportError as error:
            raise self.unreachable(error) from None


class Follow:
    """Iterating yields the output's text; afterwards `end` is the job's end."""

    def __init__(
        self,
        client: Client,
        workspace: str,
        job_id: int,
        offset: int = 0,
        *,
        rank: int = 0,
        on_attempt: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.workspace = workspace
        self.job_id = job_id
        self.offset = max(0, offset)
        self.rank = rank
        self.on_attempt = on_attempt
        self.attempt: int | None = None
        self.end: JobEnd | None = None

    def __iter__(self) -> Generator[str, None, JobEnd]:
        return self.run()

    def new_attempt(self, attempt: int) -> None:
        self.attempt, self.offset = attempt, 0  # a retry writes a new log
        if self.on_attempt is not None:
            self.on_attempt(attempt)

    def run(self) -> Generator[str, None, JobEnd]:
        path = f"{slug_path(self.workspace)}/jobs/{self.job_id}/follow"
        self.attempt = self.client.job(self.workspace, self.job_id)["retries"]
        trouble_since: float | None = None
        reconnect = False
        while True:
            try:
                if reconnect:
                    retries = self.client.job(self.workspace, self.job_id)["retries"]
                    if retries != self.attempt:
                        self.new_attempt(retries)
                params = {"offset": self.offset, "rank": self.rank}
                heard = False
                for name, data in self.client.events(path, params):
                    heard, trouble_since = True, None
                    if name == "output":
                        self.offset = int(data.get("offset", self.offset))
                        if data.get("text"):
                            yield str(data["text"])
                    elif name == "attempt":
                        self.new_attempt(int(data.get("attempt", 0)))
                    elif name == "end":
                        self.end = {
                            "status": str(data.get("status", "")),
                            "exit_code": data.get("exit_code"),
                            "error": str(data.get("error") or ""),
                        }
                        return self.end
                    elif name == "timeout":
                        self.offset = int(data.get("offset", self.offset))
                        break
                # A timeout, or a stream cut short without its end: go on from the offset.
                reconnect = True
                if not heard:
                    raise ApiError(0, f"{shown_url(self.client.url)} closed the stream")
            except ApiError as error:
                if error.status not in (0, 429, 502, 503, 504):
                    raise
                trouble_since = trouble_since or time.monotonic()
                if time.monotonic() - trouble_since > RECONNECT_FOR:
                    raise
                reconnect = True
                time.sleep(min(error.retry_after or 1.0, THROTTLE_LONGEST_WAIT))


__all__ = [
    "ApiError",
    "BatchJob",
    "Client",
    "Compute",
    "Deployment",
    "Endpoint",
    "EndpointKeys",
    "Environment",
    "Follow",
    "Image",
    "InvalidInput",
    "Job",
    "JobEnd",
    "Model",
    "ScoreError",
    "Workspace",
]
