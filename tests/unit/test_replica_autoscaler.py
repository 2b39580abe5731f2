"""The replicas' autoscaler: the rule on plain values, then the sweep's step on real Redis
figures (as the gateway publishes them) moving a deployment's replica target, each move an
event with its reason."""

from __future__ import annotations

import pytest

from compute.controllers.serving import autoscale_replicas
from compute.inference.models import Deployment
from compute.inference.rules import Scaling, Traffic, replicas_wanted
from compute.lib import serving_load
from compute.models import Compute, EventVerb, VmSize
from tests.support.factories import ComputeFactory
from tests.support.inference import make_endpoint, make_model

SCALING = Scaling(current=1, low=0, high=4, per_replica=2, down_delay=60, zero_after=300)


def traffic(concurrency: float, since_needed: float = 0, since_request: float = 0) -> Traffic:
    return Traffic(concurrency, concurrency * 10, since_needed, since_request)


@pytest.mark.parametrize(
    "seen, scaling, wanted",
    [
        (traffic(5.0), SCALING, 3),  # up at once: 5 in flight at 2 per replica
        (traffic(50.0), SCALING, 4),  # never above max
        (traffic(0.5, since_needed=30), Scaling(3, 0, 4, 2, 60, 300), 3),  # quiet 30 s < 60
        (traffic(0.5, since_needed=61), Scaling(3, 0, 4, 2, 60, 300), 1),  # then down
        (traffic(0, since_needed=999, since_request=100), SCALING, 1),  # the last one stays
        (traffic(0, since_needed=999, since_request=301), SCALING, 0),  # to zero
        (traffic(0, since_needed=999, since_request=999), Scaling(2, 1, 4, 2, 60, 300), 1),
    ],
)
def test_the_rule(seen, scaling, wanted):
    assert replicas_wanted(seen, scaling)[0] == wanted


@pytest.mark.django_db
def test_the_gateways_figures_move_the_replica_target_with_a_reason(team):
    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    blue = endpoint.deployments.get(name="blue")
    cluster = ComputeFactory(
        workspace=team.workspace, vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        min_nodes=0, max_nodes=4, idle_seconds_before_scaledown=60, replica_target=1,
        serving={"deployment": blue.pk, "model": blue.model_id},
    )  # fmt: skip
    Deployment.objects.filter(pk=blue.pk).update(compute=cluster, target_in_flight=2)
    serving_load.forget(blue.pk)
    serving_load.publish({blue.pk: (1, 100, 10.0)})
    assert autoscale_replicas() == []  # a first reading: 1 in flight needs the one it has
    # Five seconds later, 500 more requests that took 30 s in all: 6 in flight on average.
    later = serving_load.read([blue.pk])[blue.pk]
    serving_load.client().hset(
        serving_load.key(blue.pk),
        mapping={"in_flight": 0, "requests": 600, "busy": 40.0, "at": later.at + 5},
    )
    assert autoscale_replicas(now=later.at + 5) == [cluster.pk]
    assert Compute.objects.get(pk=cluster.pk).replica_target == 3
    event = cluster.events.get(verb=EventVerb.REPLICAS_SCALED)
    assert event.message.startswith("Replicas 1 → 3: 6.0 in flight on average, 100.0 requests/s")
    # Quiet past the delay, and no request past scale-to-zero: down, then to zero.
    assert autoscale_replicas(now=later.at + 70) == [cluster.pk]
    assert Compute.objects.get(pk=cluster.pk).replica_target == 1
    Deployment.objects.filter(pk=blue.pk).update(scale_to_zero_seconds=120)
    assert autoscale_replicas(now=later.at + 200) == [cluster.pk]
    assert Compute.objects.get(pk=cluster.pk).replica_target == 0
    serving_load.forget(blue.pk)
