"""GET /metrics (compute/metrics.py, compute/views/metrics.py) against the real database and
Redis: off unless HANGAR_METRICS_TOKEN is set, then only with that bearer token; the text
parses as Prometheus' format and says what the rows say (computes and nodes by state,
queued jobs, a finished job's run in the histogram, the last sweep, reconcile errors, a
deployment's gateway figures); a scrape's queries stay the same with ten times the rows."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from compute import metrics
from compute.inference.models import Deployment
from compute.lib import health, serving_load
from compute.lib.serving_load import BUCKETS_MS
from compute.models import Event, EventVerb
from tests.support.factories import ComputeFactory, JobFactory, NodeFactory
from tests.support.inference import make_endpoint, make_model

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-please-0123456789"
Samples = dict[tuple[str, frozenset], float]


@pytest.fixture
def metrics_on(settings) -> None:
    settings.HANGAR_METRICS_TOKEN = TOKEN


def scrape(client) -> Samples:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == CONTENT_TYPE_PLAIN_0_0_4
    text = response.content.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_off_unless_a_token_is_set(client, team, settings):
    settings.HANGAR_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 404
    assert client.post("/metrics").status_code == 404
    client.force_login(team.admin)
    assert client.get("/metrics").status_code == 404


def test_with_a_token_set_only_that_bearer_token_is_served(client, team, metrics_on):
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer "}, {"HTTP_AUTHORIZATION": "Bearer x"},
                   {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}x"},
                   {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
                   {"HTTP_AUTHORIZATION": TOKEN}):  # fmt: skip
        response = client.get("/metrics", **header)
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"hangar_" not in response.content
    # A signed-in member's (or staff's) session does not stand in for the token.
    client.force_login(team.admin)
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    # Nor does the session login or CSRF stand in the scraper's way.
    client.logout()
    scrape(client)
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def known_rows(team) -> dict:
    """A known set of rows: what the scrape must say of them."""
    now = timezone.now()
    workspace = team.workspace
    busy = ComputeFactory(workspace=workspace, name="busy")
    ComputeFactory(workspace=workspace, name="quiet")
    ComputeFactory(workspace=workspace, name="box", instance=True)
    ComputeFactory(workspace=workspace, name="off", stopped=True)
    ComputeFactory(workspace=workspace, name="gone", state="deleted")
    broken = ComputeFactory(workspace=workspace, name="broken", state="failed", last_error="x")
    NodeFactory(compute=busy)
    NodeFactory(compute=busy)
    NodeFactory(compute=busy, running=True)
    NodeFactory(compute=busy, preparing=True)
    NodeFactory(compute=busy, state="preempted", ended_at=now)  # history: no gauge
    for _ in range(3):
        JobFactory(compute=busy)
    JobFactory(compute=busy, status="running", running_at=now)
    # Ran 90 s, finished 10 minutes ago: inside the first tally's hour.
    JobFactory(
        compute=busy,
        status="completed",
        queued_at=now - timedelta(minutes=15),
        running_at=now - timedelta(minutes=10, seconds=90),
        finished_at=now - timedelta(minutes=10),
    )
    # Finished three hours ago: before the tally started, never counted.
    JobFactory(
        compute=busy,
        status="failed",
        queued_at=now - timedelta(hours=4),
        running_at=now - timedelta(hours=4),
        finished_at=now - timedelta(hours=3),
    )
    event = Event.objects.create(
        compute=broken, verb=EventVerb.ERRORED, message="engine down", level="error"
    )
    Event.objects.filter(pk=event.pk).update(created_at=now - timedelta(minutes=5))
    # Written this instant: inside TALLY_LAG, counted by a later scrape.
    Event.objects.create(compute=broken, verb=EventVerb.FAILED, message="gave up")
    return {"busy": busy, "broken": broken}


def test_the_scrape_says_what_the_rows_say(client, team, metrics_on):
    known_rows(team)
    health.remember_sweep(health.SweepRun(time.time(), took_ms=250.0, due=7, messages=3))
    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    blue = Deployment.objects.get(endpoint=endpoint, name="blue")
    latency = [0] * (len(BUCKETS_MS) + 1)
    latency[BUCKETS_MS.index(2)] = 60  # 60 requests of 1-2 ms
    latency[BUCKETS_MS.index(20)] = 40  # 40 of 10-20 ms
    serving_load.publish({blue.pk: (2, 100, 1.5)}, {blue.pk: latency}, since=time.time() - 60)

    samples = scrape(client)

    assert value(samples, "hangar_computes", state="steady", kind="cluster") == 2
    assert value(samples, "hangar_computes", state="running", kind="instance") == 1
    assert value(samples, "hangar_computes", state="stopped", kind="instance") == 1
    assert value(samples, "hangar_computes", state="failed", kind="cluster") == 1
    assert value(samples, "hangar_computes", state="deleted", kind="cluster") is None
    assert value(
        samples, "hangar_computes_with_reconcile_error", state="failed", kind="cluster"
    ) == 1  # fmt: skip
    assert value(
        samples, "hangar_computes_with_reconcile_error", state="steady", kind="cluster"
    ) == 0  # fmt: skip
    assert value(samples, "hangar_nodes", state="idle", host="default") == 2
    assert value(samples, "hangar_nodes", state="running", host="default") == 1
    assert value(samples, "hangar_nodes", state="preparing", host="default") == 1
    assert value(samples, "hangar_nodes", state="preempted", host="default") is None
    assert value(samples, "hangar_jobs", status="queued") == 3
    assert value(samples, "hangar_jobs", status="running") == 1
    assert value(samples, "hangar_jobs", status="preparing") == 0

    run = "hangar_job_run_seconds"
    assert value(samples, f"{run}_count", status="completed") == 1
    assert value(samples, f"{run}_sum", status="completed") == pytest.approx(90.0)
    assert value(samples, f"{run}_bucket", status="completed", le="60.0") == 0
    assert value(samples, f"{run}_bucket", status="completed", le="120.0") == 1
    assert value(samples, f"{run}_bucket", status="completed", le="+Inf") == 1
    assert value(samples, f"{run}_count", status="failed") == 0  # 3 h ago: before the tally

    assert value(samples, "hangar_reconcile_errors_total", verb="errored") == 1
    assert value(samples, "hangar_reconcile_errors_total", verb="failed") == 0  # not yet

    assert value(samples, "hangar_sweep_last_duration_seconds") == pytest.approx(0.25)
    assert value(samples, "hangar_sweep_last_due") == 7
    assert value(samples, "hangar_sweep_last_messages") == 3
    assert value(samples, "hangar_metrics_redis_up") == 1

    names = {"workspace": team.workspace.slug, "endpoint": "scorer", "deployment": "blue"}
    assert value(samples, "hangar_gateway_requests_total", **names) == 100
    assert value(samples, "hangar_gateway_in_flight", **names) == 2
    seconds = "hangar_gateway_request_seconds"
    assert value(samples, f"{seconds}_bucket", le="0.001", **names) == 0
    assert value(samples, f"{seconds}_bucket", le="0.002", **names) == 60
    assert value(samples, f"{seconds}_bucket", le="0.01", **names) == 60
    assert value(samples, f"{seconds}_bucket", le="0.02", **names) == 100
    assert value(samples, f"{seconds}_bucket", le="+Inf", **names) == 100
    assert value(samples, f"{seconds}_count", **names) == 100
    assert value(samples, f"{seconds}_sum", **names) == pytest.approx(1.5)
    # Green published nothing (no request since the gateway started): no series for it.
    assert (
        value(samples, "hangar_gateway_requests_total", **{**names, "deployment": "green"}) is None
    )

    # A second scrape adds only what finished since: the same job is not counted twice.
    samples = scrape(client)
    assert value(samples, f"{run}_count", status="completed") == 1
    assert value(samples, "hangar_reconcile_errors_total", verb="errored") == 1


def test_the_tally_counts_a_row_once_when_it_passes_the_lag(client, team, metrics_on, settings):
    rows = known_rows(team)
    assert value(scrape(client), "hangar_reconcile_errors_total", verb="failed") == 0
    # An hour later (the tally's watermark is where the first scrape left it), the "failed"
    # event written then and a job that finished since are counted, each once.
    later = timezone.now() + timedelta(hours=1)
    JobFactory(
        compute=rows["busy"],
        status="canceled",
        queued_at=later - timedelta(minutes=30),
        running_at=later - timedelta(minutes=30),
        finished_at=later - timedelta(minutes=20),
    )
    with time_machine.travel(later, tick=True):
        samples = scrape(client)
        assert value(samples, "hangar_reconcile_errors_total", verb="failed") == 1
        assert value(samples, "hangar_reconcile_errors_total", verb="errored") == 1
        assert value(samples, "hangar_job_run_seconds_count", status="canceled") == 1
        assert value(samples, "hangar_job_run_seconds_sum", status="canceled") == 600
        samples = scrape(client)
        assert value(samples, "hangar_job_run_seconds_count", status="canceled") == 1
        assert value(samples, "hangar_job_run_seconds_count", status="completed") == 1


def many_rows(team, times: int) -> None:
    now = timezone.now()
    for n in range(times):
        compute = ComputeFactory(workspace=team.workspace, name=f"k{times}-{n}")
        NodeFactory(compute=compute)
        NodeFactory(compute=compute, running=True)
        JobFactory(compute=compute)
        JobFactory(
            compute=compute,
            status="completed",
            queued_at=now - timedelta(minutes=20),
            running_at=now - timedelta(minutes=20),
            finished_at=now - timedelta(minutes=10),
        )
        Event.objects.create(compute=compute, verb=EventVerb.ERRORED, message="x")
    endpoint = make_endpoint(team.workspace, make_model(team.workspace, name=f"m{times}"))
    endpoint.name = f"scorer-{times}"
    endpoint.save()


def test_a_scrapes_queries_stay_the_same_with_ten_times_the_rows(client, team, metrics_on):
    many_rows(team, 3)
    with CaptureQueriesContext(connection) as few:
        scrape(client)
    many_rows(team, 30)
    with CaptureQueriesContext(connection) as many:
        samples = scrape(client)
    assert len(many) == len(few) <= 8, [q["sql"] for q in many.captured_queries]
    assert value(samples, "hangar_computes", state="steady", kind="cluster") == 33
    assert value(samples, "hangar_nodes", state="running", host="default") == 33
    assert value(samples, "hangar_jobs", status="queued") == 33


def test_the_host_label_is_read_in_one_place():
    """Nodes on a host say its name; until nodes have hosts, every node is on "default"."""
    field = metrics.node_host_field()
    assert field in (None, "host", "host_id", "host__name")
