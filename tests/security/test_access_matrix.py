"""The access matrix, as NetBox generates permission tests per view: every workspace route,
walked from the URL patterns, GET and POST, as a reader, a contributor and an admin of the
workspace. MATRIX says the least role each method needs; below it the answer is 403 and no
row of any table changes, at or above it the request is served (never 403 or 404).

A POST carries data that would do the route's work, and `changes` says that it does when
allowed: so "nothing changed" on a refusal means the refusal stopped it, not a form error.
Each request runs in a savepoint rolled back afterwards: every one starts from the same rows.

Anonymous visitors and outsiders (with the victim's ids under their own workspace too) are
walked in test_foreign_ids.py; a route missing from MATRIX fails `test_every_route_has_a_rule`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.db.models import Model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from compute.inference.models import BatchJob, Deployment, Endpoint, RegisteredModel
from compute.lib import jobfiles
from compute.models import (
    Attachment,
    Compute,
    DefaultEnvironment,
    Environment,
    EnvironmentImage,
    Event,
    FamilyQuota,
    Job,
    JobRun,
    Node,
    QuotaRequest,
    Reminder,
    Schedule,
    VmFamily,
    VmSize,
    WorkspaceQuota,
)
from tests.security.test_foreign_ids import failed_environment, workspace_routes
from tests.support.factories import (
    ComputeFactory,
    JobFactory,
    MembershipFactory,
    NodeFactory,
    UserFactory,
)
from tests.support.inference import SCORING, make_batch, make_endpoint, make_model
from tests.support.outputs import with_outputs
from tests.support.teams import Team
from workspace.models import Activity, Invitation, Membership, Notification, Role, Workspace

pytestmark = pytest.mark.django_db

R, C, A = Role.READER, Role.CONTRIBUTOR, Role.ADMIN
ROLES = (R, C, A)
POST_ONLY = None  # as `get`: the route answers POST only (405 to a GET allowed past the role)


@dataclass(frozen=True)
class Case:
    """One way to call a route: the least role for GET and for POST, the objects its ids
    name (a key of `victim`), fixed values, and the data a POST carries."""

    get: Role | None
    post: Role
    ids: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)
    data: Callable[[dict], dict] | None = None
    query: Callable[[dict], dict] | None = None  # a query string, GET and POST alike
    # An allowed POST with `data` changes rows (a page that only shows must change none).
    changes: bool = False


def page(minimum: Role = R, **ids: str) -> Case:
    """A page that shows and changes nothing: a POST is answered like a GET and writes nothing."""
    return Case(get=minimum, post=minimum, ids=ids)


def instance_form(v: dict) -> dict:
    return {"name": "new-box", "vm_size": v["size"].pk, "idle_shutdown_minutes": "60"}


def cluster_form(v: dict) -> dict:
    return {
        "name": "new-pool",
        "vm_size": v["size"].pk,
        "tier": "dedicated",
        "min_nodes": "0",
        "max_nodes": "1",
        "idle_seconds_before_scaledown": "120",
    }


def deployment_form(v: dict) -> dict:
    return {
        "name": "canary",
        "model": v["model"].pk,
        "target": "managed_cluster",
        "vm_size": v["size"].pk,
        "min_replicas": "0",
        "max_replicas": "2",
        "target_in_flight": "4",
        "request_timeout_ms": "5000",
        "scoring_script": SCORING,
    }


def batch_form(v: dict) -> dict:
    return {
        "name": "weekly",
        "model": v["model"].pk,
        "vm_size": v["size"].pk,
        "tier": "dedicated",
        "node_count": "1",
        "mini_batch_size": "10",
        "max_attempts": "3",
        "scoring_script": SCORING,
        "inputs": [SimpleUploadedFile("a.txt", b"1,2"), SimpleUploadedFile("b.txt", b"3,4")],
    }


def try_body(v: dict) -> dict:
    return {"body": '{"data": [[1, 2]]}'}


def primary_slot(v: dict) -> dict:
    return {"slot": "primary"}


def traffic_form(v: dict) -> dict:
    return {f"traffic_{d.pk}": "50" for d in v["endpoint"].deployments.all()}


def connection_form(v: dict) -> dict:
    return {
        "name": "lab-box",
        "host": "lab-box.example",
        "port": "22",
        "username": "ml",
        "secret_kind": "password",
        "password": "s3cret-pw",
        "max_concurrent_jobs": "2",
    }


MATRIX: dict[str, tuple[Case, ...]] = {
    # Workspace pages.
    "workspace:overview": (page(),),
    "workspace:activity": (page(),),
    "workspace:members": (page(),),
    "workspace:settings": (
        Case(A, A, data=lambda v: {"name": "Renamed", "description": "x"}, changes=True),
        # The node placement form posts to the same page.
        Case(A, A, data=lambda v: {"node_placement": "spread"}, changes=True),
    ),
    "workspace:member-add": (
        Case(POST_ONLY, A, data=lambda v: {"identifier": "newcomer", "role": R}, changes=True),
    ),
    "workspace:member-role": (
        Case(
            POST_ONLY,
            A,
            ids={"membership_id": "bystander"},
            data=lambda v: {"role": A},
            changes=True,
        ),
    ),
    "workspace:member-remove": (
        # Removing someone else is an admin's; leaving is every member's.
        Case(POST_ONLY, A, ids={"membership_id": "bystander"}, changes=True),
        Case(POST_ONLY, R, ids={"membership_id": "own"}, changes=True),
    ),
    "workspace:invitation-revoke": (
        Case(POST_ONLY, A, ids={"invitation_id": "invitation"}, changes=True),
    ),
    # Compute.
    "compute:list": (page(),),
    "compute:burning": (page(),),
    "compute:detail": (page(pk="instance"), page(pk="cluster"), page(pk="attached")),
    "compute:create": (
        Case(C, C, fixed={"kind": "instance"}, data=instance_form, changes=True),
        Case(C, C, fixed={"kind": "cluster"}, data=cluster_form, changes=True),
    ),
    "compute:attach": (page(C),),
    "compute:attach-kind": (
        Case(C, C, fixed={"kind": "remote_vm"}, data=connection_form, changes=True),
    ),
    "compute:attach-edit": (
        Case(C, C, ids={"pk": "attached"}, data=connection_form, changes=True),
    ),
    "compute:attached-action": (
        Case(C, C, ids={"pk": "attached"}, fixed={"verb": "validate"}, changes=True),
        Case(C, C, ids={"pk": "attached"}, fixed={"verb": "detach"}, changes=True),
    ),
    "compute:resize": (
        Case(
            C,
            C,
            ids={"pk": "cluster"},
            data=lambda v: {"min_nodes": 0, "max_nodes": 3, "idle_seconds_before_scaledown": 60},
            changes=True,
        ),
    ),
    "compute:node-preempt": (
        Case(POST_ONLY, A, ids={"pk": "cluster", "node_id": "node"}, changes=True),
    ),
    "compute:action": (
        # A GET never acts: it shows the compute (a redirect to its page).
        Case(C, C, ids={"pk": "instance"}, fixed={"verb": "stop"}, changes=True),
        Case(C, C, ids={"pk": "instance"}, fixed={"verb": "restart"}, changes=True),
        Case(C, C, ids={"pk": "stopped"}, fixed={"verb": "start"}, changes=True),
        Case(C, A, ids={"pk": "instance"}, fixed={"verb": "delete"}, changes=True),
    ),
    "compute:keep-running": (Case(C, C, ids={"pk": "instance"}, changes=True),),
    "compute:idle": (
        Case(
            C,
            C,
            ids={"pk": "instance"},
            data=lambda v: {"idle_shutdown_minutes": "120"},
            changes=True,
        ),
    ),
    "compute:schedule-add": (
        Case(
            POST_ONLY,
            C,
            ids={"pk": "instance"},
            data=lambda v: {
                "action": "stop",
                "mode": "cron",
                "cron": "0 20 * * *",
                "timezone": "UTC",
            },
            changes=True,
        ),
    ),
    "compute:schedule-delete": (
        Case(POST_ONLY, C, ids={"pk": "instance", "schedule_id": "schedule"}, changes=True),
    ),
    "compute:token": (Case(POST_ONLY, C, ids={"pk": "instance"}, changes=True),),
    # Quota.
    "compute:quota": (
        # Readers see the quota page; lowering a limit is an admin's.
        Case(R, A, data=lambda v: {"family": v["family"].pk, "limit": "8"}, changes=True),
    ),
    "compute:quota-request": (
        Case(
            C,
            C,
            data=lambda v: {"family": v["family"].pk, "cores": "48", "justification": "ViT"},
            changes=True,
        ),
    ),
    "compute:what-if": (
        page(),
        # The live quota line under a form, for a family and for the pool never used yet.
        Case(R, R, query=lambda v: {"vm_size": v["gpu_size"].pk}),
        Case(R, R, query=lambda v: {"vm_size": v["size"].pk, "tier": "low_priority"}),
    ),
    # Environments.
    "compute:environments": (page(),),
    "compute:environment": (page(pk="environment"),),
    "compute:environment-create": (
        Case(
            C, C, data=lambda v: {"name": "nlp", "debian_packages": "python3-numpy"}, changes=True
        ),
    ),
    "compute:environment-build": (Case(POST_ONLY, C, ids={"pk": "environment"}, changes=True),),
    "compute:environment-default": (Case(POST_ONLY, A, ids={"pk": "environment"}, changes=True),),
    # Inference.
    "inference:models": (page(),),
    "inference:model": (page(pk="model"),),
    "inference:model-create": (
        Case(
            C,
            C,
            data=lambda v: {"name": "resnet", "upload": SimpleUploadedFile("m.onnx", b"onnx")},
            changes=True,
        ),
    ),
    "inference:endpoints": (page(),),
    "inference:endpoint": (page(pk="endpoint"),),
    "inference:endpoint-create": (Case(C, C, data=lambda v: {"name": "ranker"}, changes=True),),
    "inference:deployment-create": (
        Case(C, C, ids={"pk": "endpoint"}, data=deployment_form, changes=True),
    ),
    "inference:key": (
        Case(
            POST_ONLY, C, ids={"pk": "endpoint"}, data=lambda v: {"slot": "primary"}, changes=True
        ),
    ),
    "inference:deployment-delete": (
        Case(POST_ONLY, C, ids={"pk": "endpoint", "deployment_id": "green"}, changes=True),
    ),
    # Sends one request through the gateway (none answers here): it changes no row.
    "inference:try": (Case(POST_ONLY, C, ids={"pk": "endpoint"}, data=try_body),),
    # Reads a replica's output through the driver: a page, for every member.
    "inference:replica-log": (page(pk="endpoint", node_id="replica"),),
    "inference:traffic": (
        Case(POST_ONLY, C, ids={"pk": "endpoint"}, data=traffic_form, changes=True),
    ),
    "inference:batches": (page(),),
    "inference:batch": (page(pk="batch"),),
    "inference:batch-create": (Case(C, C, data=batch_form, changes=True),),
    "inference:batch-cancel": (Case(POST_ONLY, C, ids={"pk": "batch"}, changes=True),),
    "inference:batch-predictions": (page(pk="batch"),),
    "inference:batch-errors": (page(pk="batch"),),
    # Jobs.
    "compute:jobs": (page(),),
    "compute:job": (page(pk="job"),),
    "compute:job-log": (page(pk="job", rank="rank"),),
    "compute:job-submit": (
        Case(
            C,
            C,
            data=lambda v: {"compute": v["cluster"].pk, "command": "true", "node_count": 1},
            changes=True,
        ),
    ),
    "compute:job-cancel": (Case(POST_ONLY, C, ids={"pk": "job"}, changes=True),),
    "compute:job-outputs-zip": (page(pk="done_job"),),
    "compute:job-output-file": (
        Case(get=R, post=R, ids={"pk": "done_job"}, fixed={"path": "model/weights.bin"}),
    ),
}


@pytest.fixture
def victim(team: Team, jobs_dir: Path) -> dict[str, Any]:
    """One of every object a workspace route names, in the team's workspace, in a state
    where the route's work can be done (a running instance to stop, a stopped one to
    start, an up node of a low-priority cluster to preempt, a job with output to read)."""
    workspace = team.workspace
    instance = ComputeFactory(workspace=workspace, instance=True, name="notebook")
    cluster = ComputeFactory(workspace=workspace, name="trainers", tier="low_priority")
    attached = ComputeFactory(workspace=workspace, attached=True, name="lab-gpu")
    Attachment.objects.create(compute=attached, target_kind="remote_vm", host="10.0.0.9")
    job = JobFactory(compute=cluster)
    run = JobRun.objects.create(job=job, rank=0, node_name="n-1", container="none")
    jobfiles.prepare_run_dir(run.key)
    jobfiles.write_output(run.key, 0, b"epoch 1\n")
    family = VmFamily.objects.get(name="DSv2")
    FamilyQuota.objects.update_or_create(
        workspace=workspace, family=family, defaults={"limit": 24, "approved": 24}
    )
    bystander = UserFactory(username=f"{workspace.slug}-bystander")
    model = make_model(workspace)
    # A second admin: the admin may leave too (the last admin may not).
    MembershipFactory(workspace=workspace, user=UserFactory(username="co-admin"), role=A)
    return {
        "instance": instance,
        "stopped": ComputeFactory(workspace=workspace, stopped=True, name="paused"),
        "cluster": cluster,
        "node": NodeFactory(compute=cluster, running=True),
        "attached": attached,
        "job": job,
        "done_job": with_outputs(JobFactory(compute=cluster)),
        "schedule": Schedule.objects.create(compute=instance, action="stop", cron="0 19 * * *"),
        "bystander": MembershipFactory(workspace=workspace, user=bystander, role=R),
        "invitation": Invitation.objects.create(
            workspace=workspace,
            identifier="someone@example.com",
            invited_by=team.admin,
            expires_at=timezone.now() + timedelta(days=7),
        ),
        "family": family,
        "environment": failed_environment(workspace),
        "model": model,
        "endpoint": (endpoint := make_endpoint(workspace, model)),
        "batch": make_batch(workspace, model),
        "green": endpoint.deployments.get(name="green"),
        "replica": replica_of(endpoint, "blue"),
        "size": VmSize.objects.get(name="Standard_DS3_v2"),
        "gpu_size": VmSize.objects.get(name="Standard_NC6s_v3"),
    }


def replica_of(endpoint: Endpoint, name: str) -> Node:
    """A replica (a node of its own cluster) of the endpoint's deployment `name`."""
    deployment = endpoint.deployments.get(name=name)
    compute = ComputeFactory(
        workspace=endpoint.workspace, serving={"deployment": deployment.pk, "model": 0}
    )
    Deployment.objects.filter(pk=deployment.pk).update(compute=compute)
    return NodeFactory(compute=compute, state="idle")


