"""Where a form may send the user back to: only a page of this site.

A `next` the browser posts is hostile input: "//evil.example" and "/\\evil.example" (which
browsers read as "//evil.example") leave the site. Django's own check decides."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def local_target(request: HttpRequest, target: str, fallback: str) -> str:
    """`target` if it stays on this site, else `fallback`."""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return fallback
