"""Calling the API as a script would: a token in `Authorization`, JSON in and out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from workspace.tokens import create_token

API = "/api/v1"


class ApiClient:
    """Django's test client with a bearer token (or none) and JSON bodies."""

    def __init__(self, secret: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {secret}"} if secret else {}

    def call(self, method: str, path: str, json: Any = None, **extra: Any) -> Any:
        send = getattr(self.client, method.lower())
        kwargs: dict[str, Any] = {"headers": self.headers, **extra}
        if json is not None:
            kwargs.update(data=json, content_type="application/json")
        return send(f"{API}{path}", **kwargs)

    def get(self, path: str, **extra: Any) -> Any:
        return self.call("GET", path, **extra)

    def post(self, path: str, json: Any = None, **extra: Any) -> Any:
        return self.call("POST", path, json=json, **extra)


@pytest.fixture
def api_as() -> Callable[..., ApiClient]:
    """`api_as(user, read_only=True, workspace=w)`: a client with a fresh token of theirs."""

    def make(user: Any, **limits: Any) -> ApiClient:
        return ApiClient(create_token(user, name="test", expires_in_days=30, **limits).secret)

    return make
