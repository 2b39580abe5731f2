"""The Endpoints tab's state, traffic, requests/s and p95 columns and the endpoint page's
last hour, from the gateway's figures and the sweep's series in a real Redis: the
percentile of a histogram, the difference of two readings (a gateway restart between
them included), one Redis round trip for the whole list page, and clear empty states."""

from __future__ import annotations

import math
import re
import time

import pytest
from django.urls import reverse

from compute.controllers.serving import record_series
from compute.inference.models import Deployment
from compute.lib import serving_load
from compute.lib.serving_load import BUCKETS_MS, Counters, between, percentile
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.inference import make_endpoint, make_model

pytestmark = pytest.mark.django_db


def histogram(**counts: int) -> list[int]:
    """Counts by bucket upper bound, e.g. histogram(ms_2=50): 50 requests of 1 to 2 ms."""
    found = [0] * (len(BUCKETS_MS) + 1)
    for name, count in counts.items():
        bound = name.removeprefix("ms_").replace("_", ".")
        index = len(BUCKETS_MS) if bound == "more" else BUCKETS_MS.index(float(bound))
        found[index] = count
    return found


def test_percentiles_of_a_histogram_interpolate_inside_their_bucket():
    # 50 requests of 1-2 ms, 45 of 5-10 ms, 5 of 50-100 ms.
    latency = histogram(ms_2=50, ms_10=45, ms_100=5)
    assert percentile(latency, 0.50) == pytest.approx(2.0)
    assert percentile(latency, 0.95) == pytest.approx(10.0)
    assert percentile(latency, 0.99) == pytest.approx(50 + 50 * 4 / 5)
    # Ten requests of 10-20 ms: the median is halfway through the bucket.
    assert percentile(histogram(ms_20=10), 0.5) == pytest.approx(15.0)
    assert percentile(histogram(), 0.95) is None  # no request, no latency
    assert math.isinf(percentile(histogram(ms_more=3), 0.5))  # past the last bound


def test_two_readings_give_what_happened_between_them_even_across_a_gateway_restart():
    older = Counters(100.0, 40, tuple(histogram(ms_2=40)), since=50.0)
    newer = Counters(160.0, 100, tuple(histogram(ms_2=40, ms_20=60)), since=50.0)
    window = between(older, newer)
    assert (window.requests, window.per_second) == (60, 1.0)
    assert window.percentile(0.5) == pytest.approx(15.0)  # only the new 10-20 ms requests
    # The gateway restarted at 130: its totals count from zero, all inside the window.
    restarted = Counters(160.0, 6, tuple(histogram(ms_5=6)), since=130.0)
    window = between(older, restarted)
    assert (window.requests, window.percentile(0.5)) == (6, pytest.approx(3.5))


@pytest.fixture
def serving_endpoint(team):
    """The team's endpoint `scorer`: blue (80 %) with one replica up, green (20 %) at zero;
    no figures in Redis left by an earlier test."""
    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    for name, share, replicas in (("blue", 80, 1), ("green", 20, 0)):
        deployment = endpoint.deployments.get(name=name)
        compute = ComputeFactory(
            workspace=team.workspace, replica_target=replicas,
            serving={"deployment": deployment.pk, "model": deployment.model_id},
        )  # fmt: skip
        Deployment.objects.filter(pk=deployment.pk).update(compute=compute, traffic=share)
        if replicas:
            NodeFactory(compute=compute, state="idle")
        serving_load.forget(deployment.pk)
    yield endpoint
    for deployment in endpoint.deployments.all():
        serving_load.forget(deployment.pk)


def row_of(page: str, name: str) -> str:
    match = re.search(rf'<tr data-endpoint="{name}">(.*?)</tr>', page, re.S)
    assert match, page
    return match.group(1)


def cell(row: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</td>', row, re.S)
    assert match, row
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def test_the_list_shows_state_traffic_requests_per_second_and_p95_of_the_last_minute(
    client, team, serving_endpoint
):
    blue = serving_endpoint.deployments.get(name="blue").pk
    started = time.time() - 3600
    # A minute and ten seconds ago the gateway had counted 100 requests of blue...
    serving_load.publish({blue: (0, 100, 1.0)}, {blue: histogram(ms_2=100)}, since=started)
    assert record_series(now=time.time() - 70, force=True) == 2
    # ... now 800 (700 since: 600 of 1-2 ms, 100 of 50-100 ms), and 0 of green.
    serving_load.publish(
        {blue: (1, 800, 9.0)}, {blue: histogram(ms_2=700, ms_100=100)}, since=started
    )
    client.force_login(team.reader)
    page = client.get(reverse("inference:endpoints", args=[team.workspace.slug]))
    row = row_of(page.content.decode(), "scorer")
    assert cell(row, "state") == "Serving"
    assert cell(row, "traffic") == "blue 80 · green 20"
    assert float(cell(row, "rate")) == pytest.approx(700 / 70, abs=0.2)
    # p95 of the 700: rank 665, the 65th of the 100 slow ones: 50 + 50 × 65/100 ms.
    assert cell(row, "p95") == f"{50 + 50 * 65 / 100:.0f} ms"


def test_an_endpoint_without_requests_says_so_and_one_without_deployment_too(
    client, team, serving_endpoint
):
    from compute.inference.actions.endpoints import create_endpoint
    from workspace.access import get_access

    create_endpoint(get_access(team.contributor, team.workspace.slug), name="empty")
    record_series(force=True)
    client.force_login(team.reader)
    page = client.get(reverse("inference:endpoints", args=[team.workspace.slug])).content.decode()
    row = row_of(page, "scorer")
    assert cell(row, "no-requests") == "No requests in the last minute"
    empty = row_of(page, "empty")
    assert cell(empty, "state") == "No deployment" and cell(empty, "traffic") == "none"
    # Blue's replica gone and the target at zero: the endpoint is scaled to zero.
    blue = serving_endpoint.deployments.get(name="blue")
    blue.compute.nodes.update(state="leaving")
    type(blue.compute).objects.filter(pk=blue.compute_id).update(replica_target=0)
    page = client.get(reverse("inference:endpoints", args=[team.workspace.slug])).content.decode()
    assert cell(row_of(page, "scorer"), "state") == "Scaled to zero"


class CountingClient:
    """Serving figures' Redis client, counting round trips (a pipeline is one)."""

    def __init__(self, real) -> None:
        self.real, self.trips = real, 0

    def pipeline(self, *args, **kwargs):
        pipe = self.real.pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*a, **k):
            self.trips += 1
            return execute(*a, **k)

        pipe.execute = counted
        return pipe

    def __getattr__(self, name):
        self.trips += 1
        return getattr(self.real, name)


