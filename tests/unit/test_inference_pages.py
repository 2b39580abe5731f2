"""Models and endpoints from the browser's side: registering a model (stored read-only,
versioned, refused whole when its files are), endpoints with two keys regenerated one at a
time, deployments checked against the seed's target rules, and the traffic split."""

from __future__ import annotations

import io
import os
import stat

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compute.inference.actions.endpoints import key_hash
from compute.inference.models import Deployment, Endpoint, RegisteredModel
from compute.lib import secrets, snapshots
from compute.models import VmSize
from tests.support.inference import SCORING, make_endpoint, make_model

pytestmark = pytest.mark.django_db


def url(team, name: str, *args: int) -> str:
    return reverse(f"inference:{name}", args=[team.workspace.slug, *args])


def register(client, team, name: str, file_name: str, data: bytes):
    upload = SimpleUploadedFile(file_name, data)
    return client.post(url(team, "model-create"), {"name": name, "upload": upload})


def test_a_model_is_stored_read_only_and_the_same_name_makes_its_next_version(client, team):
    client.force_login(team.contributor)
    assert b'data-testid="no-models"' in client.get(url(team, "models")).content
    first = register(client, team, "iris", "model.pkl", b"weights-1")
    made = RegisteredModel.objects.get(name="iris", version=1)
    assert first.url == url(team, "model", made.pk)
    stored = snapshots.model_store().folder(made.pk) / "model.pkl"
    assert stored.read_bytes() == b"weights-1"
    assert not os.stat(stored).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert made.size_bytes == 9
    register(client, team, "iris", "model.pkl", b"weights-22")
    assert list(RegisteredModel.objects.values_list("version", "size_bytes")) == [(2, 10), (1, 9)]
    page = client.get(url(team, "model", made.pk)).content.decode()
    assert ">v2<" in page and "9\xa0bytes" in page


def test_readers_see_models_and_endpoints_but_no_key_and_cannot_register(client, team):
    model = make_model(team.workspace)
    endpoint = make_endpoint(team.workspace, model)
    client.force_login(team.reader)
    assert client.get(url(team, "model", model.pk)).status_code == 200
    page = client.get(url(team, "endpoint", endpoint.pk)).content.decode()
    assert secrets.decrypt(endpoint.primary_key) not in page
    assert "Contributors see the keys." in page
    assert register(client, team, "iris", "model.pkl", b"x").status_code == 403
    client.force_login(team.outsider)
    assert client.get(url(team, "endpoint", endpoint.pk)).status_code == 404


def test_an_endpoint_has_two_keys_and_one_is_regenerated_while_the_other_stays(client, team):
    client.force_login(team.contributor)
    answer = client.post(url(team, "endpoint-create"), {"name": "iris-scorer"})
    endpoint = Endpoint.objects.get(name="iris-scorer")
    assert answer.url == url(team, "endpoint", endpoint.pk)
    primary, secondary = (
        secrets.decrypt(endpoint.primary_key),
        secrets.decrypt(endpoint.secondary_key),
    )
    assert primary != secondary and len(primary) >= 40
    assert endpoint.primary_key_hash == key_hash(primary)
    page = client.get(url(team, "endpoint", endpoint.pk)).content.decode()
    assert primary in page and secondary in page and "/score/vision/iris-scorer" in page
    client.post(url(team, "key", endpoint.pk), {"slot": "primary"})
    endpoint.refresh_from_db()
    assert secrets.decrypt(endpoint.primary_key) != primary
    assert endpoint.primary_key_hash == key_hash(secrets.decrypt(endpoint.primary_key))
    assert secrets.decrypt(endpoint.secondary_key) == secondary
    taken = client.post(url(team, "endpoint-create"), {"name": "iris-scorer"})
    assert "already has an endpoint named iris-scorer" in taken.content.decode()


def deployment(model, size: str, **changes) -> dict:
    return {
        "name": "blue",
        "model": model.pk,
        "target": "managed_cluster",
        "vm_size": VmSize.objects.get(name=size).pk,
        "min_replicas": "0",
        "max_replicas": "3",
        "target_in_flight": "4",
        "request_timeout_ms": "5000",
        "scoring_script": SCORING,
        **changes,
    }


@pytest.mark.parametrize(
    "size, changes, refusal",
    [
        (
            "Standard_NC6",
            {"target": "container_instance", "min_replicas": "1", "max_replicas": "1"},
            "GPU serving needs a managed compute cluster",
        ),
        (
            "Standard_H8",  # 56 GiB, no GPU
            {"target": "container_instance", "min_replicas": "1", "max_replicas": "1"},
            "A container instance needs less than 48 GB of memory",
        ),
        (
            "Standard_DS3_v2",
            {"target": "local_web_service", "min_replicas": "1", "max_replicas": "2"},
            "A local web service runs one replica (test / debug).",
        ),
        (
            "Standard_DS3_v2",
            {"target": "container_instance", "min_replicas": "0", "max_replicas": "1"},
            "only a managed cluster scales to zero",
        ),
        ("Standard_DS3_v2", {"scoring_script": "print('hi')"}, "defines init() and run("),
    ],
)
def test_a_deployment_breaking_a_target_rule_is_refused_with_it(
    client, team, size, changes, refusal
):
    model = make_model(team.workspace)
    endpoint = make_endpoint(team.workspace, model)
    Deployment.objects.filter(endpoint=endpoint).delete()
    client.force_login(team.contributor)
    answer = client.post(
        url(team, "deployment-create", endpoint.pk), deployment(model, size, **changes)
    )
    assert refusal in answer.content.decode()
    assert not Deployment.objects.filter(endpoint=endpoint).exists()


