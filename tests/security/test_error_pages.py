"""The error pages keep a workspace's navigation for its members only (issue 15, point 4).

The attack: probe workspace slugs and read the error page for a sign that one exists (its
name in the menu, its links, a different wording). A non-member's page for a workspace
that exists must be the very page shown for one that does not: same status, same body.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.support.teams import make_team

pytestmark = pytest.mark.django_db

TOKENS = re.compile(r"[A-Za-z0-9]{32,}")  # CSRF tokens are masked afresh on every page
BADGE = re.compile(r'<span hx-get="/health/workers/".*?</span></span>', re.S)


def normalized(body: str) -> str:
    return TOKENS.sub("TOKEN", BADGE.sub("BADGE", body))


@pytest.mark.parametrize(
    ("method", "tail"),
    [
        ("get", ""),  # the overview: 404 from the access layer
        ("get", "no-such-page/"),  # no view at all: 404 from the URL resolver
        ("get", "compute/1/"),
        ("post", "settings/"),  # admin-only: a non-member gets 404, never the 403
        ("post", "quota/"),
    ],
)
def test_a_non_members_error_page_does_not_tell_the_workspace_exists(team, method, tail):
    secret = make_team("secretproject")
    probing = Client(raise_request_exception=False)
    probing.force_login(team.outsider)  # an admin of another workspace
    exists = getattr(probing, method)(f"/w/{secret.workspace.slug}/{tail}")
    missing = getattr(probing, method)(f"/w/nosuchproject/{tail}")
    assert exists.status_code == missing.status_code == 404
    body = exists.content.decode()
    assert "Secretproject" not in body and "secretproject" not in body
    assert normalized(body) == normalized(missing.content.decode())


def test_an_anonymous_error_page_does_not_tell_the_workspace_exists(team):
    probing = Client(raise_request_exception=False)
    exists = probing.get(f"/w/{team.workspace.slug}/no-such-page/")
    missing = probing.get("/w/nosuchproject/no-such-page/")
    assert exists.status_code == missing.status_code == 404
    assert "Vision" not in exists.content.decode()
    assert normalized(exists.content.decode()) == normalized(missing.content.decode())
