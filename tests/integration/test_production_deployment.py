"""README "Production deployment", run as written (issue 20): its commands are read from
the section itself, so the README and this test cannot drift apart.

Against the test PostgreSQL database, with the section's environment (the names of its
`export` block, the values this machine's): migrate and collectstatic, then two gunicorn
web processes, two Celery workers (no embedded beat), exactly one beat and the scoring
gateway. A cluster is created through one web process and a job submitted through the
other, as a script would (a token, HTTP); the job completes with its output, both workers
took tasks, a second beat is refused by the first one's pid file. Everything is stopped in
`finally`; no container and no process is left.

What is not run: the install block (this checkout's `.venv` is that install) and
`build_node_image` (the suite's busybox image, HANGAR_NODE_IMAGE, stands in for the
Debian one: building it takes half a minute of both cores).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import cast

import docker
import pytest
import requests
from cryptography.fernet import Fernet
from django.conf import settings

from compute.drivers.base import LABEL_SITE
from tests.integration.helpers import wait_for
from tests.support.leftovers import remove_all_nodes
from tests.support.teams import make_team
from tests.support.worker import ARTIFACTS, children, database_url
from tests.support.worker_log import read_entries, unexpected_errors
from workspace.tokens import create_token

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    # The section deploys on PostgreSQL (CI's database); five processes sharing one SQLite
    # file is not a production setup.
    pytest.mark.skipif(
        "postgresql" not in settings.DATABASES["default"]["ENGINE"],
        reason="production deployment runs on PostgreSQL (DATABASE_URL=postgres://...)",
    ),
]
ROOT = Path(__file__).resolve().parents[2]
SLUG = "deploy"
# The proxy in front of the web processes says the request came over TLS (BEHIND_TLS_PROXY):
# production settings redirect plain HTTP to HTTPS.
PROXY = {"X-Forwarded-Proto": "https"}
# Celery's "Task hangar.reconcile[<id>] received": a task this worker took (the sweep's own
# lines are DEBUG at INFO level, config/logfilters.py).
TOOK_A_TASK = re.compile(r"Task hangar\.[a-z_]+\[[0-9a-f-]+\] received")


def section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("\n## Production deployment\n", 1)[1].split("\n## ", 1)[0]


def section_lines() -> list[str]:
    """Every command line of the section's shell blocks, without its comment."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section(), re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def command(starts: str) -> str:
    found = [line for line in section_lines() if line.startswith(starts)]
    assert len(found) == 1, f"the section has {len(found)} lines starting {starts!r}"
    return found[0]


def exported_names() -> set[str]:
    return {m[1] for line in section_lines() if (m := re.match(r"export (\w+)=", line))}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def docker_url() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def deployment_environment(data: Path, node_image: str) -> dict[str, str]:
    """The section's variables with this machine's values, in a shell of nothing else (none
    of the suite's own settings: settings_test puts HANGAR_DRIVER=local and more into this
    process's environment)."""
    section_values = {
        "DJANGO_SETTINGS_MODULE": "config.settings_production",
        "DATABASE_URL": database_url(),  # the test database pytest-django made
        "REDIS_URL": settings.REDIS_URL,
        "HANGAR_SITE": settings.HANGAR_SITE,  # the suite's leftover checks see its containers
        "SECRET_KEY": secrets.token_urlsafe(50),
        "HANGAR_SECRET_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "127.0.0.1",
        "CSRF_TRUSTED_ORIGINS": "https://127.0.0.1",
        "BEHIND_TLS_PROXY": "true",
        "HANGAR_BASE_URL": "https://127.0.0.1",
        "HANGAR_DRIVER": "docker",
        "HANGAR_DOCKER_URL": docker_url(),
        "HANGAR_LOCAL_DIR": str(data),
    }
    # Every variable the section exports, and only those, is given a value here.
    assert set(section_values) == exported_names()
    keep = ("HOME", "LANG", "LC_ALL", "USER", "LOGNAME", "TMPDIR")
    return {
        **{name: os.environ[name] for name in keep if name in os.environ},
        # `source .venv/bin/activate`, as the install block ends.
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
        "VIRTUAL_ENV": str(ROOT / ".venv"),
        **section_values,
        # This run's own, so it never meets another run on the same Redis and engine.
        "CELERY_QUEUE": f"hangar-deploy-{uuid.uuid4().hex[:8]}",
        "HANGAR_CACHE_PREFIX": f"{settings.HANGAR_SITE}-deploy-{uuid.uuid4().hex[:8]}",
        "HANGAR_NODE_IMAGE": node_image,
        "PYTHONUNBUFFERED": "1",  # log lines as they are written
    }


