"""Every workspace route, walked from the URL patterns: an anonymous visitor is sent to log
in, an outsider gets 404 on the victim's workspace, and an outsider who puts the victim's
ids under their own workspace gets 404 too — GET and POST — and nothing changes.

A new workspace route without an entry in OBJECTS fails `test_every_workspace_route_is_walked`.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from compute.models import (
    Attachment,
    Compute,
    Environment,
    EnvironmentImage,
    Event,
    ImageState,
    Job,
    Node,
    Schedule,
)
from tests.support.factories import ComputeFactory, JobFactory, NodeFactory
from tests.support.inference import make_batch, make_endpoint, make_model
from tests.support.outputs import with_outputs
from workspace.models import Invitation, Membership, Workspace

pytestmark = pytest.mark.django_db

# The id each route parameter names, taken from the victim's objects; `None`: a fixed value.
FIXED = {"kind": "instance", "verb": "stop", "rank": 0, "path": "model/weights.bin"}
PARAMETERS = {
    "pk": "compute",
    "node_id": "node",
    "schedule_id": "schedule",
    "membership_id": "membership",
    "invitation_id": "invitation",
    "deployment_id": "deployment",
}
# Routes whose `pk` is not a compute's.
PK_IS = {
    "compute:job": "job",
    "compute:job-cancel": "job",
    "compute:job-log": "job",
    "compute:job-outputs-zip": "job",
    "compute:job-output-file": "job",
    "compute:environment": "environment",
    "compute:environment-build": "environment",
    "compute:environment-default": "environment",
    "inference:model": "model",
    "inference:endpoint": "endpoint",
    "inference:deployment-create": "endpoint",
    "inference:key": "endpoint",
    "inference:traffic": "endpoint",
    "inference:deployment-delete": "endpoint",
    "inference:try": "endpoint",
    "inference:replica-log": "endpoint",
    "inference:batch": "batch",
    "inference:batch-cancel": "batch",
    "inference:batch-predictions": "batch",
    "inference:batch-errors": "batch",
}
# Routes that answer an id not of this workspace as one just removed in another tab.
SAME_AS_GONE = {"workspace:member-role", "workspace:member-remove", "workspace:invitation-revoke"}


class Gone:
    pk = 987_654_321  # no row has it


GONE = {"membership": Gone(), "invitation": Gone()}
# Attached-compute routes take an attached compute's pk.
ATTACHED = {"compute:attach-edit", "compute:attached-action"}


def workspace_routes() -> list[tuple[str, list[str]]]:
    """(namespaced name, parameter names) of every route under w/<slug>/."""
    found: list[tuple[str, list[str]]] = []

    def walk(patterns: list, namespace: str, prefix: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, inner, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern) and entry.name:
                route = prefix + str(entry.pattern)
                if route.startswith("w/<slug:slug>/"):
                    found.append((namespace + entry.name, re.findall(r"<\w+:(\w+)>", route)))

    walk(get_resolver().url_patterns, "", "")
    return found


@pytest.fixture
def victim(team):
    """One of every object a workspace route can name, in the victim's workspace."""
    instance = ComputeFactory(workspace=team.workspace, instance=True)
    attached = ComputeFactory(workspace=team.workspace, attached=True)
    Attachment.objects.create(compute=attached, target_kind="remote_vm", host="10.0.0.9")
    return {
        "compute": instance,
        "attached": attached,
        "node": NodeFactory(compute=ComputeFactory(workspace=team.workspace)),
        # Ended with output files: their downloads have something to refuse.
        "job": with_outputs(JobFactory(compute=instance)),
        "environment": failed_environment(team.workspace),
        "model": (model := make_model(team.workspace)),
        "endpoint": (endpoint := make_endpoint(team.workspace, model)),
        "batch": make_batch(team.workspace, model),
        "deployment": endpoint.deployments.get(name="green"),
        "schedule": Schedule.objects.create(compute=instance, action="stop", cron="0 19 * * *"),
        "membership": Membership.objects.get(workspace=team.workspace, user=team.reader),
        "invitation": Invitation.objects.create(
            workspace=team.workspace,
            identifier="someone@example.com",
            invited_by=team.admin,
            expires_at=timezone.now() + timedelta(days=7),
        ),
    }


