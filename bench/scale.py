"""Team-scale figures (issue 16): every page and admin changelist at a team's years of
data, p50/p95 and SQL queries each, against the goal of p95 ≤ 50 ms.

The data is bench/scale_data.py's (PostgreSQL only). The pages are requested in this
process through Django's test client with DEBUG off, as a member of the busiest
workspace (the user pages) and as site staff (the admin). Then the memory of a real web
server and a real Celery worker (two pool children) that served and swept that data.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.contrib import admin
from django.db import connection
from django.template import Template
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from bench.jobs import percentile
from bench.scale_data import PASSWORD, Focus, generate, scale_from_environment
from tests.support.worker import process_environment

GOAL_MS = 50.0
RUNS = int(os.environ.get("HANGAR_BENCH_RUNS", "40"))
ROOT = Path(__file__).resolve().parent.parent
HTMX = {"HTTP_HX_REQUEST": "true"}


class Timer:
    """Times GETs and prints one line each; remembers the pages over the goal."""

    def __init__(self, client: Client, goal_ms: float = GOAL_MS) -> None:
        self.client = client
        self.goal_ms = goal_ms
        self.over: list[str] = []

    def page(self, label: str, url: str, **extra: str) -> None:
        def get() -> None:
            response = self.client.get(url, **extra)
            # 286: htmx's "stop polling" (the page has nothing changing), a full answer.
            if response.status_code not in (200, 286):
                raise SystemExit(f"{label}: {url} answered {response.status_code}")

        get()  # warm
        connection.queries_log.clear()  # a full log (9,000 entries) counts nothing new
        with CaptureQueriesContext(connection) as captured:
            get()
        # Read now: the next request's start clears the log the capture slices.
        queries = len(captured)
        timings, cpu = [], []
        for _ in range(RUNS):
            started, started_cpu = time.perf_counter(), time.process_time()
            get()
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        p95 = percentile(timings, 0.95)
        mark = "ok" if p95 <= self.goal_ms else "OVER"
        if p95 > self.goal_ms:
            self.over.append(label)
        print(
            f"  {label:<46} p50={statistics.median(timings):7.1f} ms  p95={p95:7.1f} ms  "
            f"cpu p50={statistics.median(cpu):6.1f} ms  queries={queries:<3} {mark}"
        )


def user_pages(timer: Timer, focus: Focus) -> None:
    slug = focus.slug
    w = f"/w/{slug}"
    pages: list[tuple[str, str, dict[str, str]]] = [
        ("home", "/", {}),
        ("workspace list", "/w/", {}),
        ("workspace overview", f"{w}/", {}),
        ("activity", f"{w}/activity/", {}),
        ("members", f"{w}/members/", {}),
        ("settings", f"{w}/settings/", {}),
        ("compute list, instances", f"{w}/compute/?tab=instances", {}),
        ("compute list, clusters", f"{w}/compute/?tab=clusters", {}),
        ("compute list, clusters (htmx poll)", f"{w}/compute/?tab=clusters", HTMX),
        ("compute list, clusters page 3", f"{w}/compute/?tab=clusters&page=3", {}),
        ("compute list, attached", f"{w}/compute/?tab=attached", {}),
        ("busy cluster detail", f"{w}/compute/{focus.busy_cluster}/", {}),
        ("busy cluster detail (htmx poll)", f"{w}/compute/{focus.busy_cluster}/", HTMX),
        ("instance detail", f"{w}/compute/{focus.instance}/", {}),
        ("instance idle settings", f"{w}/compute/{focus.instance}/idle/", {}),
        ("attached detail", f"{w}/compute/{focus.attached}/", {}),
        ("what is running (burning)", f"{w}/compute/burning/", {}),
        ("create instance form", f"{w}/compute/new/instance/", {}),
        ("create cluster form", f"{w}/compute/new/cluster/", {}),
        ("job list", f"{w}/jobs/", {}),
        ("job list, page 100", f"{w}/jobs/?page=100", {}),
        ("job list, filtered by busy cluster", f"{w}/jobs/?compute={focus.busy_cluster}", {}),
        ("job detail", f"{w}/jobs/{focus.job}/", {}),
        ("submit job form", f"{w}/jobs/new/", {}),
        ("quota", f"{w}/quota/", {}),
        ("notifications", "/notifications/", {}),
        ("invitations", "/invitations/", {}),
        ("catalog", "/catalog/", {}),
    ]
    for label, url, extra in pages:
        timer.page(label, url, **extra)


def admin_pages(timer: Timer, focus: Focus) -> None:
    for model in sorted(admin.site._registry, key=lambda m: m._meta.label):
        meta = model._meta
        timer.page(
            f"admin {meta.app_label}.{meta.model_name} list",
            reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"),
        )
    timer.page(
        "admin busy cluster change page",
        reverse("admin:compute_compute_change", args=[focus.busy_cluster]),
    )
    timer.page(
        "admin quota request change page",
        reverse("admin:compute_quotarequest_change", args=[focus.quota_request]),
    )


def memory_mb(pid: int, key: str) -> float:
    """A process's memory in MB from /proc: `Rss` (resident, shared pages counted in full)
    or `Pss` (shared pages divided among the processes sharing them)."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def family_memory(pid: int) -> str:
    """RSS and PSS of a process and its children. A prefork worker's children share the
    parent's pages until they write them: RSS counts those pages once per process, PSS
    once in all, so the PSS sum is what the processes take together."""
    from tests.support.worker import children

    pids = [pid, *children(pid)]
    rss = sum(memory_mb(p, "Rss") for p in pids)
    pss = sum(memory_mb(p, "Pss") for p in pids)
    return (
        f"RSS {rss:6.1f} MB, PSS {pss:6.1f} MB ({len(pids)} process{'es' if len(pids) > 1 else ''})"
    )