def start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except OSError:
        return None


@dataclass
class Deployment:
    """The processes of the section, each in a process group of its own, logging under
    test-artifacts/."""

    environment: dict[str, str]
    started: dict[str, subprocess.Popen] = field(default_factory=dict)
    seen: dict[int, str] = field(default_factory=dict)  # every pid under them, with start time

    def log(self, name: str) -> Path:
        return ARTIFACTS / f"deploy-{self.environment['CELERY_QUEUE']}-{name}.log"

    def run(self, line: str, timeout: float = 60) -> str:
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=ROOT,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, name: str, line: str, **extra: str) -> subprocess.Popen:
        ARTIFACTS.mkdir(exist_ok=True)
        with open(self.log(name), "wb") as log:
            process = subprocess.Popen(
                ["bash", "-c", f"exec {line}"],
                cwd=ROOT,
                env={**self.environment, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started[name] = process
        return process

    def log_text(self, name: str) -> str:
        try:
            return self.log(name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def logged(self, name: str, what: str | re.Pattern[str]) -> bool:
        text = self.log_text(name)
        return what in text if isinstance(what, str) else bool(what.search(text))

    def note_descendants(self) -> None:
        todo = [p.pid for p in self.started.values() if p.poll() is None]
        while todo:
            pid = todo.pop()
            if (started := start_time(pid)) is not None:
                self.seen[pid] = started
                todo.extend(children(pid))

    def still_running(self) -> list[int]:
        return [pid for pid, started in self.seen.items() if start_time(pid) == started]

    def stop(self) -> None:
        """SIGTERM to each group, as systemd would; KILL what is still there after 20 s."""
        self.note_descendants()
        for process in self.started.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.started.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        try:
            wait_for(lambda: not self.still_running(), timeout=10, what="their children")
        finally:
            for pid in self.still_running():  # only what they started, by pid and start
                os.kill(pid, signal.SIGKILL)


def api(port: int) -> str:
    return f"http://127.0.0.1:{port}/api/v1/workspaces/{SLUG}"


def answers(port: int, token: str) -> bool:
    try:
        response = requests.get(
            f"http://127.0.0.1:{port}/api/v1/workspaces",
            headers={"Authorization": f"Bearer {token}", **PROXY},
            timeout=5,
        )
    except requests.RequestException:  # not listening yet, or its workers still loading
        return False
    return response.status_code == 200


def healthy(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def site_containers() -> list:
    """The site's containers as the engine lists them (no look at each one after: a
    container removed in between would make that look fail)."""
    client = docker.DockerClient(base_url=docker_url())
    try:
        return client.api.containers(
            all=True, filters={"label": f"{LABEL_SITE}={settings.HANGAR_SITE}"}
        )
    finally:
        client.close()


@pytest.fixture
def deployment(tmp_path: Path, node_image: str) -> Iterator[Deployment]:
    running = Deployment(deployment_environment(tmp_path / "data", node_image))
    try:
        yield running
    finally:
        try:
            running.stop()
        finally:
            remove_all_nodes()
    assert site_containers() == []


def test_the_production_section_runs_a_cluster_job_through_two_web_processes(deployment):
    started = time.monotonic()
    team = make_team(SLUG)
    token = create_token(team.admin, name="deployment test", expires_in_days=1).secret
    headers = {"Authorization": f"Bearer {token}", **PROXY}

    # Once per release.
    deployment.run(command("python manage.py migrate"))
    deployment.run(command("python manage.py collectstatic"))
    data = Path(deployment.environment["HANGAR_LOCAL_DIR"])
    assert (data / "staticfiles" / "staticfiles.json").exists()  # WhiteNoise's manifest

    # The processes: two web, two workers (no embedded beat), one beat, the gateway.
    web = [free_port(), free_port()]
    for number, port in enumerate(web, 1):
        deployment.start(f"web{number}", command("gunicorn "), HANGAR_PORT=str(port))
    worker = command("celery -A config worker")
    assert " -B" not in worker and "--beat" not in worker
    second = worker.replace("--hostname=hangar-worker@", "--hostname=hangar-worker2@")
    assert second != worker and "hangar-worker2@%h" in section()  # the variant it names
    deployment.start("worker1", worker)
    deployment.start("worker2", second)
    beat = command("celery -A config beat")
    deployment.start("beat", beat)
    gateway_port = free_port()
    gateway = command("uvicorn compute.inference.gateway")
    deployment.start("gateway", gateway, HANGAR_GATEWAY_PORT=str(gateway_port))

    for port in web:
        wait_for(partial(answers, port, token), timeout=30, what=f"gunicorn on {port}")
    for name in ("worker1", "worker2"):
        wait_for(partial(deployment.logged, name, " ready."), timeout=30, what=name)
    wait_for(partial(healthy, gateway_port), timeout=20, what="the gateway")
    # The pages too: their static files come from collectstatic, through WhiteNoise.
    login = requests.get(f"http://127.0.0.1:{web[0]}/login/", headers=PROXY, timeout=5)
    assert login.status_code == 200
    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', login.text)
    assert stylesheet, login.text[:500]
    css = requests.get(f"http://127.0.0.1:{web[1]}{stylesheet[1]}", headers=PROXY, timeout=5)
    assert css.status_code == 200

    # Exactly one beat: one process, and the README's command again is refused by its
    # pid file on this machine.
    beat_process = deployment.started["beat"]
    pidfile = data / "celerybeat.pid"
    wait_for(pidfile.exists, timeout=30, what="beat's pid file")
    assert int(pidfile.read_text().strip()) == beat_process.pid
    assert children(beat_process.pid) == []
    refused = subprocess.run(
        ["bash", "-c", beat], cwd=ROOT, env=deployment.environment,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "already exists" in refused.stdout + refused.stderr, refused.stderr

    # A cluster through web process 1, a job through web process 2.
    made = requests.post(
        f"{api(web[0])}/computes/clusters",
        json={
            "name": "trainers",
            "vm_size": "Standard_DS3_v2",
            "min_nodes": 0,
            "max_nodes": 1,
            "idle_seconds_before_scaledown": 1,
        },
        headers=headers,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    cluster = made.json()
    submitted = requests.post(
        f"{api(web[1])}/jobs",
        data={"compute": "trainers", "command": "echo started; echo deployed > out; cat out"},
        headers=headers,
        timeout=10,
    )
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()

    def ended() -> dict | None:
        waited = requests.get(
            f"{api(web[1])}/jobs/{job['id']}/wait",
            params={"timeout": 5},
            headers=headers,
            timeout=15,
        )
        assert waited.status_code == 200, waited.text
        shown = waited.json()
        return shown if shown["status"] in ("completed", "failed", "canceled") else None

    end = cast(dict, wait_for(ended, timeout=40, what="the job"))
    assert (end["status"], end["exit_code"]) == ("completed", 0), end
    output = requests.get(f"{api(web[0])}/jobs/{job['id']}/output", headers=headers, timeout=10)
    assert output.status_code == 200
    assert output.text == "started\ndeployed\n"

    # Both workers took tasks (the cluster's reconciles, the job's launch and collection).
    deleted = requests.delete(
        f"{api(web[0])}/computes/{cluster['id']}", headers=headers, timeout=10
    )
    assert deleted.status_code == 202, deleted.text
    wait_for(lambda: site_containers() == [], timeout=20, what="the cluster's node removed")
    for name in ("worker1", "worker2"):
        wait_for(partial(deployment.logged, name, TOOK_A_TASK), timeout=15, what=f"{name}'s task")
        problems = unexpected_errors(read_entries(deployment.log(name)), [])
        assert problems == [], problems
    assert unexpected_errors(read_entries(deployment.log("beat")), []) == []
    for name in ("web1", "web2", "gateway"):
        text = deployment.log_text(name)
        assert "Traceback" not in text and "[ERROR]" not in text and "ERROR:" not in text, text
    assert time.monotonic() - started < 60
