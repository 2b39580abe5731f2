"""The API tokens page (profile → API tokens), as its owner uses it: a new token is shown
once and afterwards only by its prefix, bad input is refused on its field and makes nothing,
a revoked token stops working at once, and the list says when each was used and until when
it works."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from tests.support.teams import Team
from workspace.models import AccessToken, Workspace
from workspace.tokens import MAX_TOKENS_PER_USER, create_token, digest_of, token_for

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
PAGE = reverse("tokens")
NEW_TOKEN = re.compile(r'<code id="new-token"[^>]*>([^<]+)</code>')


def create(client: Client, **fields: str | int):
    """Post the create form as a browser does: the defaults, then `fields`."""
    return client.post(PAGE, {"name": "laptop CLI", "expires_in_days": "30", **fields})


def shown_secret(html: str) -> str:
    (secret,) = NEW_TOKEN.findall(html)
    return secret


def rows(html: str) -> dict[str, str]:
    """Each token's row of the list, by prefix, in page order."""
    return dict(re.findall(r'<tr data-token="(\w+)".*?>(.*?)</tr>', html, re.S))


def names_on(html: str) -> list[str]:
    """The token names of the list, in page order."""
    return re.findall(r'<span class="fw-semibold">([^<]+)</span>', html)


def field_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    return {name: list(errors) for name, errors in response.context["form"].errors.items()}


def page(client: Client, query: str = "") -> str:
    response = client.get(PAGE + query)
    assert response.status_code == 200
    return response.content.decode()


def test_a_new_token_is_shown_once_then_only_by_its_prefix(client: Client, team: Team) -> None:
    """The answer to "Create token" shows the whole token once, with the warning; the list
    shows it from then on as hgr_<prefix>… only, and the token works for the API."""
    client.force_login(team.contributor)
    response = create(client)
    html = response.content.decode()
    secret = shown_secret(html)
    assert html.count(secret) == 1
    assert "it will not be shown again" in html
    assert response["Cache-Control"] == "no-store"
    token = AccessToken.objects.get(user=team.contributor)
    assert secret.startswith(f"hgr_{token.prefix}_")
    assert (token.name, token.workspace, token.read_only) == ("laptop CLI", None, False)

    later = page(client)
    assert secret not in later and 'id="new-token"' not in later
    assert f"hgr_{token.prefix}…" in rows(later)[token.prefix]
    assert "All my workspaces" in rows(later)[token.prefix]


def test_only_a_digest_is_kept_and_it_finds_the_token(client: Client, team: Team) -> None:
    client.force_login(team.contributor)
    secret = shown_secret(create(client).content.decode())
    token = AccessToken.objects.get(user=team.contributor)
    assert token.digest != secret and secret not in token.digest
    assert token.digest == digest_of(secret)
    found = token_for(secret)
    assert found is not None and found.pk == token.pk and found.user == team.contributor


def test_a_token_limited_to_one_workspace_and_to_reading(client: Client, team: Team) -> None:
    """The workspace select offers the user's own workspaces; the list tells the limits."""
    client.force_login(team.contributor)
    html = page(client)
    assert f'<option value="{team.workspace.pk}">{team.workspace.name}</option>' in html
    assert 'vision-other"' not in html and "Vision-Other" not in html  # not a member there
    create(client, name="CI reader", workspace=team.workspace.pk, read_only="on")
    token = AccessToken.objects.get(user=team.contributor)
    assert (token.workspace, token.read_only) == (team.workspace, True)
    row = rows(page(client))[token.prefix]
    assert team.workspace.name in row and "All my workspaces" not in row
    assert ">read-only</span>" in row


@pytest.mark.parametrize(
    ("chosen", "days"), [("7", 7), ("30", 30), ("90", 90), ("365", 365), ("never", None)]
)
def test_the_expiry_chosen_sets_when_the_token_stops(
    client: Client, team: Team, chosen: str, days: int | None
) -> None:
    client.force_login(team.contributor)
    with time_machine.travel(T0, tick=False):
        create(client, expires_in_days=chosen)
    token = AccessToken.objects.get(user=team.contributor)
    assert token.expires_at == (T0 + timedelta(days=days) if days else None)


def test_thirty_days_is_preselected(client: Client, team: Team) -> None:
    client.force_login(team.contributor)
    assert '<option value="30" selected>30 days</option>' in page(client)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"name": "   "}, "name", "Name the token"),
        ({"name": ""}, "name", "Name the token"),
        ({"workspace": "OTHER"}, "workspace", "a workspace you are a member of"),
        ({"workspace": "999999"}, "workspace", "a workspace you are a member of"),
        ({"workspace": "abc"}, "workspace", "a workspace you are a member of"),
        ({"expires_in_days": "1000"}, "expires_in_days", "Choose one of the listed expiry"),
        ({"expires_in_days": "0"}, "expires_in_days", "Choose one of the listed expiry"),
    ],
)
def test_bad_input_is_refused_on_its_field_and_makes_nothing(
    client: Client, team: Team, fields: dict[str, str], field: str, says: str
) -> None:
    """An empty name, a workspace the user is not a member of (the outsider's, one that
    does not exist, not a number) and an expiry not offered: the field says why, the page
    shows no token, and none exists."""
    if fields.get("workspace") == "OTHER":
        fields = {"workspace": str(Workspace.objects.get(slug="vision-other").pk)}
    client.force_login(team.contributor)
    response = create(client, **fields)
    errors = field_errors(response)
    assert list(errors) == [field]
    assert says in errors[field][0]
    html = response.content.decode()
    assert "invalid-feedback" in html and says in html
    assert 'id="new-token"' not in html
    assert not AccessToken.objects.exists()


