"""Node hosts from the site staff's side: the Hosts page (staff only; what each host holds
against its capacity, counted as placement counts it), the admin's form (TLS material
write-only and stored encrypted, URLs checked) and its state actions (confirmed first),
and the workspace's placement option (its admins only)."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from compute.lib import secrets, serving_load
from compute.lib.image_copies import copies_key, note_copy
from compute.models import HostState, NodeHost, NodeState, VmSize
from tests.support.factories import ComputeFactory, NodeFactory, UserFactory
from workspace.models import Activity, Workspace

pytestmark = pytest.mark.django_db

HOSTS = reverse("compute:hosts")
ADD = reverse("admin:compute_nodehost_add")
CHANGELIST = reverse("admin:compute_nodehost_changelist")

# Not real keys: the form checks the PEM armour, the engine checks the rest.
CA = "-----BEGIN CERTIFICATE-----\nMIIBca-secret-ca-body\n-----END CERTIFICATE-----"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBcert-secret-body\n-----END CERTIFICATE-----"
KEY = "-----BEGIN PRIVATE KEY-----\nMIIEkey-secret-body\n-----END PRIVATE KEY-----"


@pytest.fixture
def staff(client):
    user = UserFactory(username="ops", is_staff=True)
    client.force_login(user)
    return user


@pytest.fixture
def root(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


@pytest.fixture
def no_copies():
    serving_load.client().delete(copies_key())
    yield
    serving_load.client().delete(copies_key())


def make_host(name: str, **fields) -> NodeHost:
    values = {
        "docker_url": f"ssh://ml@{name}",
        "cpus": 16,
        "memory_bytes": 64 * 1024**3,
        "gpus": 0,
        "last_seen_at": timezone.now(),
        **fields,
    }
    return NodeHost.objects.create(name=name, **values)


def row_of(body: str, name: str) -> str:
    found = re.search(rf'<tr data-host="{name}">.*?</tr>', body, re.S)
    assert found, f"no row for {name}"
    return found.group(0)


def cell(row: str, testid: str) -> str:
    found = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</td>', row, re.S)
    assert found, testid
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


# The Hosts page --------------------------------------------------------------------------


def test_with_no_host_the_page_says_nodes_run_on_the_default_engine(client, staff, settings):
    settings.HANGAR_DOCKER_URL = "unix:///srv/docker.sock"
    body = client.get(HOSTS).content.decode()
    assert 'data-testid="no-hosts"' in body
    assert "Every node runs on the default engine" in body
    assert "unix:///srv/docker.sock" in body and "HANGAR_DOCKER_URL" in body
    assert f'href="{ADD}"' in body  # how to add one
    settings.HANGAR_DOCKER_URL = ""
    body = client.get(HOSTS).content.decode()
    assert "this machine's Docker engine" in body


def test_a_host_shows_what_its_nodes_hold_against_its_capacity(client, staff, settings, no_copies):
    """Used capacity is what placement counts: live and leaving nodes, scaled; an ended
    node and another host's node count for nothing."""
    settings.HANGAR_CPU_SCALE = 1.0
    settings.HANGAR_MEMORY_SCALE = 1.0
    gpu_size = VmSize.objects.filter(gpus__gte=1).order_by("gpus", "vcpus").first()
    cpu_size = VmSize.objects.get(name="Standard_DS3_v2")
    box = make_host(
        "gpu-box-2",
        cpus=64,
        memory_bytes=512 * 1024**3,
        gpus=4,
        cpus_override=48,
        labels=["gpu", "zone-a"],
        last_error="",
    )
    other = make_host("cpu-box", state=HostState.DRAINING, last_error="TLS handshake failed")
    gpu = ComputeFactory(vm_size=gpu_size, name="trainers")
    cpu = ComputeFactory(vm_size=cpu_size, name="notebooks")
    NodeFactory(compute=gpu, host=box, state=NodeState.RUNNING)
    NodeFactory(compute=cpu, host=box, state=NodeState.LEAVING)
    NodeFactory(compute=cpu, host=box, state=NodeState.UNUSABLE, ended_at=timezone.now())
    NodeFactory(compute=cpu, host=other)
    note_copy("gpu-box-2", "hangar/node:3", 704 * 1024**2, done=False)
    note_copy("gpu-box-2", "hangar/env-abc", 300 * 1024**2, done=True)

    body = client.get(HOSTS).content.decode()

    row = row_of(body, "gpu-box-2")
    cores = gpu_size.vcpus + cpu_size.vcpus
    assert cell(row, "cores") == f"{cores} / 48 cores override"
    memory = float(gpu_size.memory_gib) + float(cpu_size.memory_gib)
    assert cell(row, "memory") == f"{memory:g} / 512 GiB"
    assert cell(row, "gpus") == f"{gpu_size.gpus} / 4 GPUs"
    assert cell(row, "nodes") == "2"  # live ones (the leaving one's container is there)
    assert f"?host__id__exact={box.pk}" in row
    assert cell(row, "seen").endswith("s ago")
    assert cell(row, "error") == "—"
    assert ">Ready<" in row and ">gpu<" in row and ">zone-a<" in row
    copies = cell(row, "copies")
    assert "hangar/node:3 704 MB, copying" in copies
    assert "hangar/env-abc 300 MB, done" in copies
    drained = row_of(body, "cpu-box")
    assert ">Draining<" in drained  # the state in words, not colour alone
    assert "TLS handshake failed" in cell(drained, "error")
    assert cell(drained, "copies") == "—"
    # The navigation leads staff here.
    assert f'href="{HOSTS}">Hosts</a>' in body


