"""What the endpoint pages show, on real parts: requests sent through the real gateway
process (in front of real scoring servers) appear in the Endpoints tab as requests per
second and a p95, and in the endpoint page's chart, once the sweep's step has written
its points; the gateway stops publishing a removed deployment's figures; a replica's
log page shows what its container printed, cleaned, capped, and only to its workspace."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from compute.controllers.serving import record_series
from compute.drivers import NodeSpec, build_driver
from compute.inference.actions.endpoints import create_endpoint
from compute.inference.models import Deployment
from compute.lib import secrets, serving_load
from compute.models import NodeState, VmSize
from tests.integration.helpers import wait_for
from tests.integration.test_gateway import post
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.gateway import Processes
from tests.support.inference import make_model
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SCRIPT = """
import json, time


def init():
    pass


def run(request_json):
    time.sleep(json.loads(request_json).get("sleep", 0))
    return {"ok": True}
"""


@pytest.fixture
def processes() -> Iterator[Processes]:
    started = Processes()
    yield started
    started.stop()


@pytest.fixture
def served(catalog, tmp_path):
    """Endpoint `flowers` of workspace `figs`: blue (100 %) and green, one replica row each
    (the test starts the scoring servers it needs), no figures left in Redis."""
    team = make_team("figs")
    access = get_access(team.contributor, team.workspace.slug)
    endpoint = create_endpoint(access, name="flowers")
    model = make_model(team.workspace)
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    nodes = {}
    for name, share in (("blue", 100), ("green", 0)):
        compute = ComputeFactory(workspace=team.workspace, serving={"deployment": 0, "model": 0})
        deployment = Deployment.objects.create(
            endpoint=endpoint, name=name, model=model, scoring_script=SCRIPT, traffic=share,
            target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            compute=compute, request_timeout_ms=5000,
        )  # fmt: skip
        nodes[name] = NodeFactory(compute=compute, state=NodeState.IDLE)
        serving_load.forget(deployment.pk)
    yield {
        "team": team,
        "endpoint": endpoint,
        "script": script,
        "nodes": nodes,
        "key": secrets.decrypt(endpoint.primary_key),
    }
    for deployment in Deployment.objects.all():
        serving_load.forget(deployment.pk)


def test_requests_through_the_gateway_show_in_the_list_and_the_endpoint_chart(
    client, processes, served
):
    team, endpoint = served["team"], served["endpoint"]
    processes.replica(served["nodes"]["blue"], served["script"])
    url = processes.gateway() + endpoint.scoring_path
    client.force_login(team.reader)
    listing = reverse("inference:endpoints", args=[team.workspace.slug])
    record_series(force=True)  # the sweep's point before any request
    assert "No requests in the last minute" in client.get(listing).content.decode()

    for _ in range(30):
        assert post(url, {"sleep": 0.01}, served["key"])[0] == 200
    blue = Deployment.objects.get(endpoint=endpoint, name="blue").pk
    wait_for(
        lambda: serving_load.read([blue]).get(blue, serving_load.Load(0, 0, 0, 0)).requests == 30,
        timeout=5,
        what="the gateway's figures published",
    )
    page = client.get(listing).content.decode()
    rate = re.search(r'data-testid="rate">([\d.]+)<', page)
    p95 = re.search(r'data-testid="p95">([^<]+)<', page)
    assert rate and float(rate.group(1)) > 0, page
    # Requests that sleep 10 ms: their p95 is in the 10-20 ms bucket (or above, on a busy
    # machine), never under 10 ms.
    assert p95 and p95.group(1).endswith(" ms"), page
    assert p95.group(1).startswith(">") or float(p95.group(1).split()[0]) >= 10, p95.group(1)
    assert 'data-testid="state"><span class="badge text-bg-success">Serving' in page

    record_series(force=True)  # the sweep's next point: the chart has an interval
    detail = client.get(endpoint.get_absolute_url()).content.decode()
    charts = re.findall(r'role="img" aria-label="([^"]*)"', detail)
    assert len(charts) == 3, detail
    assert not charts[0].endswith("requests/s 0"), charts
    assert "p95 none" not in charts[1], charts
    assert charts[2].endswith("replicas up 2"), charts  # blue's and green's


def test_the_gateway_stops_publishing_a_removed_deployments_figures(processes, served):
    endpoint = served["endpoint"]
    processes.replica(served["nodes"]["green"], served["script"])
    url = processes.gateway() + endpoint.scoring_path
    green = Deployment.objects.get(endpoint=endpoint, name="green")
    assert post(url, {}, served["key"], **{"X-Hangar-Deployment": "green"})[0] == 200
    green_id, name = green.pk, serving_load.key(green.pk)
    wait_for(lambda: serving_load.client().exists(name), timeout=5, what="green's figures")
    green.delete()  # the gateway's routes lose it at its next refresh (0.1 s here)
    time.sleep(0.5)
    serving_load.forget(green_id)
    time.sleep(1)  # ten refreshes: a gateway that kept it would have published it again
    assert not serving_load.client().exists(name)


def test_a_replicas_log_page_shows_its_containers_output_cleaned_and_capped(
    client, catalog, node_image, settings
):
    settings.HANGAR_DRIVER = "docker"
    team = make_team("logs")
    endpoint = create_endpoint(get_access(team.contributor, team.workspace.slug), name="flowers")
    compute = ComputeFactory(workspace=team.workspace, serving={"deployment": 0, "model": 0})
    Deployment.objects.create(
        endpoint=endpoint, name="blue", model=make_model(team.workspace), scoring_script=SCRIPT,
        target="managed_cluster", vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        compute=compute, traffic=100,
    )  # fmt: skip
    node = NodeFactory(compute=compute, state=NodeState.IDLE)
    # What a hostile scoring script may print: much (past the page's cap), terminal escapes,
    # HTML, control characters; on stdout and stderr.
    script = (
        "i=0; while [ $i -lt 2000 ]; do echo \"filler $i $(printf '%060d' 0)\"; i=$((i+1)); done;"
        " printf '\\033[31mred\\033[0m <script>alert(1)</script> bell\\007 nul\\001\\n';"
        # Apart in time: Docker copies stdout and stderr separately, so lines written
        # together (stdout's backlog of filler and a stderr line) keep no order between
        # the streams.
        " sleep 0.5; echo 'score-server: on stderr' >&2; sleep 0.5; echo 'the last line';"
        " exec sleep 300"
    )
    driver = build_driver("docker", django_settings.HANGAR_SITE)
    spec = NodeSpec(
        site=django_settings.HANGAR_SITE, workspace=team.workspace.slug, compute_id=compute.pk,
        node_id=node.pk, node_name=node.name, image=node_image, cpus=0.2,
        memory_bytes=64 * 1024 * 1024, network="none", command=("sh", "-c", script),
    )  # fmt: skip
    try:
        driver.ensure_node(spec)
        wait_for(
            lambda: b"the last line" in driver.node_log(spec.container_name, 4096).output,
            timeout=30,
            what="the replica's output",
        )
        url = reverse("inference:replica-log", args=[team.workspace.slug, endpoint.pk, node.pk])
        client.force_login(team.reader)
        page = client.get(url).content.decode()
        shown = re.search(r'data-testid="replica-log"[^>]*>(.*?)</pre>', page, re.S)
        assert shown, page
        text = shown.group(1)
        # stdout and stderr interleaved as they came; the newest last.
        assert text.rstrip().splitlines()[-2:] == ["score-server: on stderr", "the last line"]
        assert "red &lt;script&gt;alert(1)&lt;/script&gt; bell nul" in text
        assert "<script>" not in page and "\x1b" not in page and "\x07" not in page
        assert len(text.encode()) <= 64 * 1024 + 100  # the cap (and a little for escaping)
        assert "filler 1999" in text and "filler 0 " not in text
        assert "Earlier output is not shown." in page
        # The endpoint page links it; another workspace's member finds nothing.
        assert f'href="{url}"' in client.get(endpoint.get_absolute_url()).content.decode()
        client.force_login(team.outsider)
        assert client.get(url).status_code == 404
    finally:
        driver.remove_node(spec.container_name)
    client.force_login(team.reader)
    gone = client.get(url).content.decode()
    assert "The replica&#x27;s container is gone" in gone
