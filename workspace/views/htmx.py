"""The one htmx render helper (after NetBox's `utilities/htmx.py`): every view that htmx
re-renders in part answers through here, so "page or fragment", `Vary`, stopping the polling
and the out-of-band messages are decided in one place.

It lives in `workspace`, not `compute`, because the views of both apps use it and `compute`
may import `workspace` but never the reverse (import-linter checks it).
"""

from __future__ import annotations

from typing import Any, cast

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseStopPolling
from django_htmx.middleware import HtmxDetails

OOB_MESSAGES = "partials/messages_oob.html"


def is_partial(request: HttpRequest) -> bool:
    """Whether htmx asked for a fragment. A boosted link or form wants a whole page, and so
    does htmx restoring a pushed URL (the jobs filters, the catalog) missing from its
    history cache: it would otherwise put the fragment in place of the page."""
    htmx = cast(HtmxDetails, request.htmx)  # type: ignore[attr-defined]  # HtmxMiddleware
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render_htmx(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    partial: str | None = None,
    steady: bool = False,
    messages: bool = False,
) -> HttpResponse:
    """One view, two renders: the whole `template`, or only `template#partial` when htmx
    asked for a fragment (a view with no `partial` is a fragment either way).

    `messages`: a fragment is followed by the messages, out of band, since they are shown
    above the page (base.html), outside any fragment. Off by default: a fragment polled on
    every page (the workers badge) must not take the messages the page is about to show.

    `steady`: a fragment answers 286 once nothing is in transition; htmx swaps it one last
    time and stops polling."""
    fragment = is_partial(request)
    name = f"{template}#{partial}" if fragment and partial else template
    body = render_to_string(name, context, request)
    if fragment and messages:
        body += render_to_string(OOB_MESSAGES, request=request)
    response = HttpResponseStopPolling(body) if fragment and steady else HttpResponse(body)
    # One URL answers a page or a fragment: a cache must not hand out one for the other.
    patch_vary_headers(response, ("HX-Request",))
    return response