def test_a_host_whose_capacity_is_not_read_yet_says_so(client, staff, no_copies):
    make_host("new-box", cpus=0, memory_bytes=0, last_seen_at=None)
    row = row_of(client.get(HOSTS).content.decode(), "new-box")
    assert "Capacity not read yet" in cell(row, "capacity")
    assert cell(row, "seen") == "never"


def test_an_unreachable_host_says_since_when_and_whether_its_nodes_were_written_off(
    client, staff, no_copies
):
    make_host(
        "lost-box",
        state=HostState.UNREACHABLE,
        unreachable_since=timezone.now(),
        nodes_lost_at=timezone.now(),
        last_error="no answer in time",
    )
    row = row_of(client.get(HOSTS).content.decode(), "lost-box")
    assert ">Unreachable<" in row and "nodes written off" in row


def test_the_page_refreshes_itself_and_reads_the_same_queries_for_many_hosts(
    client, staff, no_copies
):
    """htmx polls the table; one page of hosts is a fixed number of queries."""
    make_host("box-a")

    def statements() -> int:
        with CaptureQueriesContext(connection) as queries:
            answer = client.get(HOSTS, HTTP_HX_REQUEST="true")
        assert answer.status_code == 200
        return len(queries)

    fragment = client.get(HOSTS, HTTP_HX_REQUEST="true").content.decode()
    assert fragment.strip().startswith('<div id="host-table"') and 'hx-trigger="every' in fragment
    assert "<html" not in fragment
    few = statements()
    compute = ComputeFactory()
    for number in range(20):
        host = make_host(f"box-{number:02d}")
        NodeFactory(compute=compute, host=host)
    assert statements() == few


def test_many_hosts_come_in_pages(client, staff, no_copies):
    for number in range(30):
        make_host(f"box-{number:02d}")
    first = client.get(HOSTS).content.decode()
    assert 'data-host="box-24"' in first and 'data-host="box-25"' not in first
    second = client.get(HOSTS, {"page": 2}).content.decode()
    assert 'data-host="box-25"' in second and "26–30 of 30" in second


def test_the_page_is_for_staff_only(client, team):
    """Anyone else finds no page there (404, as an unknown address), without the link in
    the navigation; an anonymous visitor is sent to log in first."""
    make_host("box-a")
    response = client.get(HOSTS)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    for user in (team.admin, team.reader):
        client.force_login(user)
        assert client.get(HOSTS).status_code == 404
        assert client.get(HOSTS, HTTP_HX_REQUEST="true").status_code == 404
        assert f'href="{HOSTS}"' not in client.get(reverse("workspace:list")).content.decode()


# The admin: form ---------------------------------------------------------------------------