# Every table a workspace route may write to, whole rows: a refusal leaves all as they were.
WATCHED: tuple[type[Model], ...] = (
    Workspace,
    Membership,
    Invitation,
    Activity,
    Notification,
    Compute,
    Node,
    Job,
    JobRun,
    Schedule,
    Reminder,
    Attachment,
    Event,
    QuotaRequest,
    FamilyQuota,
    WorkspaceQuota,
    Environment,
    EnvironmentImage,
    DefaultEnvironment,
    RegisteredModel,
    Endpoint,
    Deployment,
    BatchJob,
)


def rows() -> list[list[tuple]]:
    return [sorted(model.objects.values_list(), key=repr) for model in WATCHED]


def url_of(name: str, parameters: list[str], case: Case, v: dict, user: object) -> str:
    """The route's URL with the case's ids and values (and query string) filled in."""
    kwargs: dict[str, object] = {"slug": v["slug"]}
    for parameter in parameters[1:]:
        if parameter in case.fixed:
            kwargs[parameter] = case.fixed[parameter]
        elif case.ids.get(parameter) == "own":
            kwargs[parameter] = Membership.objects.get(workspace__slug=v["slug"], user=user).pk
        elif case.ids.get(parameter) == "rank":
            kwargs[parameter] = 0
        else:
            kwargs[parameter] = v[case.ids[parameter]].pk
    query = f"?{urlencode(case.query(v))}" if case.query else ""
    return reverse(name, kwargs=kwargs) + query


