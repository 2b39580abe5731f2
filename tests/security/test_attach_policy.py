"""Attack tests: attaching a "remote VM" at an address that reaches the host's own
services (issue 12, point 8). A link-local address is where a cloud's metadata service
answers with the machine's credentials; on main a contributor could attach
169.254.169.254 and Hangar's worker would connect there.

HANGAR_ATTACH_DENY_NETWORKS is refused by the form, before anything is stored or
enqueued, for literal addresses and for names resolving into it, on attach and on edit;
and by the worker at each connect, which marks the target unhealthy with the reason.
No test here sends a packet anywhere but loopback: the refusals come before connecting.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from django.urls import reverse

from compute.actions import attached as attach_actions
from compute.actions.attached import Connection
from compute.controllers.reconcile import reconcile
from compute.lib import ssh
from compute.models import Attachment, Compute, ComputeState
from compute.rules import netpolicy
from tests.support.sshd import keygen
from workspace.access import get_access

pytestmark = pytest.mark.django_db

MESSAGE = "a network Hangar never connects to (HANGAR_ATTACH_DENY_NETWORKS)"


@pytest.fixture(scope="module")
def private_key(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("keys") / "id"
    keygen(path)
    return path.read_text()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback port that records whether anyone connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
        return True
    except BlockingIOError:
        return False


def form(key: str, **overrides) -> dict:
    return {
        "name": "meta",
        "host": "169.254.169.254",
        "port": "22",
        "username": "ml",
        "secret_kind": "key",
        "private_key": key,
        "max_concurrent_jobs": "1",
        **overrides,
    }


@pytest.mark.parametrize(
    ("host", "network"),
    [
        ("169.254.169.254", "169.254.0.0/16"),
        ("fe80::1", "fe80::/10"),
        ("[fe80::a9fe:a9fe]", "fe80::/10"),
        ("0.0.0.0", "0.0.0.0/8"),  # noqa: S104 (the address under test, not a bind)
        ("::ffff:169.254.169.254", "169.254.0.0/16"),  # IPv4-mapped: the same address
    ],
)
@pytest.mark.parametrize("kind", ["remote_vm", "hdinsight"])
def test_a_denied_address_is_refused_and_nothing_is_stored(
    client, team, private_key, host, network, kind, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    url = reverse("compute:attach-kind", args=[team.workspace.slug, kind])
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(url, form(private_key, host=host))
    assert response.status_code == 200
    errors = " ".join(response.context["form"].errors.get("host", []))
    assert MESSAGE in errors and network in errors
    assert MESSAGE in response.content.decode()
    assert queued == []
    assert not Compute.objects.exists() and not Attachment.objects.exists()


def test_the_edit_form_refuses_a_denied_address_too(
    client, team, private_key, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        compute = attach_actions.attach(
            get_access(team.contributor, team.workspace.slug),
            target_kind="remote_vm",
            name="gpu-box",
            max_concurrent_jobs=1,
            connection=Connection("127.0.0.1", 22, "ml", "key", private_key),
        )
    client.force_login(team.contributor)
    url = reverse("compute:attach-edit", args=[team.workspace.slug, compute.pk])
    with django_capture_on_commit_callbacks() as queued:
        response = client.post(url, form(private_key, host="169.254.169.254", private_key=""))
    assert response.status_code == 200
    assert MESSAGE in " ".join(response.context["form"].errors.get("host", []))
    assert queued == []
    assert Attachment.objects.get(pk=compute.pk).host == "127.0.0.1"


def test_the_resolver_checks_every_address_of_a_name(settings):
    addresses = netpolicy.resolve("localhost")
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}
    assert netpolicy.check_host("localhost") == addresses  # permitted by default
    assert netpolicy.check_host("127.0.0.1") == ["127.0.0.1"]
    settings.HANGAR_ATTACH_DENY_NETWORKS = ["127.0.0.0/8", "::1/128"]
    with pytest.raises(netpolicy.AddressDenied, match="resolves to"):
        netpolicy.check_host("localhost")
    settings.HANGAR_ATTACH_DENY_NETWORKS = []  # an operator may deny nothing
    assert netpolicy.check_host("169.254.169.254") == ["169.254.169.254"]


def test_the_worker_refuses_to_connect_and_marks_the_target_unhealthy(
    team, private_key, settings, listener, django_capture_on_commit_callbacks
):
    port = listener.getsockname()[1]
    with django_capture_on_commit_callbacks():
        compute = attach_actions.attach(
            get_access(team.contributor, team.workspace.slug),
            target_kind="remote_vm",
            name="gpu-box",
            max_concurrent_jobs=1,
            connection=Connection("localhost", port, "ml", "key", private_key),
        )
    # Later the name points somewhere denied (here: the policy changed; same effect).
    settings.HANGAR_ATTACH_DENY_NETWORKS = ["127.0.0.0/8", "::1/128"]
    reconcile(compute.pk)  # validation, as the worker runs it
    compute.refresh_from_db()
    attachment = Attachment.objects.get(pk=compute.pk)
    assert compute.state == ComputeState.FAILED and MESSAGE in compute.last_error
    assert attachment.healthy is False and "refused to connect" in attachment.health_reason
    assert not connected(listener)
    # A ready target's health check is refused the same way.
    Compute.objects.filter(pk=compute.pk).update(state=ComputeState.STEADY)
    Attachment.objects.filter(pk=compute.pk).update(healthy=True, health_checked_at=None)
    reconcile(compute.pk)
    attachment.refresh_from_db()
    assert attachment.healthy is False and MESSAGE in attachment.health_reason
    assert not connected(listener)
    # And any connect at all, whoever asks.
    endpoint = ssh.Endpoint(host="127.0.0.1", port=port, username="ml", password="x")
    with pytest.raises(ssh.SSHError, match="refused to connect"):
        ssh.connect(endpoint)
    assert not connected(listener)
