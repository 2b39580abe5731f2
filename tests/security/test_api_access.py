"""Every API operation as every kind of caller: the roles of the pages, 404 for what is
not theirs, 401 without a live credential, 403 for a read-only token writing; and a
refusal changes nothing. A new operation without a rule here fails the last test."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from compute.api.main import api
from compute.inference.models import BatchJob, Deployment, Endpoint, RegisteredModel
from compute.models import (
    Attachment,
    Compute,
    ComputeState,
    EnvironmentImage,
    Event,
    Job,
    Node,
    QuotaRequest,
    Schedule,
    VmSize,
)
from tests.security.test_foreign_ids import failed_environment
from tests.support.factories import ComputeFactory, JobFactory, NodeFactory
from tests.support.inference import SCORING, make_batch, make_endpoint, make_model
from tests.support.outputs import with_outputs
from tests.support.teams import Team
from workspace.models import AccessToken, Role, Workspace
from workspace.tokens import create_token, revoke_token

pytestmark = pytest.mark.django_db

W = "/api/v1/workspaces/vision"


@dataclass(frozen=True)
class Case:
    method: str
    path: str  # {cluster}, {instance}, {job} filled per test
    least: str  # the least role that may do it
    body: dict | None = None
    multipart: bool = False


CASES = [
    Case("GET", W, Role.READER),
    Case("GET", f"{W}/members", Role.READER),
    Case("GET", f"{W}/computes", Role.READER),
    Case("GET", f"{W}/computes/{{cluster}}", Role.READER),
    Case("GET", f"{W}/computes/{{cluster}}/nodes", Role.READER),
    Case("GET", f"{W}/computes/{{cluster}}/events", Role.READER),
    Case("GET", f"{W}/jobs", Role.READER),
    Case("GET", f"{W}/jobs/{{job}}", Role.READER),
    Case("GET", f"{W}/jobs/{{job}}/wait?timeout=0", Role.READER),
    Case("GET", f"{W}/jobs/{{done}}/outputs", Role.READER),
    Case("GET", f"{W}/jobs/{{done}}/outputs.zip", Role.READER),
    Case("GET", f"{W}/jobs/{{done}}/outputs/model/weights.bin", Role.READER),
    Case(
        "POST",
        f"{W}/computes/clusters",
        Role.CONTRIBUTOR,
        {"name": "new-pool", "vm_size": "Standard_DS3_v2", "max_nodes": 2},
    ),
    Case(
        "POST",
        f"{W}/computes/instances",
        Role.CONTRIBUTOR,
        {"name": "new-box", "vm_size": "Standard_DS3_v2"},
    ),
    Case(
        "PATCH",
        f"{W}/computes/{{cluster}}",
        Role.CONTRIBUTOR,
        {"min_nodes": 0, "max_nodes": 3, "idle_seconds_before_scaledown": 60},
    ),
    Case("POST", f"{W}/computes/{{instance}}/start", Role.CONTRIBUTOR),
    Case("POST", f"{W}/computes/{{running}}/stop", Role.CONTRIBUTOR),
    Case("POST", f"{W}/computes/{{running}}/restart", Role.CONTRIBUTOR),
    Case("DELETE", f"{W}/computes/{{cluster}}", Role.ADMIN),
    Case(
        "POST",
        f"{W}/jobs",
        Role.CONTRIBUTOR,
        {"compute": "pool", "command": "python train.py"},
        multipart=True,
    ),
    Case("POST", f"{W}/jobs/{{job}}/cancel", Role.CONTRIBUTOR),
    Case("GET", f"{W}/quota", Role.READER),
    Case("GET", f"{W}/quota/what-if?vm_size=Standard_DS3_v2&count=2", Role.READER),
    Case("GET", f"{W}/quota/requests", Role.READER),
    Case(
        "POST",
        f"{W}/quota/requests",
        Role.CONTRIBUTOR,
        {"family": None, "cores": 5000, "justification": "a week of sweeps"},
    ),
    Case("GET", f"{W}/computes/{{running}}/idle", Role.READER),
    Case("PUT", f"{W}/computes/{{running}}/idle", Role.CONTRIBUTOR, {"idle_shutdown_minutes": 45}),
    Case("POST", f"{W}/computes/{{running}}/keep-running", Role.CONTRIBUTOR),
    Case("GET", f"{W}/computes/{{running}}/schedules", Role.READER),
    Case(
        "POST",
        f"{W}/computes/{{running}}/schedules",
        Role.CONTRIBUTOR,
        {"action": "stop", "cron": "0 19 * * 1-5", "timezone": "Europe/Berlin"},
    ),
    Case("DELETE", f"{W}/computes/{{running}}/schedules/{{schedule}}", Role.CONTRIBUTOR),
    Case(
        "POST",
        f"{W}/computes/attached/remote_vm",
        Role.CONTRIBUTOR,
        {
            "name": "lab-box",
            "host": "192.0.2.10",
            "username": "trainer",
            "secret_kind": "password",
            "password": "correct horse battery staple",
        },
    ),
    Case("GET", f"{W}/computes/{{attached}}/attachment", Role.READER),
    Case("GET", f"{W}/models", Role.READER),
    Case("GET", f"{W}/models/{{model}}", Role.READER),
    Case(
        "POST",
        f"{W}/models",
        Role.CONTRIBUTOR,
        {"name": "resnet", "upload": lambda: SimpleUploadedFile("m.onnx", b"onnx")},
        multipart=True,
    ),
    Case("GET", f"{W}/endpoints", Role.READER),
    Case("GET", f"{W}/endpoints/{{endpoint}}", Role.READER),
    Case("POST", f"{W}/endpoints", Role.CONTRIBUTOR, {"name": "ranker"}),
    Case("GET", f"{W}/endpoints/{{endpoint}}/keys", Role.CONTRIBUTOR),
    Case("POST", f"{W}/endpoints/{{endpoint}}/keys/secondary/regenerate", Role.CONTRIBUTOR),
    Case(
        "POST",
        f"{W}/endpoints/{{endpoint}}/deployments",
        Role.CONTRIBUTOR,
        {
            "name": "canary",
            "model": "iris",
            "scoring_script": SCORING,
            "vm_size": "Standard_DS3_v2",
        },
    ),
    Case("PUT", f"{W}/endpoints/{{endpoint}}/traffic", Role.CONTRIBUTOR, {"blue": 50, "green": 50}),
    Case("DELETE", f"{W}/endpoints/{{endpoint}}/deployments/{{green}}", Role.CONTRIBUTOR),
    Case("GET", f"{W}/batch-jobs", Role.READER),
    Case("GET", f"{W}/batch-jobs/{{batch}}", Role.READER),
    Case("GET", f"{W}/batch-jobs/{{batch}}/predictions", Role.READER),
    Case("GET", f"{W}/batch-jobs/{{batch}}/errors", Role.READER),
    Case("POST", f"{W}/batch-jobs/{{batch}}/cancel", Role.CONTRIBUTOR),
    Case(
        "POST",
        f"{W}/batch-jobs",
        Role.CONTRIBUTOR,
        {
            "name": "weekly",
            "model": "iris",
            "scoring_script": SCORING,
            "vm_size": "Standard_D2s_v3",
            "node_count": "1",
            "inputs": lambda: SimpleUploadedFile("a.txt", b"1,2"),
        },
        multipart=True,
    ),
    Case("GET", f"{W}/environments", Role.READER),
    Case("GET", f"{W}/environments/{{environment}}", Role.READER),
    Case("POST", f"{W}/environments/{{environment}}/build", Role.CONTRIBUTOR),
    Case("POST", f"{W}/computes/{{attached}}/validate", Role.CONTRIBUTOR),
    Case("POST", f"{W}/computes/{{attached}}/detach", Role.CONTRIBUTOR),
]
ROLES = [Role.READER, Role.CONTRIBUTOR, Role.ADMIN]


@pytest.fixture
def rows(team: Team) -> dict[str, int]:
    size = VmSize.objects.get(name="Standard_DS3_v2")
    cluster = ComputeFactory(workspace=team.workspace, name="pool", vm_size=size)
    NodeFactory(compute=cluster)
    instance = ComputeFactory(
        workspace=team.workspace, name="box", kind="instance", state=ComputeState.STOPPED,
        vm_size=size, max_nodes=1,
    )  # fmt: skip
    running = ComputeFactory(
        workspace=team.workspace, name="notebook", kind="instance", state=ComputeState.RUNNING,
        vm_size=size, max_nodes=1,
    )  # fmt: skip
    job = JobFactory(compute=cluster)
    schedule = Schedule.objects.create(compute=running, action="stop", cron="0 22 * * *")
    attached = ComputeFactory(
        workspace=team.workspace, name="lab", kind="attached", state=ComputeState.FAILED,
        vm_size=None, max_nodes=1,
    )  # fmt: skip
    Attachment.objects.create(
        compute=attached, target_kind="remote_vm", host="192.0.2.9", username="u"
    )
    model = make_model(team.workspace)
    return {
        "environment": failed_environment(team.workspace).pk,
        "model": model.pk,
        "endpoint": (endpoint := make_endpoint(team.workspace, model)).pk,
        "batch": make_batch(team.workspace, model).pk,
        "green": endpoint.deployments.get(name="green").pk,
        "cluster": cluster.pk,
        "instance": instance.pk,
        "running": running.pk,
        "job": job.pk,
        "done": with_outputs(JobFactory(compute=cluster)).pk,
        "schedule": schedule.pk,
        "attached": attached.pk,
    }


def snapshot() -> tuple:
    return (
        list(
            Compute.objects.order_by("pk").values_list(
                "pk", "state", "max_nodes", "idle_shutdown_minutes", "keep_running_until"
            )
        ),
        list(Schedule.objects.order_by("pk").values_list("pk", "cron")),
        QuotaRequest.objects.count(),
        list(Job.objects.order_by("pk").values_list("pk", "status", "cancel_requested_at")),
        Event.objects.count(),
        Node.objects.count(),
        RegisteredModel.objects.count(),
        list(Endpoint.objects.order_by("pk").values_list("pk", "secondary_key_hash")),
        list(Deployment.objects.order_by("pk").values_list("pk", "traffic")),
        list(EnvironmentImage.objects.order_by("pk").values_list("pk", "state")),
        list(BatchJob.objects.order_by("pk").values_list("pk", "state")),
    )


def call(case: Case, rows: dict[str, int], secret: str | None, client: Client | None = None) -> Any:
    client = client or Client()
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    path = case.path.format(**rows)
    send = getattr(client, case.method.lower())
    if case.body is None:
        return send(path, headers=headers)
    if case.multipart:
        return send(path, data=body_of(case), headers=headers)
    return send(path, data=case.body, content_type="application/json", headers=headers)


def body_of(case: Case) -> dict | None:
    """The case's body, with a fresh upload for each call (a file is read once)."""
    if case.body is None:
        return None
    return {key: value() if callable(value) else value for key, value in case.body.items()}