def allows(role: Role, minimum: Role) -> bool:
    return Role.rank(role) >= Role.rank(minimum)


def attempt(client: Client, method: str, url: str, data: dict, before: list) -> tuple[int, bool]:
    """The status and whether any watched row changed, with every change then undone (so
    `before` holds for every request of a test)."""
    with transaction.atomic():
        response = client.get(url) if method == "get" else client.post(url, data)
        changed = rows() != before
        transaction.set_rollback(True)
    return response.status_code, changed


def test_every_route_has_a_rule():
    """A new workspace route fails here until MATRIX says who may call it."""
    routes = dict(workspace_routes())
    assert set(MATRIX) == set(routes), set(routes) ^ set(MATRIX)
    for name, cases in MATRIX.items():
        assert cases, name
        for case in cases:
            named = set(case.ids) | set(case.fixed)
            assert named == set(routes[name][1:]), (name, named)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", ["get", "post"])
def test_each_role_gets_what_the_matrix_says(client, team, victim, role, method):
    """Below the least role: 403, and no row changed. At or above: served, and an allowed
    POST does the route's work (or, for a page, changes nothing)."""
    user = {R: team.reader, C: team.contributor, A: team.admin}[role]
    client.force_login(user)
    victim["slug"] = team.workspace.slug
    before = rows()
    wrong = []
    for name, parameters in workspace_routes():
        for case in MATRIX[name]:
            url = url_of(name, parameters, case, victim, user)
            data = case.data(victim) if case.data and method == "post" else {}
            minimum = case.post if method == "post" else case.get or case.post
            status, changed = attempt(client, method, url, data, before)
            if not allows(role, minimum):
                expected = "403, nothing changed"
                ok = status == 403 and not changed
                if method == "get" and case.get is POST_ONLY:
                    # Refused either way: the role check (403) may come before the method's.
                    ok = status in (403, 405) and not changed
            elif method == "get" and case.get is POST_ONLY:
                expected = "405, nothing changed"
                ok = status == 405 and not changed
            elif method == "get" or not case.changes:
                expected = "served, nothing changed"
                ok = status in (200, 302) and not changed
            else:
                expected = "served, and done"
                ok = status in (200, 302) and changed
            if not ok:
                wrong.append((url, f"expected {expected}; got {status}, changed={changed}"))
    if wrong:
        pytest.fail("\n".join(f"{url}: {why}" for url, why in wrong), pytrace=False)