def test_the_list_page_costs_one_redis_round_trip_and_the_same_queries_however_many(
    client, team, serving_endpoint, monkeypatch
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from compute.inference.models import Endpoint

    counting = CountingClient(serving_load.client())
    monkeypatch.setattr(serving_load, "client", lambda: counting)
    client.force_login(team.reader)
    url = reverse("inference:endpoints", args=[team.workspace.slug])

    def cost() -> tuple[int, int]:
        counting.trips = 0
        with CaptureQueriesContext(connection) as queries:
            assert client.get(url).status_code == 200
        return len(queries), counting.trips

    client.get(url)  # the session's first look
    few = cost()
    model = serving_endpoint.deployments.first().model
    for index in range(12):
        Endpoint.objects.filter(name="scorer").update(name=f"more-{index:02}")
        more = make_endpoint(team.workspace, model)
        for deployment in more.deployments.all():
            compute = ComputeFactory(workspace=team.workspace, serving={"deployment": 0})
            Deployment.objects.filter(pk=deployment.pk).update(compute=compute)
            NodeFactory(compute=compute, state="idle")
    assert Endpoint.objects.count() == 13
    many = cost()
    assert few == many and few[1] == 1, (few, many)


def test_the_endpoint_page_charts_its_last_hour_and_links_each_replicas_log(
    client, team, serving_endpoint
):
    blue = serving_endpoint.deployments.get(name="blue")
    now = time.time()
    started = now - 7200
    serving_load.publish({blue.pk: (0, 0, 0.0)}, {blue.pk: histogram()}, since=started)
    record_series(now=now - 20, force=True)
    serving_load.publish(
        {blue.pk: (0, 100, 1.0)}, {blue.pk: histogram(ms_5=50, ms_10=50)}, since=started
    )
    record_series(now=now - 10, force=True)
    client.force_login(team.reader)
    page = client.get(serving_endpoint.get_absolute_url()).content.decode()
    charts = re.findall(r'role="img" aria-label="([^"]*)"', page)
    assert charts == [
        "Requests per second over the last hour; now: requests/s 10",
        "Latency over the last hour; now: p50 5 ms, p95 9.5 ms",
        "Replicas over the last hour; now: replicas up 1",
    ]
    assert 'hx-trigger="every 10s"' in page  # the live part refreshes itself
    node = blue.compute.nodes.get()
    log = reverse("inference:replica-log", args=[team.workspace.slug, serving_endpoint.pk, node.pk])
    assert f'href="{log}"' in page
    # The live part alone, as htmx polls it.
    fragment = client.get(serving_endpoint.get_absolute_url(), headers={"HX-Request": "true"})
    text = fragment.content.decode()
    assert 'id="live"' in text and "Requests per second over the last hour" in text
    assert "<html" not in text and "Keys" not in text


def test_an_endpoint_page_without_figures_says_so(client, team, serving_endpoint):
    client.force_login(team.reader)
    page = client.get(serving_endpoint.get_absolute_url()).content.decode()
    assert "No figures yet" in page and "No requests in the last minute." in page


def test_a_replica_log_is_not_available_without_docker_and_is_the_endpoints_own(
    client, team, serving_endpoint, settings
):
    settings.HANGAR_DRIVER = "noop"
    node = serving_endpoint.deployments.get(name="blue").compute.nodes.get()
    url = reverse("inference:replica-log", args=[team.workspace.slug, serving_endpoint.pk, node.pk])
    client.force_login(team.reader)
    page = client.get(url).content.decode()
    assert "Replica output is not available on the no-op driver." in page
    # A node that is no replica of this endpoint: 404, as for another workspace's.
    other = NodeFactory(compute=ComputeFactory(workspace=team.workspace))
    wrong = reverse(
        "inference:replica-log", args=[team.workspace.slug, serving_endpoint.pk, other.pk]
    )
    assert client.get(wrong).status_code == 404
    client.force_login(team.outsider)
    assert client.get(url).status_code == 404
