"""Quota and idle from a script: the pages' answers and messages."""

from __future__ import annotations

import pytest

from compute.models import ComputeState, QuotaRequest, Schedule, VmSize
from tests.support.factories import ComputeFactory

pytestmark = pytest.mark.django_db

W = "/workspaces/vision"


def instance(team, state=ComputeState.RUNNING, name="notebook"):
    return ComputeFactory(
        workspace=team.workspace, name=name, kind="instance", state=state, max_nodes=1,
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
    )  # fmt: skip


def test_what_if_says_whether_it_fits_and_refuses_what_it_cannot_read(team, api_as):
    api = api_as(team.reader)
    fits = api.get(f"{W}/quota/what-if", data={"vm_size": "Standard_DS3_v2", "count": 1}).json()
    assert fits["fits"] is True and fits["need"] == 4
    assert fits["message"].startswith("Uses 4 of your")
    huge = api.get(f"{W}/quota/what-if", data={"vm_size": "Standard_DS3_v2", "count": 5000})
    assert huge.json()["fits"] is False and huge.json()["message"].startswith("Short ")
    bad = api.get(f"{W}/quota/what-if", data={"vm_size": "Nope_v1", "count": 0, "tier": "x"})
    assert bad.status_code == 422
    assert set(bad.json()["errors"]) == {"vm_size", "count", "tier"}


def test_a_quota_request_is_filed_or_refused_with_the_pages_messages(team, api_as):
    api = api_as(team.contributor)
    refused = api.post(f"{W}/quota/requests", {"cores": 5000, "justification": "  "})
    assert refused.status_code == 422 and QuotaRequest.objects.count() == 0
    assert "justification" in refused.json()["errors"]
    made = api.post(
        f"{W}/quota/requests",
        {"family": None, "cores": 5000, "justification": "a week of sweeps"},
    )
    assert made.status_code == 201, made.json()
    assert (made.json()["status"], made.json()["family"]) == ("pending", None)
    listed = api.get(f"{W}/quota/requests").json()["results"]
    assert [r["requested_limit"] for r in listed] == [5000]


def test_keep_running_a_stopped_instance_is_a_conflict(team, api_as):
    box = instance(team, ComputeState.STOPPED, name="stopped-box")
    refused = api_as(team.contributor).post(f"{W}/computes/{box.pk}/keep-running")
    assert refused.status_code == 409
    assert refused.json() == {"detail": "stopped-box is stopped."}


def test_schedules_are_added_listed_and_removed_with_cron_checked(team, api_as):
    box = instance(team)
    api = api_as(team.contributor)
    bad = api.post(f"{W}/computes/{box.pk}/schedules", {"action": "stop", "cron": "every day"})
    assert bad.status_code == 422 and not Schedule.objects.exists()
    added = api.post(
        f"{W}/computes/{box.pk}/schedules",
        {"action": "stop", "cron": "0 19 * * 1-5", "timezone": "Europe/Berlin"},
    )
    assert added.status_code == 201 and added.json()["next_run_at"]
    listed = api.get(f"{W}/computes/{box.pk}/schedules").json()
    assert [(s["action"], s["cron"]) for s in listed] == [("stop", "0 19 * * 1-5")]
    gone = api.call("DELETE", f"{W}/computes/{box.pk}/schedules/{listed[0]['id']}")
    assert gone.status_code == 204 and not Schedule.objects.exists()


def test_idle_shutdown_is_set_within_the_workspace_policy(team, api_as):
    box = instance(team)
    api = api_as(team.contributor)
    too_short = api.call("PUT", f"{W}/computes/{box.pk}/idle", json={"idle_shutdown_minutes": 1})
    assert too_short.status_code == 422 and "idle_shutdown_minutes" in too_short.json()["errors"]
    saved = api.call("PUT", f"{W}/computes/{box.pk}/idle", json={"idle_shutdown_minutes": 45})
    assert saved.status_code == 200 and saved.json()["idle_shutdown_minutes"] == 45