def host_form(**fields) -> dict:
    return {
        "name": "gpu-box-2",
        "docker_url": "tcp://gpu-box-2:2376",
        "labels_text": "gpu, zone-a, gpu",
        "tls_ca": CA,
        "tls_cert": CERT,
        "tls_key": KEY,
        "cpus_override": "",
        "memory_gib_override": "",
        "gpus_override": "",
        **fields,
    }


def test_tls_material_is_stored_encrypted_and_never_shown(client, root):
    response = client.post(ADD, host_form())
    assert response.status_code == 302, response.context["adminform"].form.errors

    host = NodeHost.objects.get(name="gpu-box-2")
    assert host.labels == ["gpu", "zone-a"]
    for stored, typed in ((host.tls_ca, CA), (host.tls_cert, CERT), (host.tls_key, KEY)):
        assert stored and stored != typed and "secret" not in stored
        assert secrets.decrypt(stored) == typed
    change = reverse("admin:compute_nodehost_change", args=[host.pk])
    body = client.get(change).content.decode()
    for text in ("secret-ca-body", "cert-secret-body", "key-secret-body", host.tls_key):
        assert text not in body
    assert re.search(r"TLS material:\s*</label>\s*<div class=\"readonly\">set</div>", body)
    assert "Set — leave empty to keep it" in body
    assert 'value="gpu, zone-a"' in body

    # Saved again with the boxes empty: kept as stored. A new key alone replaces the key.
    kept = {**host_form(tls_ca="", tls_cert="", tls_key=""), "labels_text": "gpu"}
    assert client.post(change, kept).status_code == 302
    again = NodeHost.objects.get(pk=host.pk)
    assert (again.tls_ca, again.tls_cert, again.tls_key) == (
        host.tls_ca,
        host.tls_cert,
        host.tls_key,
    )
    assert again.labels == ["gpu"]
    new_key = KEY.replace("key-secret", "other-key")
    client.post(change, {**kept, "tls_key": new_key})
    assert secrets.decrypt(NodeHost.objects.get(pk=host.pk).tls_key) == new_key

    # Moving to ssh:// needs the material removed, then it is gone.
    moved = {**kept, "docker_url": "ssh://ml@gpu-box-2"}
    refused = client.post(change, moved)
    assert refused.status_code == 200 and "TLS certificates are for tcp:// only" in (
        refused.content.decode()
    )
    assert client.post(change, {**moved, "clear_tls": "on"}).status_code == 302
    cleared = NodeHost.objects.get(pk=host.pk)
    assert (cleared.docker_url, cleared.tls_ca, cleared.tls_cert, cleared.tls_key) == (
        "ssh://ml@gpu-box-2",
        "",
        "",
        "",
    )
    assert "not set" in client.get(change).content.decode()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"tls_ca": "", "tls_cert": "", "tls_key": ""}, "A tcp:// engine needs TLS"),
        ({"tls_key": ""}, "TLS needs all three: missing TLS client key"),
        ({"docker_url": "http://gpu-box-2:2376"}, "Give a unix://, tcp:// or ssh:// URL"),
        ({"docker_url": "tcp://gpu-box-2"}, "Give the engine&#x27;s port"),
        ({"docker_url": "unix://var/run/docker.sock"}, "absolute path"),
        (
            {"docker_url": "ssh://ml:pw@gpu-box-2", "tls_ca": "", "tls_cert": "", "tls_key": ""},
            "No password",
        ),
        ({"tls_key": "not a key"}, "Paste the PEM text"),
        ({"tls_key": CERT}, "This is not a PEM private key"),
        ({"labels_text": "gpu, <b>"}, "is not a label"),
    ],
)
def test_the_form_refuses_what_the_worker_could_not_use(client, root, fields, error):
    response = client.post(ADD, host_form(**fields))
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not NodeHost.objects.exists()


@pytest.mark.parametrize(
    "url", ["unix:///var/run/docker.sock", "ssh://ml@gpu-box-2", "ssh://gpu-box-2:2222"]
)
def test_unix_and_ssh_engines_need_no_tls(client, root, url):
    form = host_form(docker_url=url, tls_ca="", tls_cert="", tls_key="", labels_text="")
    assert client.post(ADD, form).status_code == 302
    assert NodeHost.objects.get().docker_url == url