def failed_environment(workspace: Workspace) -> Environment:
    """An environment whose image failed to build: "Build again" has work to do."""
    image = EnvironmentImage.objects.create(
        spec_hash=f"f{workspace.pk:015x}", tag="hangar/env-x", state=ImageState.FAILED
    )
    return Environment.objects.create(workspace=workspace, name="tabular", image=image)


def url_for(name: str, parameters: list[str], slug: str, victim: dict) -> str:
    kwargs: dict[str, object] = {"slug": slug}
    for parameter in parameters[1:]:
        if parameter in FIXED:
            kwargs[parameter] = FIXED[parameter]
            continue
        kind = PARAMETERS[parameter]
        if parameter == "pk":
            kind = PK_IS.get(name, "attached" if name in ATTACHED else "compute")
        kwargs[parameter] = victim[kind].pk
    return reverse(name, kwargs=kwargs)


def snapshot(workspace: Workspace) -> tuple:
    """What a refused request must leave as it was."""
    return (
        sorted(Compute.objects.filter(workspace=workspace).values_list("pk", "state", "name")),
        sorted(Job.objects.filter(workspace=workspace).values_list("pk", "status")),
        sorted(Node.objects.filter(compute__workspace=workspace).values_list("pk", "state")),
        Schedule.objects.filter(compute__workspace=workspace).count(),
        sorted(Membership.objects.filter(workspace=workspace).values_list("pk", "role")),
        sorted(Invitation.objects.filter(workspace=workspace).values_list("pk", "state")),
        Event.objects.filter(compute__workspace=workspace).count(),
        sorted(Environment.objects.filter(workspace=workspace).values_list("pk", "image__state")),
    )


def test_every_workspace_route_is_walked():
    names = {name for name, _ in workspace_routes()}
    assert len(names) >= 30
    for name, parameters in workspace_routes():
        for parameter in parameters[1:]:
            assert parameter in FIXED or parameter in PARAMETERS, (name, parameter)


@pytest.mark.parametrize("method", ["get", "post"])
def test_anonymous_visitors_are_sent_to_log_in(client, team, victim, method):
    before = snapshot(team.workspace)
    for name, parameters in workspace_routes():
        url = url_for(name, parameters, team.workspace.slug, victim)
        response = getattr(client, method)(url)
        assert response.status_code == 302, (name, response.status_code)
        assert response["Location"].startswith(reverse("login")), name
    assert snapshot(team.workspace) == before


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_outsider_finds_nothing_of_another_workspace(client, team, victim, method):
    """404 on the victim's workspace, and 404 with the victim's ids under the outsider's own
    workspace (where the outsider is an admin: a role there must not reach across)."""
    own = Workspace.objects.get(slug=f"{team.workspace.slug}-other")
    client.force_login(team.outsider)
    before = snapshot(team.workspace)
    answered = []
    for name, parameters in workspace_routes():
        for slug in (team.workspace.slug, own.slug):
            if slug == own.slug and all(p in FIXED for p in parameters[1:]):
                continue  # a route with no id of the victim's: nothing foreign to ask for
            url = url_for(name, parameters, slug, victim)
            response = getattr(client, method)(url)
            status = response.status_code
            # A GET of a POST-only route is refused before any id is looked at (the same
            # answer for every id, so it tells nothing).
            if status == 404 or (method == "get" and status == 405):
                continue
            if slug == own.slug and name in SAME_AS_GONE:
                # Answered as for a member removed a moment ago in another tab: the same
                # redirect as for an id that exists nowhere, so it tells nothing.
                nowhere = url_for(name, parameters, slug, {**victim, **GONE})
                again = getattr(client, method)(nowhere)
                if (status, response.get("Location")) == (again.status_code, again.get("Location")):
                    continue
            answered.append((name, slug, status))
    assert snapshot(team.workspace) == before
    assert answered == [], answered