def web_memory(focus: Focus, urls: list[str]) -> None:
    """A real web server as `make run` starts it (the Procfile's runserver, without the
    autoreloader's second process) after serving the heaviest pages: its resident memory."""
    port = 8790
    environment = {
        **process_environment("hangar-bench-scale", "noop", {}),
        "HANGAR_PORT": str(port),
    }
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        opener = login_opener(port, focus.username)
        for url in urls:
            opener.open(f"http://127.0.0.1:{port}{url}", timeout=30).read()
        label = "web server after the heaviest pages"
        print(f"  {label:<46} {family_memory(server.pid)}; goal ≤ 120 MB")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def login_opener(port: int, username: str) -> urllib.request.OpenerDirector:
    import http.cookiejar
    import re
    import urllib.parse

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            page = opener.open(f"{base}/login/", timeout=5).read().decode()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, "no CSRF token on the login page"
    data = urllib.parse.urlencode(
        {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
    ).encode()
    opener.open(f"{base}/login/", data=data, timeout=10).read()
    return opener


def sweep_time() -> None:
    from compute.controllers.sweep import sweep

    timings = []
    for _ in range(5):
        started = time.perf_counter()
        due = sweep().due
        timings.append((time.perf_counter() - started) * 1000)
    label = "sweep() at this scale (in process)"
    print(f"  {label:<46} p50={statistics.median(timings):7.1f} ms  ({len(due)} due)")


def wait_idle(app, queue: str, worker: subprocess.Popen) -> None:
    """Until the queue is empty and the worker runs nothing (reconciles included)."""
    deadline = time.monotonic() + 300
    with app.connection_for_write() as conn:
        while time.monotonic() < deadline and worker.poll() is None:
            queued = conn.default_channel.client.llen(queue)
            active = app.control.inspect(destination=["bench-scale@localhost"], timeout=1).active()
            if not queued and active and not any(active.values()):
                return
            time.sleep(1)
    raise SystemExit("bench scale: the worker did not finish its sweeps in 300 s")


def worker_memory() -> None:
    """A real worker as the Procfile starts it (prefork, two pool children) after a few
    sweeps over the whole data: the resident memory of all its processes."""
    from config.celery import app

    queue = "hangar-bench-scale"
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency=2",
            f"--queues={queue}", "--hostname=bench-scale@localhost", "--loglevel=WARNING",
            "--without-gossip", "--without-mingle",
        ],
        cwd=ROOT,
        env=process_environment(queue, "noop", {}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=["bench-scale@localhost"], timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("bench scale: the worker did not start")
        for _ in range(3):
            app.send_task("hangar.sweep", queue=queue)
        wait_idle(app, queue, worker)
        label = "worker after 3 sweeps, all processes"
        print(f"  {label:<46} {family_memory(worker.pid)}; goal ≤ 300 MB")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)


@contextmanager
def as_served() -> Iterator[None]:
    """Pages render as a server renders them: `python -m bench` runs under
    setup_test_environment, which wraps every template render to hand its context to the
    test client (a large share of a page), and DEBUG stays as the environment says."""
    from django.test import utils

    saved = getattr(utils._TestState, "saved_data", None)
    plain = getattr(saved, "template_render", None)
    instrumented = Template._render
    if plain is not None:
        Template._render = plain  # type: ignore[method-assign]
    try:
        with override_settings(DEBUG=False):
            yield
    finally:
        Template._render = instrumented  # type: ignore[method-assign]


def run() -> None:
    focus = generate(scale_from_environment())
    with as_served():
        time_pages(focus)
    print("memory:")
    web_memory(focus, ["/", f"/w/{focus.slug}/compute/?tab=clusters", f"/w/{focus.slug}/jobs/"])
    sweep_time()
    worker_memory()


def time_pages(focus: Focus) -> None:
    client = Client()
    assert client.login(username=focus.username, password=PASSWORD)
    timer = Timer(client)
    print(f"user pages as {focus.username} (admin of the busiest workspace), {RUNS} runs each:")
    user_pages(timer, focus)
    staff = Client()
    assert staff.login(username=focus.staff_username, password=PASSWORD)
    staff_timer = Timer(staff)
    print("admin pages as site staff:")
    admin_pages(staff_timer, focus)
    over = timer.over + staff_timer.over
    print(f"over {GOAL_MS:.0f} ms p95: {', '.join(over) if over else 'none'}")
    api_lists(focus)


API_GOAL_MS = 30.0


def api_lists(focus: Focus) -> None:
    """The API's lists (issue 17's goal: p95 ≤ 30 ms, a query count that does not grow),
    called with a personal access token as a script calls them."""
    from django.contrib.auth.models import User

    from workspace.tokens import create_token

    user = User.objects.get(username=focus.username)
    secret = create_token(user, name="bench", expires_in_days=1).secret
    timer = Timer(Client(headers={"Authorization": f"Bearer {secret}"}), API_GOAL_MS)
    w = f"/api/v1/workspaces/{focus.slug}"
    print(f"API lists with a token, {RUNS} runs each (goal p95 ≤ {API_GOAL_MS:.0f} ms):")
    for label, url in (
        ("API computes", f"{w}/computes"),
        ("API clusters", f"{w}/computes?kind=cluster"),
        ("API jobs", f"{w}/jobs"),
        ("API jobs of the busy cluster", f"{w}/jobs?compute={focus.busy_cluster}"),
        ("API completed jobs", f"{w}/jobs?status=completed"),
        ("API events of the busy cluster", f"{w}/computes/{focus.busy_cluster}/events"),
    ):
        timer.page(label, url)
    print(f"over {API_GOAL_MS:.0f} ms p95: {', '.join(timer.over) if timer.over else 'none'}")
