"""Attached computes without a connection: the kind picker and its matrix, bad input,
secrets at rest and on pages, key rotation, and who may do what."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from compute.actions import attached as attach_actions
from compute.actions.attached import Connection
from compute.actions.jobs import submit_job
from compute.lib import secrets
from compute.models import Attachment, Compute, Job, SecretKind, TargetKind
from compute.rules.targets import KINDS
from tests.support.sshd import keygen
from workspace.access import get_access

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def private_key(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("keys") / "id"
    keygen(path)
    return path.read_text()


def form(key: str, **overrides) -> dict:
    return {
        "name": "gpu-box",
        "host": "gpu-box.lab",
        "port": "22",
        "username": "ml",
        "secret_kind": "key",
        "private_key": key,
        "max_concurrent_jobs": "1",
        **overrides,
    }


def attach_url(team, kind: str = "remote_vm") -> str:
    return reverse("compute:attach-kind", args=[team.workspace.slug, kind])


def attach(team, secret: str, name: str = "gpu-box", secret_kind: str = SecretKind.KEY) -> Compute:
    return attach_actions.attach(
        get_access(team.contributor, team.workspace.slug),
        target_kind="remote_vm",
        name=name,
        max_concurrent_jobs=1,
        connection=Connection("gpu-box.lab", 22, "ml", secret_kind, secret),
    )


def test_the_picker_lists_every_kind_with_its_matrix_and_only_runnable_ones_attach(client, team):
    client.force_login(team.contributor)
    page = client.get(reverse("compute:attach", args=[team.workspace.slug])).content.decode()
    for kind in TargetKind:
        assert f'data-kind="{kind.value}"' in page
    assert page.count("coming soon") == sum(1 for kind in KINDS.values() if not kind.runnable)
    assert "yes (SDK local mode only)" in page  # Databricks' automated ML, from FACTS.md
    runnable = {key for key, kind in KINDS.items() if kind.runnable}
    assert runnable == {"local", "remote_vm", "hdinsight"}
    # A kind that is not runnable cannot be attached, by form or by action.
    response = client.post(attach_url(team, "databricks"), {"name": "bricks"})
    assert response.status_code == 302 and not Compute.objects.exists()
    with pytest.raises(Exception, match="coming soon"):
        attach_actions.attach(
            get_access(team.contributor, team.workspace.slug),
            target_kind="kubernetes",
            name="kube",
            max_concurrent_jobs=1,
        )
    assert not Compute.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"host": "http://gpu-box"}, "host", "is not a host name or an IP address"),
        ({"host": "999.1.2.3"}, "host", "is not a host name or an IP address"),
        ({"host": "bad host"}, "host", "is not a host name or an IP address"),
        ({"port": "0"}, "port", "Choose a port from 1 to 65535."),
        ({"port": "70000"}, "port", "Choose a port from 1 to 65535."),
        ({"private_key": "not a key"}, "private_key", "not a private key Hangar can read"),
        ({"private_key": ""}, "private_key", "Paste the private key"),
        ({"secret_kind": "password", "password": ""}, "password", "Enter the password."),
        ({"username": "9lives; rm"}, "username", "Use a Unix user name"),
        ({"name": "x"}, "name", "Use 3 to 24 letters"),
    ],
)
def test_bad_input_is_refused_clearly_and_nothing_is_stored(
    client, team, private_key, overrides, field, message
):
    client.force_login(team.contributor)
    response = client.post(attach_url(team), form(private_key, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert field in response.context["form"].errors
    assert not Compute.objects.exists() and not Attachment.objects.exists()


def test_an_ip_address_and_a_host_name_are_both_accepted(client, team, private_key):
    client.force_login(team.contributor)
    for name, host in (("by-ip", "10.0.0.5"), ("by-v6", "::1"), ("by-name", "Head-0.hdi.lab")):
        response = client.post(attach_url(team), form(private_key, name=name, host=host))
        assert response.status_code == 302, response.content.decode()[:500]
    hosts = set(Attachment.objects.values_list("host", flat=True))
    assert hosts == {"10.0.0.5", "::1", "head-0.hdi.lab"}


def test_secrets_are_encrypted_at_rest_and_never_shown(client, team, private_key):
    compute = attach(team, private_key)
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM compute_attachment WHERE compute_id = %s", [compute.pk])
        raw = cursor.fetchone()[0]
    body = private_key.split("\n")[1]  # a line of the key's base64
    assert body not in raw and "PRIVATE KEY" not in raw
    assert secrets.decrypt(raw).strip() == private_key.strip()
    client.force_login(team.contributor)
    for url in (
        compute.get_absolute_url(),
        reverse("compute:attach-edit", args=[team.workspace.slug, compute.pk]),
    ):
        page = client.get(url).content.decode()
        assert body not in page and "PRIVATE KEY-----\n" not in page
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    page = client.get(reverse("admin:compute_attachment_change", args=[compute.pk]))
    assert page.status_code == 200 and body not in page.content.decode()
    assert raw not in page.content.decode()  # not even the ciphertext
    client.force_login(team.contributor)
    edit = client.get(reverse("compute:attach-edit", args=[team.workspace.slug, compute.pk]))
    assert "set — replace" in edit.content.decode()
    # Saving the edit form with the secret left empty keeps it.
    response = client.post(
        reverse("compute:attach-edit", args=[team.workspace.slug, compute.pk]),
        form(private_key, private_key="", max_concurrent_jobs="2"),
    )
    assert response.status_code == 302
    attachment = Attachment.objects.get(pk=compute.pk)
    assert secrets.decrypt(attachment.secret).strip() == private_key.strip()
    assert attachment.max_concurrent_jobs == 2
    # A password is stored the same way.
    other = attach(team, "hunter2-but-longer", name="pw-box", secret_kind="password")
    raw = Attachment.objects.filter(pk=other.pk).values_list("secret", flat=True).get()
    assert "hunter2" not in raw and secrets.decrypt(raw) == "hunter2-but-longer"


def test_after_key_rotation_every_secret_still_decrypts(team, private_key, settings):
    old_keys = list(settings.HANGAR_SECRET_KEYS)
    first = attach(team, private_key)
    second = attach(team, "a-password-123", name="pw-box", secret_kind="password")
    new_key = Fernet.generate_key().decode()
    settings.HANGAR_SECRET_KEYS = [new_key, *old_keys]
    call_command("rotate_secrets", stdout=open("/dev/null", "w"))
    settings.HANGAR_SECRET_KEYS = [new_key]  # the old keys are gone now
    assert secrets.decrypt(Attachment.objects.get(pk=first.pk).secret) == private_key.strip() + "\n"
    assert secrets.decrypt(Attachment.objects.get(pk=second.pk).secret) == "a-password-123"
    settings.HANGAR_SECRET_KEYS = old_keys  # and the old keys alone no longer open them
    with pytest.raises(secrets.SecretUnreadable):
        secrets.decrypt(Attachment.objects.get(pk=first.pk).secret)


def test_a_reader_cannot_attach_or_detach(client, team, private_key):
    compute = attach(team, private_key)
    client.force_login(team.reader)
    slug = team.workspace.slug
    assert client.get(reverse("compute:attach", args=[slug])).status_code == 403
    assert client.post(attach_url(team), form(private_key, name="mine")).status_code == 403
    detach = reverse("compute:attached-action", args=[slug, compute.pk, "detach"])
    assert client.post(detach).status_code == 403
    edit = reverse("compute:attach-edit", args=[slug, compute.pk])
    assert client.post(edit, form(private_key, host="evil.lab")).status_code == 403
    compute.refresh_from_db()
    assert compute.state == "creating" and Compute.objects.count() == 1
    assert Attachment.objects.get(pk=compute.pk).host == "gpu-box.lab"
    # ...but sees it.
    assert client.get(compute.get_absolute_url()).status_code == 200


def test_another_workspace_gets_404_on_the_target_and_its_jobs(client, team, private_key):
    compute = attach(team, private_key)
    job = submit_job(
        get_access(team.contributor, team.workspace.slug),
        compute_id=compute.pk,
        name="mine",
        command="true",
    )
    client.force_login(team.outsider)
    slug = team.workspace.slug
    for url in (
        compute.get_absolute_url(),
        reverse("compute:attach-edit", args=[slug, compute.pk]),
        reverse("compute:job", args=[slug, job.pk]),
        reverse("compute:list", args=[slug]) + "?tab=attached",
    ):
        assert client.get(url).status_code == 404, url
    detach = reverse("compute:attached-action", args=[slug, compute.pk, "detach"])
    assert client.post(detach).status_code == 404
    assert Compute.objects.get(pk=compute.pk).state == "creating"
    assert Job.objects.get(pk=job.pk).status == "queued"


def test_the_attached_tab_lists_targets_and_an_empty_state(client, team, private_key):
    client.force_login(team.contributor)
    url = reverse("compute:list", args=[team.workspace.slug]) + "?tab=attached"
    assert "No attached computes yet" in client.get(url).content.decode()
    attach(team, private_key)
    page = client.get(url).content.decode()
    assert 'data-compute="gpu-box"' in page and "ml@gpu-box.lab:22" in page
    assert "Validating" in page


def test_facts_read_gpus_where_nvidia_smi_answers(tmp_path, monkeypatch):
    """This machine has no GPU: a stand-in `nvidia-smi` (a fake of NVIDIA's tool, named as
    such) answers as on a two-GPU box, through the same facts script as over SSH."""
    from compute.drivers.runners import local_facts

    fake = tmp_path / "nvidia-smi"
    gpu = "echo 'Tesla V100-SXM2-16GB, 16160 MiB'\n"
    fake.write_text("#!/bin/sh\n" + gpu * 2)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    facts = local_facts()
    assert facts["gpus"] == ["Tesla V100-SXM2-16GB, 16160 MiB"] * 2
    assert facts["cpus"] == os.cpu_count() and facts["memory_gib"] > 0
    assert facts["python"].startswith("Python 3")