def test_revoking_stops_the_token_at_once(client: Client, team: Team) -> None:
    """The Revoke button asks first (data-confirm), then the token is refused on its very
    next use; the list marks it revoked and offers no button for it any more."""
    made = create_token(team.contributor, name="old laptop", expires_in_days=30)
    client.force_login(team.contributor)
    row = rows(page(client))[made.token.prefix]
    assert 'data-confirm="Revoke “old laptop” (hgr_' in row
    action = reverse("token-revoke", args=[made.token.pk])
    assert f'action="{action}"' in row

    response = client.post(action, follow=True)
    assert response.redirect_chain == [(PAGE, 302)]
    html = response.content.decode()
    assert f"Revoked “old laptop” (hgr_{made.token.prefix}…)" in html
    assert token_for(made.secret) is None
    row = rows(html)[made.token.prefix]
    assert ">revoked</span>" in row and ">Revoke</button>" not in row


def test_revoke_answers_a_get_with_405(client: Client, team: Team) -> None:
    made = create_token(team.contributor, name="laptop", expires_in_days=30)
    client.force_login(team.contributor)
    assert client.get(reverse("token-revoke", args=[made.token.pk])).status_code == 405
    assert token_for(made.secret) is not None


def test_revoking_from_page_two_comes_back_to_page_two(client: Client, team: Team) -> None:
    for n in range(26):
        create_token(team.contributor, name=f"script {n}", expires_in_days=30)
    client.force_login(team.contributor)
    oldest = AccessToken.objects.get(name="script 0")
    response = client.post(reverse("token-revoke", args=[oldest.pk]), {"next": f"{PAGE}?page=2"})
    assert response["Location"] == f"{PAGE}?page=2"


def test_the_list_tells_last_use_and_expiry(client: Client, team: Team) -> None:
    """Used: when; not used: "never used"; past its expiry: "expired"; no expiry: never."""
    with time_machine.travel(T0, tick=False):
        used = create_token(team.contributor, name="used", expires_in_days=30)
        idle = create_token(team.contributor, name="idle", expires_in_days=90)
        short = create_token(team.contributor, name="short", expires_in_days=7)
        forever = create_token(team.contributor, name="forever", expires_in_days=None)
    with time_machine.travel(T0 + timedelta(hours=3), tick=False):
        assert token_for(used.secret) is not None
    client.force_login(team.contributor)
    with time_machine.travel(T0 + timedelta(days=8), tick=False):
        shown = rows(page(client))
    assert "Mar 27, 2026 15:00 UTC" in shown[used.token.prefix]
    assert "never used" not in shown[used.token.prefix]
    assert "never used" in shown[idle.token.prefix]
    assert "Jun 25, 2026 12:00 UTC" in shown[idle.token.prefix]  # 90 days on
    assert ">expired</span>" in shown[short.token.prefix]
    assert ">expired</span>" not in shown[idle.token.prefix]
    assert re.search(r"<td[^>]*>\s*never\s*</td>", shown[forever.token.prefix])


def test_the_list_is_newest_first_25_a_page(client: Client, team: Team) -> None:
    for n in range(26):
        with time_machine.travel(T0 + timedelta(minutes=n), tick=False):
            create_token(team.contributor, name=f"script {n}", expires_in_days=30)
    client.force_login(team.contributor)
    first = page(client)
    assert names_on(first) == [f"script {n}" for n in range(25, 0, -1)]
    assert "1–25 of 26" in first
    assert names_on(page(client, "?page=2")) == ["script 0"]


def test_the_token_limit_is_said_and_nothing_is_made(client: Client, team: Team) -> None:
    """At 50 live tokens the form says to revoke one first; revoking one makes room."""
    for n in range(MAX_TOKENS_PER_USER):
        create_token(team.contributor, name=f"script {n}", expires_in_days=30)
    client.force_login(team.contributor)
    response = create(client, name="one too many")
    html = response.content.decode()
    assert "You have 50 tokens; revoke one you no longer use first." in html
    assert 'id="new-token"' not in html
    assert AccessToken.objects.filter(user=team.contributor).count() == MAX_TOKENS_PER_USER

    client.post(reverse("token-revoke", args=[AccessToken.objects.first().pk]))
    assert NEW_TOKEN.search(create(client, name="one too many").content.decode())


def test_no_tokens_yet_explains_what_they_are_for(client: Client, team: Team) -> None:
    """An empty list says what a token is for: the API and the `hangar` command line."""
    client.force_login(team.contributor)
    html = page(client)
    assert "No API tokens yet" in html
    assert "<code>/api/v1/</code>" in html
    assert "hangar login --url http://testserver --token hgr_…" in html
    assert 'data-testid="no-tokens"' in html and "<thead>" not in html


def test_the_user_menu_links_to_the_page(client: Client, team: Team) -> None:
    client.force_login(team.reader)
    html = client.get(reverse("invitations")).content.decode()
    assert f'<a class="dropdown-item" href="{PAGE}">API tokens</a>' in html
