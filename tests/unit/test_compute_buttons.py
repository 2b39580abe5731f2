"""The buttons of a compute's page follow Compute.allowed_verbs: by state, kind and role.
The expectations are written out here by hand (what a user should be offered), so a wrong
rule in allowed_verbs or a template that ignores it fails."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from compute.actions import attached as attach_actions
from compute.actions import computes as actions
from compute.actions.attached import Connection
from compute.models import Compute, ComputeState, Node, NodeState, SecretKind, Tier, VmSize
from workspace.access import get_access

pytestmark = pytest.mark.django_db
S = ComputeState

BUTTONS = {
    "submit": ">Submit job</a>",
    "start": ">Start</button>",
    "start and submit": ">Start and submit job</button>",
    "retry start": ">Retry start</button>",
    "stop": ">Stop</button>",
    "restart": ">Restart</button>",
    "keep running": ">Keep running</button>",
    "idle": ">Idle &amp; schedules</a>",
    "token": ">Activity token</button>",
    "resize": ">Resize</a>",
    "delete": ">Delete</button>",
    "preempt": ">Preempt</button>",
    "edit": ">Edit connection</a>",
    "validate": ">Validate again</button>",
    "retry validation": ">Retry validation</button>",
    "detach": ">Detach</button>",
}
INSTANCE_TOOLS = {"idle", "token"}  # the instance's settings, on every state but deleted


def shown(client, user, compute: Compute) -> set[str]:
    client.force_login(user)
    page = client.get(reverse("compute:detail", args=[compute.workspace.slug, compute.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    return {name for name, marker in BUTTONS.items() if marker in body}


def put_in(compute: Compute, state: str, **fields: object) -> Compute:
    """Test setup: the compute as a reconciler or an action would have left it."""
    Compute.objects.filter(pk=compute.pk).update(state=state, **fields)
    return Compute.objects.get(pk=compute.pk)


@pytest.fixture
def size() -> VmSize:
    return VmSize.objects.get(name="Standard_DS3_v2")


@pytest.fixture
def instance(team, size, django_capture_on_commit_callbacks) -> Compute:
    with django_capture_on_commit_callbacks():
        return actions.create_instance(
            get_access(team.admin, team.workspace.slug), name="box", vm_size=size
        )


@pytest.fixture
def cluster(team, size, django_capture_on_commit_callbacks) -> Compute:
    with django_capture_on_commit_callbacks():
        return actions.create_cluster(
            get_access(team.admin, team.workspace.slug),
            name="pool",
            vm_size=size,
            tier=Tier.LOW_PRIORITY,
            min_nodes=0,
            max_nodes=2,
        )


INSTANCE_CONTRIBUTOR = {
    S.CREATING: {"submit", "stop", *INSTANCE_TOOLS},
    S.RUNNING: {"submit", "restart", "stop", *INSTANCE_TOOLS},
    S.STOPPING: INSTANCE_TOOLS,  # no new jobs: the server would refuse them
    S.STOPPED: {"start", "start and submit", *INSTANCE_TOOLS},
    S.STARTING: {"submit", "stop", *INSTANCE_TOOLS},
    S.RESTARTING: {"submit", "stop", *INSTANCE_TOOLS},
    S.FAILED: {"retry start", *INSTANCE_TOOLS},
    S.DELETING: INSTANCE_TOOLS,
    S.DELETED: set(),
}


@pytest.mark.parametrize("state", list(INSTANCE_CONTRIBUTOR))
def test_an_instance_offers_what_its_state_allows(client, team, instance, state):
    box = put_in(instance, state)
    assert shown(client, team.contributor, box) == INSTANCE_CONTRIBUTOR[state]
    can_delete = state not in (S.DELETING, S.DELETED)
    assert shown(client, team.admin, box) == INSTANCE_CONTRIBUTOR[state] | (
        {"delete"} if can_delete else set()
    )
    assert shown(client, team.reader, box) == set()


def test_keep_running_only_while_an_idle_deadline_stands(client, team, instance):
    box = put_in(instance, S.RUNNING, idle_deadline=timezone.now() + timedelta(minutes=30))
    assert "keep running" in shown(client, team.contributor, box)
    box = put_in(instance, S.RUNNING, idle_deadline=None)
    assert "keep running" not in shown(client, team.contributor, box)


CLUSTER_CONTRIBUTOR = {
    S.CREATING: {"submit", "resize"},
    S.STEADY: {"submit", "resize"},
    S.RESIZING: {"submit", "resize"},
    S.FAILED: {"resize"},
    S.DELETING: set(),
}


@pytest.mark.parametrize("state", list(CLUSTER_CONTRIBUTOR))
def test_a_cluster_offers_what_its_state_allows(client, team, cluster, state):
    pool = put_in(cluster, state)
    assert shown(client, team.contributor, pool) == CLUSTER_CONTRIBUTOR[state]
    admin = CLUSTER_CONTRIBUTOR[state] | ({"delete"} if state != S.DELETING else set())
    assert shown(client, team.admin, pool) == admin


def test_only_admins_preempt_and_only_nodes_that_are_up(client, team, cluster):
    Node.objects.create(compute=cluster, index=1, state=NodeState.IDLE, container_ref="c1")
    Node.objects.create(compute=cluster, index=2, state=NodeState.PREPARING)
    pool = put_in(cluster, S.STEADY)
    client.force_login(team.admin)
    body = client.get(reverse("compute:detail", args=[team.workspace.slug, pool.pk])).content
    assert body.decode().count(BUTTONS["preempt"]) == 1  # n-1 is up; n-2 is not yet
    assert "preempt" not in shown(client, team.contributor, pool)
    Compute.objects.filter(pk=pool.pk).update(tier=Tier.DEDICATED)
    assert "preempt" not in shown(client, team.admin, pool)  # a dedicated node is never taken


ATTACHED_CONTRIBUTOR = {
    S.CREATING: {"submit", "edit", "detach"},
    S.STEADY: {"submit", "edit", "validate", "detach"},
    S.FAILED: {"edit", "retry validation", "detach"},
    S.DELETING: set(),
}


@pytest.mark.parametrize("state", list(ATTACHED_CONTRIBUTOR))
def test_an_attached_target_offers_what_its_state_allows(
    client, team, state, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks():
        target = attach_actions.attach(
            get_access(team.contributor, team.workspace.slug),
            target_kind="remote_vm",
            name="gpu-box",
            max_concurrent_jobs=1,
            connection=Connection("gpu-box.lab", 22, "ml", SecretKind.PASSWORD, "hunter2"),
        )
    target = put_in(target, state, last_error="refused" if state == S.FAILED else "")
    assert shown(client, team.contributor, target) == ATTACHED_CONTRIBUTOR[state]
    assert shown(client, team.admin, target) == ATTACHED_CONTRIBUTOR[state]  # no Delete
    assert shown(client, team.reader, target) == set()


def test_start_and_submit_starts_the_instance_then_opens_the_submit_form(
    client, team, instance, django_capture_on_commit_callbacks
):
    box = put_in(instance, S.STOPPED)
    client.force_login(team.contributor)
    url = reverse("compute:action", args=[team.workspace.slug, box.pk, "start"])
    with django_capture_on_commit_callbacks():
        response = client.post(url, {"then": "submit"})
    submit = reverse("compute:job-submit", args=[team.workspace.slug])
    assert response.status_code == 302
    assert response["Location"] == f"{submit}?compute={box.pk}"
    box.refresh_from_db()
    assert box.state == S.STARTING
    page = client.get(response["Location"]).content.decode()
    assert "Starting box: your job waits for it." in page
    assert f'<option value="{box.pk}" selected>box · compute instance · starting' in page


def test_start_and_submit_refused_stays_on_the_page_with_the_reason(client, team, instance):
    box = put_in(instance, S.RUNNING)  # a second tab started it a moment ago
    client.force_login(team.contributor)
    url = reverse("compute:action", args=[team.workspace.slug, box.pk, "start"])
    response = client.post(url, {"then": "submit"}, follow=True)
    assert response.redirect_chain[-1][0] == box.get_absolute_url()
    assert "box is already running." in response.content.decode()


def test_the_submit_form_greys_out_a_compute_that_takes_no_job_and_says_why(
    client, team, instance, cluster
):
    box = put_in(instance, S.STOPPED)
    client.force_login(team.contributor)
    url = reverse("compute:job-submit", args=[team.workspace.slug])
    page = client.get(url).content.decode()
    assert f'<option value="{box.pk}" disabled>' in page
    assert "box · compute instance · is stopped; start it first</option>" in page
    assert f'<option value="{cluster.pk}">pool · compute cluster · ' in page
    # A stale page (or a hand-made request) that sends it anyway: refused, nothing lost.
    response = client.post(url, {"compute": box.pk, "command": "python train.py", "node_count": 1})
    body = response.content.decode()
    assert response.status_code == 200
    assert "box is stopped; start it first." in body
    assert "python train.py" in body
    assert not box.jobs.exists()


def test_a_stopping_instance_says_why_it_takes_no_job(client, team, instance):
    box = put_in(instance, S.STOPPING)
    client.force_login(team.contributor)
    body = client.get(box.get_absolute_url()).content.decode()
    assert "No new jobs: box is stopping; start it again once it has stopped." in body
    client.force_login(team.reader)
    assert "No new jobs" not in client.get(box.get_absolute_url()).content.decode()