def test_a_model_of_a_gigabyte_is_not_for_a_container_instance(client, team):
    big = make_model(team.workspace, "big", size_bytes=12)
    RegisteredModel.objects.filter(pk=big.pk).update(size_bytes=1024**3)
    endpoint = make_endpoint(team.workspace, big)
    Deployment.objects.filter(endpoint=endpoint).delete()
    client.force_login(team.contributor)
    changes = {"target": "container_instance", "min_replicas": "1", "max_replicas": "1"}
    answer = client.post(
        url(team, "deployment-create", endpoint.pk),
        deployment(big, "Standard_DS3_v2", **changes),
    )
    assert "A container instance serves only models under 1 GB" in answer.content.decode()
    assert not Deployment.objects.exists()


def test_the_first_deployment_takes_all_traffic_and_the_split_adds_up_to_100(client, team):
    model = make_model(team.workspace)
    endpoint = make_endpoint(team.workspace, model)
    Deployment.objects.filter(endpoint=endpoint).delete()
    client.force_login(team.contributor)
    client.post(url(team, "deployment-create", endpoint.pk), deployment(model, "Standard_DS3_v2"))
    client.post(
        url(team, "deployment-create", endpoint.pk),
        deployment(model, "Standard_DS3_v2", name="green"),
    )
    blue, green = endpoint.deployments.order_by("name")
    assert (blue.traffic, green.traffic) == (100, 0)
    split = url(team, "traffic", endpoint.pk)
    wrong = client.post(
        split, {f"traffic_{blue.pk}": "70", f"traffic_{green.pk}": "20"}, follow=True
    )
    assert "The shares add up to 90%, not 100%." in wrong.content.decode()
    client.post(split, {f"traffic_{blue.pk}": "80", f"traffic_{green.pk}": "20"})
    assert list(endpoint.deployments.order_by("name").values_list("traffic", flat=True)) == [80, 20]


def test_endpoint_keys_follow_a_key_rotation(team, settings):
    from cryptography.fernet import Fernet
    from django.core.management import call_command

    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    primary = secrets.decrypt(endpoint.primary_key)
    old_keys = list(settings.HANGAR_SECRET_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.HANGAR_SECRET_KEYS = [new_key, *old_keys]
    call_command("rotate_secrets", stdout=io.StringIO())
    settings.HANGAR_SECRET_KEYS = [new_key]  # the old keys are gone now
    endpoint.refresh_from_db()
    assert secrets.decrypt(endpoint.primary_key) == primary
    assert endpoint.primary_key_hash == key_hash(primary)  # clients keep their key


def test_a_deployment_taking_traffic_beside_others_is_not_removed(client, team):
    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    blue, green = endpoint.deployments.order_by("name")
    client.force_login(team.contributor)
    refused = client.post(url(team, "deployment-delete", endpoint.pk, blue.pk), follow=True)
    assert "blue takes 100% of the traffic" in refused.content.decode()
    client.post(url(team, "deployment-delete", endpoint.pk, green.pk))
    assert list(endpoint.deployments.values_list("name", flat=True)) == ["blue"]
    client.post(url(team, "deployment-delete", endpoint.pk, blue.pk))  # the last one may go
    assert not endpoint.deployments.exists()


@pytest.mark.parametrize(
    "data, says",
    [
        ({"body": "[" * 100_000}, "That is not JSON"),
        ({"body": "{}", "deployment": "bl\nue"}, "Choose one of the endpoint&#x27;s deployments."),
        ({"body": "{}", "deployment": "€"}, "Choose one of the endpoint&#x27;s deployments."),
    ],
)
def test_try_it_refuses_odd_input_with_a_message_not_a_server_error(client, team, data, says):
    endpoint = make_endpoint(team.workspace, make_model(team.workspace))
    client.force_login(team.contributor)
    answer = client.post(url(team, "try", endpoint.pk), data)
    assert answer.status_code == 200 and says in answer.content.decode()


def test_a_model_folder_may_come_as_a_tar_and_is_unpacked_read_only(client, team):
    from tests.unit.test_batch_pages import tar_of

    client.force_login(team.contributor)
    archive = tar_of({"weights/model.pkl": b"w" * 10, "config.json": b"{}"}, links=("evil",))
    register(client, team, "resnet", "model.tar.gz", archive)
    made = RegisteredModel.objects.get(name="resnet")
    folder = snapshots.model_store().folder(made.pk)
    assert (made.kind, made.size_bytes) == ("tar", 12)
    assert (folder / "weights/model.pkl").read_bytes() == b"w" * 10
    assert not (folder / "evil").exists()
