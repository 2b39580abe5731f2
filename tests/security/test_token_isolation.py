"""API tokens are their owner's alone, and a token is seen once (issue 17).

The attacks: read someone else's token names and prefixes from one's own list; revoke
someone else's token by its id (an admin of the workspace it is limited to, or an
outsider); find a token after the fact in the logs, the session or a later page. Each
refusal leaves the token working for its owner.
"""

from __future__ import annotations

import logging
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.support.teams import Team
from workspace.models import AccessToken
from workspace.tokens import create_token, token_for

pytestmark = pytest.mark.django_db
PAGE = reverse("tokens")


def random_part(secret: str) -> str:
    """What only the token holds: the prefix after `hgr_` is shown in lists on purpose."""
    scheme, prefix, rest = secret.split("_", 2)
    assert (scheme, len(prefix)) == ("hgr", 8)
    return rest


def test_another_users_tokens_never_appear_in_my_list(client: Client, team: Team) -> None:
    """The reader's tokens (one limited to the team's workspace) are not in the admin's
    list nor the outsider's: no name, no prefix, not even their count."""
    theirs = [
        create_token(team.reader, name="reader laptop", expires_in_days=30),
        create_token(team.reader, name="reader CI", expires_in_days=None, workspace=team.workspace),
    ]
    mine = create_token(team.outsider, name="outsider script", expires_in_days=7)
    pages = {}
    for user in (team.admin, team.outsider):
        client.force_login(user)
        pages[user] = client.get(PAGE).content.decode()
        for made in theirs:
            assert made.token.prefix not in pages[user], user
            assert made.token.name not in pages[user], user
    assert "No API tokens yet" in pages[team.admin]
    assert re.findall(r'<tr data-token="(\w+)"', pages[team.outsider]) == [mine.token.prefix]


@pytest.mark.parametrize("who", ["admin", "outsider"])
def test_revoking_another_users_token_answers_404_and_leaves_it_live(
    client: Client, team: Team, who: str
) -> None:
    """Even an admin of the workspace the reader's token is limited to: 404, as for a token
    that does not exist, and the token still works; a GET is refused before anything."""
    made = create_token(team.reader, name="reader CI", expires_in_days=30, workspace=team.workspace)
    url = reverse("token-revoke", args=[made.token.pk])
    client.force_login(getattr(team, who))
    assert client.post(url).status_code == 404
    assert client.post(url, {"next": PAGE}).status_code == 404
    assert client.get(url).status_code == 405
    assert AccessToken.objects.get(pk=made.token.pk).revoked_at is None
    assert token_for(made.secret) is not None


def test_the_secret_is_never_logged_nor_kept_while_creating(
    client: Client, team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    """Everything logged at DEBUG while a token is made, the SQL included, and the session
    afterwards: the token's secret part is in none of them (only its prefix may be)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")  # INFO in settings.LOGGING
    client.force_login(team.contributor)
    with CaptureQueriesContext(connection) as queries:  # SQL is logged only when captured
        response = client.post(PAGE, {"name": "laptop", "expires_in_days": "30"})
    html = response.content.decode()
    secret = re.search(r'<code id="new-token"[^>]*>([^<]+)</code>', html).group(1)
    hidden = random_part(secret)
    logged = [record for record in caplog.records if record.name == "django.db.backends"]
    assert logged and any("INSERT" in record.getMessage() for record in logged)  # it looked
    assert len(queries) > 0
    for record in caplog.records:
        assert hidden not in record.getMessage(), record.name
        assert hidden not in repr(record.args), record.name
    assert hidden not in caplog.text
    assert all(hidden not in query["sql"] for query in queries.captured_queries)
    session = dict(client.session.items())
    assert hidden not in repr(session)
    assert response.status_code == 200 and not response.has_header("Location")


def test_the_list_never_shows_a_secret_nor_its_digest(client: Client, team: Team) -> None:
    made = create_token(team.contributor, name="laptop", expires_in_days=30)
    client.force_login(team.contributor)
    html = client.get(PAGE).content.decode()
    assert f"hgr_{made.token.prefix}…" in html
    assert random_part(made.secret) not in html
    assert made.token.digest not in html


def test_anonymous_visitors_are_sent_to_log_in(client: Client, team: Team) -> None:
    """Page, create and revoke: each sends an anonymous visitor to the login page and
    nothing is made or revoked."""
    made = create_token(team.reader, name="reader laptop", expires_in_days=30)
    login = reverse("login")
    revoke = reverse("token-revoke", args=[made.token.pk])
    for response in (
        client.get(PAGE),
        client.post(PAGE, {"name": "sneaky", "expires_in_days": "never"}),
        client.post(revoke),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith(f"{login}?next=")
    assert list(AccessToken.objects.values_list("name", flat=True)) == ["reader laptop"]
    assert token_for(made.secret) is not None
