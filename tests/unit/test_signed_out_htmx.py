"""An htmx request of a signed-out user gets HX-Redirect to the login page (with `next`
the page the user is on), never the login page as a fragment; plain requests keep their
redirect, and signed-in htmx requests are untouched."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_CURRENT_URL": "http://testserver/w/vision/jobs/?page=2"}


def test_a_signed_out_poll_is_sent_to_the_login_page_whole(client, team):
    for url in (
        reverse("compute:worker-health"),
        reverse("compute:jobs", args=[team.workspace.slug]),
        reverse("inference:batches", args=[team.workspace.slug]),
    ):
        answer = client.get(url, **HTMX)
        assert answer.status_code == 200 and answer.content == b""
        assert answer["HX-Redirect"] == "/login/?next=%2Fw%2Fvision%2Fjobs%2F%3Fpage%3D2"


def test_plain_requests_and_signed_in_polls_are_left_alone(client, team):
    plain = client.get(reverse("compute:jobs", args=[team.workspace.slug]))
    assert plain.status_code == 302 and plain["Location"].startswith("/login/")
    client.force_login(team.reader)
    polled = client.get(reverse("compute:jobs", args=[team.workspace.slug]), **HTMX)
    assert polled.status_code in (200, 286) and "HX-Redirect" not in polled
    assert b"<table" in polled.content or b"No job" in polled.content


def test_a_page_of_another_site_is_not_where_login_sends_back(client, team):
    answer = client.get(
        reverse("compute:worker-health"),
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="https://evil.example/phish",
    )
    assert answer["HX-Redirect"] == "/login/?next=%2F"
