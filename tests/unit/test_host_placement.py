"""Placement's choices on node hosts, as rows (no engine needed): a GPU size only where
GPUs are free, binpack against a workspace's spread, a serving or batch node only on a host
on this machine, a host not yet measured never picked."""

from __future__ import annotations

import pytest
from django.db import transaction

from compute.controllers import hosts
from compute.models import Compute, Node, NodeHost, VmSize
from tests.support.factories import ComputeFactory

pytestmark = pytest.mark.django_db


def host(name: str, **fields) -> NodeHost:
    values = {"cpus_override": 8, "memory_gib_override": 64, "docker_url": "unix:///x", **fields}
    return NodeHost.objects.create(name=name, **values)


def place(compute: Compute) -> hosts.Placed:
    node = Node.objects.create(
        compute=compute, index=Node.objects.filter(compute=compute).count() + 1
    )
    with transaction.atomic():
        return hosts.place(Compute.objects.get(pk=compute.pk), node)


def test_a_gpu_size_goes_only_where_gpus_are_free_and_waits_when_none_are(team):
    host("cpu-box")
    host("gpu-box", gpus_override=1)
    gpu = VmSize.objects.filter(gpus=1).order_by("vcpus").first()
    assert gpu is not None
    pool = ComputeFactory(workspace=team.workspace, vm_size=gpu, max_nodes=3)
    assert place(pool).host.name == "gpu-box"
    waits = place(pool)  # its one GPU is taken
    assert waits.host is None and f"{hosts.WAITS}" in waits.why and "1 GPU(s)" in waits.why


def test_binpack_fills_the_fullest_host_and_spread_the_emptiest(team):
    host("a-box")
    host("b-box", cpus_override=16)
    pool = ComputeFactory(workspace=team.workspace, max_nodes=4)
    assert [place(pool).host.name for _ in range(2)] == ["a-box", "a-box"]
    team.workspace.node_placement = "spread"
    team.workspace.save()
    assert place(pool).host.name == "b-box"


def test_serving_and_batch_nodes_go_only_to_this_machines_engine(team):
    host("remote-box")
    host("here", on_this_machine=True)
    replicas = ComputeFactory(workspace=team.workspace, serving={"deployment": 1, "model": 1})
    batch = ComputeFactory(workspace=team.workspace, serving={"batch": 1, "model": 1})
    assert place(replicas).host.name == "here"
    assert place(batch).host.name == "here"


def test_a_host_whose_capacity_is_not_read_yet_is_never_picked(team):
    NodeHost.objects.create(name="new-box", docker_url="unix:///x")
    waits = place(ComputeFactory(workspace=team.workspace))
    assert waits.host is None and "new-box: capacity not read yet" in waits.why
