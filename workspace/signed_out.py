"""htmx requests of a signed-out user (the session ended in another tab, or expired): the
page goes to the login page whole, never the login page put inside the page as a fragment.

Every view that needs a signed-in user answers a redirect to the login page; htmx would
follow it and swap the login page into the navbar badge or a live panel. One middleware
turns such an answer, for htmx requests only, into `HX-Redirect` (django-htmx's
HttpResponseClientRedirect) to the login page with `next` set to the page the user is on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

REDIRECTS = (301, 302, 303, 307, 308)


class SignedOutHtmx:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        htmx = cast(HtmxDetails | None, getattr(request, "htmx", None))
        if not htmx or response.status_code not in REDIRECTS:
            return response
        login = resolve_url(settings.LOGIN_URL)
        if urlsplit(response.get("Location", "")).path != login:
            return response
        # The page the user is on (same origin only, else None): where to come back to.
        back = htmx.current_url_abs_path or "/"
        return HttpResponseClientRedirect(f"{login}?{urlencode({'next': back})}")