def test_the_list_shows_capacity_with_overrides_and_nodes(client, root):
    host = make_host("gpu-box-2", gpus=4, cpus_override=8, last_error="refused")
    compute = ComputeFactory()
    NodeFactory(compute=compute, host=host)
    NodeFactory(compute=compute, host=host, state=NodeState.UNUSABLE, ended_at=timezone.now())
    body = client.get(CHANGELIST).content.decode()
    assert "8 (override; engine: 16)" in body
    assert "64.0\xa0GB" in body and ">4<" in body
    assert f'?host__id__exact={host.pk}">1 live</a>' in body
    assert "refused" in body
    nodes = client.get(reverse("admin:compute_node_changelist"), {"host__id__exact": host.pk})
    assert len(nodes.context["cl"].result_list) == 2


# The admin: actions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "start", "end"),
    [
        ("drain", HostState.READY, HostState.DRAINING),
        ("disable", HostState.DRAINING, HostState.DISABLED),
        ("make_ready", HostState.DISABLED, HostState.READY),
    ],
)
def test_a_state_action_asks_first_then_changes_the_state(client, root, action, start, end):
    host = make_host("gpu-box-2", state=start)
    chosen = {"action": action, "_selected_action": [host.pk]}

    confirm = client.post(CHANGELIST, chosen)

    assert confirm.status_code == 200
    assert "gpu-box-2" in confirm.content.decode() and 'name="apply"' in confirm.content.decode()
    assert NodeHost.objects.get(pk=host.pk).state == start

    done = client.post(CHANGELIST, {**chosen, "apply": "1"}, follow=True)

    assert NodeHost.objects.get(pk=host.pk).state == end
    assert f"Node host gpu-box-2 is now {end.label.lower()}." in done.content.decode()
    assert LogEntry.objects.filter(object_id=str(host.pk)).exists()


def test_an_unreachable_host_is_left_to_the_sweep(client, root):
    lost = make_host("lost-box", state=HostState.UNREACHABLE, unreachable_since=timezone.now())
    fine = make_host("fine-box")
    chosen = {"action": "disable", "_selected_action": [lost.pk, fine.pk]}
    confirm = client.post(CHANGELIST, chosen).content.decode()
    assert "lost-box (unreachable) — left as it is" in confirm
    done = client.post(CHANGELIST, {**chosen, "apply": "1"}, follow=True).content.decode()
    assert "Node host lost-box left as it is: it is unreachable: it becomes ready by itself" in done
    assert NodeHost.objects.get(pk=lost.pk).state == HostState.UNREACHABLE
    assert NodeHost.objects.get(pk=fine.pk).state == HostState.DISABLED


def test_staff_without_the_change_permission_get_no_state_actions(client):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_nodehost"))
    client.force_login(viewer)
    host = make_host("gpu-box-2")
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and 'value="drain"' not in page.content.decode()
    client.post(CHANGELIST, {"action": "drain", "_selected_action": [host.pk], "apply": "1"})
    assert NodeHost.objects.get(pk=host.pk).state == HostState.READY


# The workspace's placement option ----------------------------------------------------------


def test_a_workspace_admin_chooses_spread(client, team):
    url = reverse("workspace:settings", args=[team.workspace.slug])
    client.force_login(team.admin)
    page = client.get(url).content.decode()
    assert "Binpack fills the fullest host" in page and 'name="node_placement"' in page

    response = client.post(url, {"node_placement": "spread"})

    assert response.status_code == 302
    workspace = Workspace.objects.get(pk=team.workspace.pk)
    assert workspace.node_placement == "spread"
    assert workspace.name == team.workspace.name  # the other forms were not posted
    assert Activity.objects.filter(
        workspace=workspace,
        verb=Activity.Verb.WORKSPACE_UPDATED,
        message="vision-admin set node placement to Spread (emptiest host)",
    ).exists()
    refused = client.post(url, {"node_placement": "random"})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert Workspace.objects.get(pk=team.workspace.pk).node_placement == "spread"


def test_a_contributor_cannot_change_placement(client, team):
    url = reverse("workspace:settings", args=[team.workspace.slug])
    client.force_login(team.contributor)
    assert client.post(url, {"node_placement": "spread"}).status_code == 403
    assert Workspace.objects.get(pk=team.workspace.pk).node_placement == "binpack"
    assert not Activity.objects.filter(message__contains="node placement").exists()
