"""A NUL character anywhere in an API request is refused at the door (422).

PostgreSQL text cannot hold NUL: a name, filter or path segment carrying one reached a
query as a server error (the schema fuzz found it through a VM size's name). The pages'
forms refuse NUL field by field (Django's ProhibitNullCharactersValidator); the API also
looks rows up by names from paths, queries and JSON before any form runs, so it checks
the whole request once, with the same message."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/v1/"  # the REST API only (an instance's activity ping reads its own body)
MESSAGE = "Null characters are not allowed."
JSON_TYPES = ("application/json",)


class RefuseNulCharacters:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX) and carries_nul(request):
            return JsonResponse({"detail": MESSAGE, "errors": {"__all__": [MESSAGE]}}, status=422)
        return self.get_response(request)


def carries_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path + request.headers.get("Authorization", "") or any(
        "\x00" in key + value for key, value in pairs(request.GET)
    ):
        return True
    if request.content_type in JSON_TYPES:
        try:
            return has_nul(json.loads(request.body or b"null"))
        except ValueError:
            return False  # not JSON: the API answers it as malformed input
    if request.method == "POST":  # form fields (files are stored as they are)
        return any("\x00" in key + value for key, value in pairs(request.POST))
    return False


def pairs(query: Any) -> list[tuple[str, str]]:
    return [(key, value) for key, values in query.lists() for value in values]


def has_nul(data: Any) -> bool:
    if isinstance(data, str):
        return "\x00" in data
    if isinstance(data, dict):
        return any(has_nul(key) or has_nul(value) for key, value in data.items())
    if isinstance(data, list):
        return any(has_nul(item) for item in data)
    return False
