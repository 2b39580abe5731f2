"""Secrets go in through the API and never come out: an attached machine's key or
password, a compute's or job's secret variables, a token itself."""

from __future__ import annotations

import pytest

from compute.models import Attachment
from tests.support.api import ApiClient
from workspace.tokens import create_token

pytestmark = pytest.mark.django_db

W = "/workspaces/vision"
PASSWORD = "correct-horse-battery-staple-1234"


def test_an_attached_machines_password_is_stored_encrypted_and_never_answered(team, api_as):
    api = api_as(team.contributor)
    made = api.post(
        f"{W}/computes/attached/remote_vm",
        {
            "name": "lab-box",
            "host": "192.0.2.10",
            "username": "trainer",
            "secret_kind": "password",
            "password": PASSWORD,
        },
    )
    assert made.status_code == 201, made.json()
    stored = Attachment.objects.get(compute_id=made.json()["id"])
    assert stored.secret and PASSWORD not in stored.secret
    answers = [
        made,
        api.get(f"{W}/computes/{made.json()['id']}/attachment"),
        api.get(f"{W}/computes/{made.json()['id']}"),
        api.get(f"{W}/computes", data={"kind": "attached"}),
        # Bad input answers with its errors, never with the secret it was sent.
        api.post(
            f"{W}/computes/attached/remote_vm",
            {"name": "x", "host": "not a host!", "username": "-", "password": PASSWORD},
        ),
    ]
    for answer in answers:
        assert PASSWORD not in answer.content.decode()
    assert answers[1].json()["host"] == "192.0.2.10"
    assert answers[-1].status_code == 422


def test_a_token_is_never_echoed_by_any_answer(team, api_as):
    secret = create_token(team.reader, name="probe", expires_in_days=1).secret
    api = ApiClient(secret)
    for path in ("/workspaces", f"{W}", f"{W}/computes", "/notifications", f"{W}/jobs/999"):
        assert secret not in api.get(path).content.decode()
    assert secret not in api.post(f"{W}/computes/clusters", {"name": 1}).content.decode()


def test_no_log_line_carries_a_token_good_or_bad(team, caplog):
    """Refused (401, 404) and served requests log their path at most, never the header."""
    import logging

    good = create_token(team.reader, name="probe", expires_in_days=1).secret
    bad = "hgr_0badc0de_" + "x" * 43
    with caplog.at_level(logging.DEBUG):
        for secret in (good, bad):
            api = ApiClient(secret)
            api.get("/workspaces")
            api.get(f"{W}/computes/424242")
            api.get("/workspaces/nope")
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for record in caplog.records:
        text = record.getMessage() + str(getattr(record, "request", ""))
        assert good not in text and bad not in text


def test_a_nul_character_anywhere_is_refused_and_changes_nothing(team, api_as):
    """Found by the schema fuzz: a VM size's name with a NUL reached PostgreSQL (which
    refuses NUL in text) as a server error. Path, query, JSON and form: 422, nothing made."""
    from compute.models import Compute, Job

    api = api_as(team.contributor)
    before = (Compute.objects.count(), Job.objects.count())
    answers = [
        api.post(f"{W}/computes/clusters", {"name": "pool", "vm_size": "Standard\x00DS3"}),
        api.post(f"{W}/computes/clusters", {"name": "pool", "vm_size": "x", "\x00": None}),
        api.get(f"{W}/computes", data={"kind": "clu\x00ster"}),
        api.get(f"{W}/quota/what-if", data={"vm_size": "a\x00b"}),
        api.get("/workspaces/vis%00ion/computes"),
        api.client.post(
            f"/api/v1{W}/jobs",
            {"compute": "po\x00ol", "command": "true"},
            headers=api.headers,
        ),
    ]
    for answer in answers:
        assert answer.status_code == 422, answer.content
        assert answer.json()["detail"] == "Null characters are not allowed."
    assert (Compute.objects.count(), Job.objects.count()) == before