def token(user: Any, **limits: Any) -> str:
    return create_token(user, name="matrix", expires_in_days=30, **limits).secret


def label(case: Case) -> str:
    return f"{case.method} {case.path.removeprefix(W) or '/'}"


@pytest.mark.parametrize("case", CASES, ids=label)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_served_or_refused_as_on_the_pages(team, rows, case, role):
    user = {Role.READER: team.reader, Role.CONTRIBUTOR: team.contributor, Role.ADMIN: team.admin}[
        role
    ]
    before = snapshot()
    response = call(case, rows, token(user))
    allowed = ROLES.index(role) >= ROLES.index(case.least)
    if allowed:
        assert response.status_code in (200, 201, 202, 204), response.content
        if case.method != "GET":
            assert snapshot() != before, "served, but nothing changed"
    else:
        assert response.status_code == 403, response.content
        assert "role" in response.json()["detail"]
        assert snapshot() == before


@pytest.mark.parametrize("case", CASES, ids=label)
def test_strangers_and_dead_credentials_reach_nothing(team, rows, case):
    """Anonymous, revoked and expired: 401. A member of another workspace, or a token of
    the admin's limited to another workspace: 404. Nothing changes."""
    before = snapshot()
    revoked = create_token(team.admin, name="old", expires_in_days=30)
    revoke_token(team.admin, revoked.token.pk)
    expired = create_token(team.admin, name="expired", expires_in_days=1)
    AccessToken.objects.filter(pk=expired.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    for secret in (None, revoked.secret, expired.secret, "hgr_deadbeef_forged", "garbage"):
        response = call(case, rows, secret)
        assert response.status_code == 401, (secret, response.content)
        assert "Authorization: Bearer" in response.json()["detail"]
    other = Workspace.objects.get(slug="vision-other")
    outsider = other.memberships.get().user
    assert call(case, rows, token(outsider)).status_code == 404
    team.admin.memberships.create(workspace=other, role=Role.ADMIN)
    limited = token(team.admin, workspace=other)
    assert call(case, rows, limited).status_code == 404
    assert snapshot() == before


@pytest.mark.parametrize("case", CASES, ids=label)
def test_a_read_only_token_reads_and_never_writes(team, rows, case):
    before = snapshot()
    response = call(case, rows, token(team.admin, read_only=True))
    if case.method == "GET":
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert response.json() == {"detail": "This token is read-only: make one that may write."}
    assert snapshot() == before


@pytest.mark.parametrize("case", [c for c in CASES if c.method != "GET"], ids=label)
def test_a_browser_session_writes_only_with_its_csrf_token(team, rows, case):
    """The signed-in browser may call the API; a write without the CSRF token (what a
    page of another site would send) is refused and changes nothing."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(team.admin)
    before = snapshot()
    refused = call(case, rows, None, browser)
    assert refused.status_code == 403 and snapshot() == before
    browser.get("/")  # the page sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value
    path = case.path.format(**rows)
    send = getattr(browser, case.method.lower())
    kwargs: dict[str, Any] = {"headers": {"X-CSRFToken": csrf}}
    if case.body is not None:
        kwargs["data"] = body_of(case)
        if not case.multipart:
            kwargs["content_type"] = "application/json"
    assert send(path, **kwargs).status_code in (200, 201, 202, 204)


def test_every_operation_has_a_rule():
    """An operation added to the API without a case here fails: the matrix is the list."""
    covered = {(c.method, c.path.removeprefix("/api/v1").split("?")[0]) for c in CASES}
    workspace_scoped = set()
    for _prefix, router in api._routers:
        for path, path_view in router.path_operations.items():
            for operation in path_view.operations:
                if "{slug}" not in path:
                    continue
                for method in operation.methods:
                    concrete = (
                        path.replace("{slug}", "vision")
                        .replace("{int:compute_id}", "{compute}")
                        .replace("{int:job_id}", "{job}")
                        .replace("{int:schedule_id}", "{schedule}")
                        .replace("{kind}", "remote_vm")
                        .replace("{int:model_id}", "{model}")
                        .replace("{int:endpoint_id}", "{endpoint}")
                        .replace("{slot}", "secondary")
                        .replace("{int:deployment_id}", "{green}")
                        .replace("{int:environment_id}", "{environment}")
                        .replace("{int:batch_id}", "{batch}")
                        .replace("{path:path}", "model/weights.bin")
                    )
                    workspace_scoped.add((method, concrete))
    normalized = {
        (
            m,
            re.sub(r"\{(cluster|instance|running|attached)\}", "{compute}", p).replace(
                "{done}", "{job}"
            ),
        )
        for m, p in covered
    }
    missing = {
        (m, p)
        for m, p in workspace_scoped
        if (m, p) not in normalized and not p.endswith(("/output", "/follow"))
    }
    assert not missing, f"no access rule for {sorted(missing)}"
