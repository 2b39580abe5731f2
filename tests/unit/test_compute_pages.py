"""Compute pages and actions without a worker: access, bad input, impossible actions."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.actions import computes as actions
from compute.models import Compute, ComputeKind, ComputeState, Event, Node, VmFamily, VmSize
from workspace.access import get_access

pytestmark = pytest.mark.django_db
S = ComputeState


@pytest.fixture
def size() -> VmSize:
    return VmSize.objects.get(name="Standard_DS3_v2")


@pytest.fixture
def instance(team, size, django_capture_on_commit_callbacks) -> Compute:
    with django_capture_on_commit_callbacks():  # the worker is not part of these tests
        return actions.create_instance(
            get_access(team.admin, team.workspace.slug), name="box-1", vm_size=size
        )


def url(team, name: str, *args) -> str:
    return reverse(f"compute:{name}", args=[team.workspace.slug, *args])


def compute_urls(team, compute: Compute) -> dict[str, tuple[str, str]]:
    return {
        "list": ("get", url(team, "list")),
        "detail": ("get", url(team, "detail", compute.pk)),
        "new-instance": ("get", url(team, "create", "instance")),
        "new-cluster": ("get", url(team, "create", "cluster")),
        "stop": ("post", url(team, "action", compute.pk, "stop")),
        "delete": ("post", url(team, "action", compute.pk, "delete")),
    }


def test_outsider_gets_404_on_every_compute_url(client, team, instance):
    client.force_login(team.outsider)
    for name, (method, address) in compute_urls(team, instance).items():
        assert getattr(client, method)(address).status_code == 404, name
    assert Compute.objects.get(pk=instance.pk).state == S.CREATING


def test_a_compute_of_another_workspace_is_404_under_mine(client, team, instance):
    from tests.conftest import make_team

    other = make_team("elsewhere")
    client.force_login(other.admin)
    address = reverse("compute:detail", args=[other.workspace.slug, instance.pk])
    assert client.get(address).status_code == 404
    address = reverse("compute:action", args=[other.workspace.slug, instance.pk, "delete"])
    assert client.post(address).status_code == 404
    assert Compute.objects.get(pk=instance.pk).state == S.CREATING


def test_reader_sees_but_cannot_act(client, team, instance, django_capture_on_commit_callbacks):
    client.force_login(team.reader)
    assert client.get(url(team, "list")).status_code == 200
    body = client.get(url(team, "detail", instance.pk)).content.decode()
    assert "box-1" in body and ">Stop<" not in body and ">Delete<" not in body
    with django_capture_on_commit_callbacks() as callbacks:
        for name in ("new-instance", "new-cluster"):
            assert client.get(compute_urls(team, instance)[name][1]).status_code == 403
        assert client.post(url(team, "action", instance.pk, "stop")).status_code == 403
        response = client.post(
            url(team, "create", "instance"), {"name": "sneaky", "vm_size": instance.vm_size_id}
        )
        assert response.status_code == 403
    assert callbacks == []
    assert Compute.objects.count() == 1


def test_contributor_acts_but_only_admins_delete(client, team, instance):
    client.force_login(team.contributor)
    Compute.objects.filter(pk=instance.pk).update(state=S.RUNNING)
    response = client.post(url(team, "action", instance.pk, "delete"))
    assert response.status_code == 403
    assert "needs the admin role" in response.content.decode()
    client.post(url(team, "action", instance.pk, "stop"))
    assert Compute.objects.get(pk=instance.pk).state == S.STOPPING
    client.force_login(team.admin)
    client.post(url(team, "action", instance.pk, "delete"))
    assert Compute.objects.get(pk=instance.pk).state == S.DELETING


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "ab"}, "name", "3 to 24 letters"),
        ({"name": "9lives"}, "name", "starting with a letter"),
        ({"name": "x" * 25}, "name", "at most 24 characters"),
        ({"name": "has space"}, "name", "letters, digits and hyphens"),
        ({"name": "<script>"}, "name", "letters, digits and hyphens"),
        ({"name": "box-1"}, "name", "already has a compute named box-1"),
        ({"name": "BOX-1"}, "name", "already has a compute named BOX-1"),
        ({"vm_size": ""}, "vm_size", "This field is required."),
        ({"vm_size": "999999"}, "vm_size", "Select a valid choice"),
        ({"idle_shutdown_minutes": "5"}, "idle_shutdown_minutes", "allows 15 to 4320 minutes"),
        ({"idle_shutdown_minutes": "99999"}, "idle_shutdown_minutes", "allows 15 to 4320"),
        ({"idle_shutdown_minutes": "soon"}, "idle_shutdown_minutes", "Enter a whole number."),
    ],
)
def test_bad_instance_input_writes_nothing_and_enqueues_nothing(
    client, team, instance, size, data, field, message, django_capture_on_commit_callbacks
):
    client.force_login(team.admin)
    before = (Compute.objects.count(), Event.objects.count(), Node.objects.count())
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            url(team, "create", "instance"), {"name": "fresh", "vm_size": size.pk, **data}
        )
    assert response.status_code == 200
    assert message in str(response.context["form"].errors[field])
    assert message.split(" {")[0] in response.content.decode().replace("&#x27;", "'")
    assert callbacks == []
    assert (Compute.objects.count(), Event.objects.count(), Node.objects.count()) == before


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"min_nodes": "3", "max_nodes": "2"}, "min_nodes", "cannot exceed max nodes"),
        ({"max_nodes": "0"}, "max_nodes", "greater than or equal to 1"),
        ({"max_nodes": "17"}, "max_nodes", "less than or equal to 16"),
        ({"min_nodes": "-1"}, "min_nodes", "greater than or equal to 0"),
        ({"idle_seconds_before_scaledown": "-5"}, "idle_seconds_before_scaledown", "greater"),
        ({"tier": "spot"}, "tier", "Select a valid choice"),
        ({"max_nodes": "two"}, "max_nodes", "Enter a whole number."),
    ],
)
def test_bad_cluster_input_writes_nothing_and_enqueues_nothing(
    client, team, size, data, field, message, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    base = {
        "name": "trainers",
        "vm_size": size.pk,
        "tier": "dedicated",
        "min_nodes": "0",
        "max_nodes": "2",
        "idle_seconds_before_scaledown": "120",
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url(team, "create", "cluster"), {**base, **data})
    assert message in str(response.context["form"].errors[field])
    assert callbacks == []
    assert not Compute.objects.exists() and not Event.objects.exists()


def test_good_cluster_is_created_and_its_reconcile_enqueued_on_commit(
    client, team, size, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    data = {
        "name": "trainers",
        "vm_size": size.pk,
        "tier": "low_priority",
        "min_nodes": "1",
        "max_nodes": "3",
        "idle_seconds_before_scaledown": "60",
    }
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url(team, "create", "cluster"), data)
    cluster = Compute.objects.get(name="trainers")
    assert response["Location"] == url(team, "detail", cluster.pk)
    assert (cluster.kind, cluster.state, cluster.min_nodes, cluster.max_nodes) == (
        ComputeKind.CLUSTER,
        S.CREATING,
        1,
        3,
    )
    assert len(callbacks) == 1
    assert cluster.events.get().actor == team.contributor


def test_bad_resize_changes_nothing(client, team, size, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        cluster = actions.create_cluster(
            get_access(team.admin, team.workspace.slug), name="pool", vm_size=size, max_nodes=2
        )
    client.force_login(team.contributor)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            url(team, "resize", cluster.pk),
            {"min_nodes": "5", "max_nodes": "4", "idle_seconds_before_scaledown": "120"},
        )
    assert "cannot exceed max nodes" in response.content.decode()
    assert callbacks == []
    cluster.refresh_from_db()
    assert (cluster.min_nodes, cluster.max_nodes, cluster.state) == (0, 2, S.CREATING)


def test_impossible_actions_explain_and_change_nothing(team, instance):
    from django.core.exceptions import ValidationError

    access = get_access(team.admin, team.workspace.slug)
    Compute.objects.filter(pk=instance.pk).update(state=S.RUNNING)
    with pytest.raises(ValidationError, match="box-1 is already running"):
        actions.instance_verb(access, instance.pk, "start")
    actions.delete_compute(access, instance.pk)
    with pytest.raises(ValidationError, match="already deleting"):
        actions.delete_compute(access, instance.pk)
    with pytest.raises(ValidationError, match="cannot exceed max nodes"):
        actions.validate_cluster_bounds(3, 2)
    assert Compute.objects.get(pk=instance.pk).state == S.DELETING


def test_a_family_that_cannot_serve_clusters_is_refused(team, size):
    from django.core.exceptions import ValidationError

    VmFamily.objects.filter(pk=size.family_id).update(serves_clusters=False)
    size.refresh_from_db()
    with pytest.raises(ValidationError, match="cannot be used for compute clusters"):
        actions.create_cluster(
            get_access(team.admin, team.workspace.slug), name="nope", vm_size=size
        )
    assert not Compute.objects.exists()


def test_only_admins_create_on_behalf_of_someone(team, size, django_capture_on_commit_callbacks):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        actions.create_instance(
            get_access(team.contributor, team.workspace.slug),
            name="for-reader",
            vm_size=size,
            assigned_to=team.reader,
        )
    with django_capture_on_commit_callbacks():
        made = actions.create_instance(
            get_access(team.admin, team.workspace.slug),
            name="for-reader",
            vm_size=size,
            assigned_to=team.reader,
        )
    assert made.assigned_to == team.reader
    assert "for vision-reader" in made.events.get().message


def test_polling_stops_when_steady(client, team, instance):
    client.force_login(team.reader)
    address = url(team, "detail", instance.pk)
    busy = client.get(address, HTTP_HX_REQUEST="true")
    assert busy.status_code == 200 and 'hx-trigger="every 1s"' in busy.content.decode()
    Compute.objects.filter(pk=instance.pk).update(state=S.RUNNING)
    steady = client.get(address, HTTP_HX_REQUEST="true")
    assert steady.status_code == 286 and "every 1s" not in steady.content.decode()
    assert "<html" not in steady.content.decode()


def test_compute_list_queries_do_not_grow_with_computes(
    client, team, size, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    access = get_access(team.admin, team.workspace.slug)
    with django_capture_on_commit_callbacks():
        for i in range(12):
            actions.create_cluster(access, name=f"pool-{i}", vm_size=size, max_nodes=2)
    client.force_login(team.admin)
    with django_assert_max_num_queries(10):
        body = client.get(url(team, "list"), {"tab": "clusters"}).content.decode()
    assert body.count('data-compute="pool-') == 12


@pytest.mark.parametrize("state", [S.CREATING, S.STARTING, S.RESTARTING])
def test_an_instance_can_be_stopped_while_it_is_still_coming_up(team, instance, state):
    Compute.objects.filter(pk=instance.pk).update(state=state)
    actions.instance_verb(get_access(team.admin, team.workspace.slug), instance.pk, "stop")
    assert Compute.objects.get(pk=instance.pk).state == S.STOPPING
