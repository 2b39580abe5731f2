"""A runaway script is slowed, per credential, and told when to come back."""

from __future__ import annotations

import pytest

from compute.api.main import api

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_a_minute(monkeypatch):
    (throttle,) = api.throttle  # the one AuthRateThrottle of compute/api/main.py
    monkeypatch.setattr(throttle, "num_requests", 3)
    monkeypatch.setattr(throttle, "duration", 60)


def test_past_the_rate_a_token_gets_429_with_retry_after(team, api_as, three_a_minute):
    mine, theirs = api_as(team.reader), api_as(team.admin)
    assert [mine.get("/workspaces").status_code for _ in range(3)] == [200, 200, 200]
    slowed = mine.get("/workspaces")
    assert slowed.status_code == 429
    assert 1 <= int(slowed["Retry-After"]) <= 60
    assert slowed.json()["detail"].startswith("Too many requests: try again in")
    # Another credential has its own allowance.
    assert theirs.get("/workspaces").status_code == 200
