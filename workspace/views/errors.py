"""The 403, 404 and 500 pages (config/urls.py's handlers): inside a workspace the page keeps
that workspace's navigation, and every page says what to do next.

Only a member's workspace: a 404 for a workspace the user is not a member of reads exactly
like a 404 for one that does not exist, with the user's own navigation and nothing else
(tests/security/test_error_pages.py).
"""

from __future__ import annotations

import logging
import re

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import defaults

from workspace.access import WorkspaceAccess, get_access
from workspace.models import Role

logger = logging.getLogger(__name__)

# Every workspace page lives under /w/<slug>/ (workspace.urls and compute.urls).
WORKSPACE_PATH = re.compile(r"^/w/(?P<slug>[-a-zA-Z0-9_]+)/")


def workspace_of(request: HttpRequest) -> WorkspaceAccess | None:
    """The user's access to the workspace of this URL, if they are a member of it.

    A view behind `workspace_view` has set it already (before its role check, so a 403
    has it too); an address no view answers (a mistyped page of a workspace) is looked up
    here, and only a membership finds anything."""
    access = getattr(request, "workspace_access", None)
    if access is not None:
        return access
    user = getattr(request, "user", None)
    match = WORKSPACE_PATH.match(request.path_info)
    if user is None or not user.is_authenticated or match is None:
        return None
    try:
        access = get_access(user, match["slug"])
    except Http404:
        return None
    request.workspace_access = access  # type: ignore[attr-defined]  # read by the context processor
    return access


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    access = workspace_of(request)
    admins = (
        list(
            access.workspace.memberships.filter(role=Role.ADMIN)
            .select_related("user")
            .order_by("user__username")[:5]
        )
        if access
        else []
    )
    context = {"exception": str(exception), "admins": [m.user for m in admins]}
    return render(request, "403.html", context, status=403)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    workspace_of(request)
    return render(request, "404.html", {"request_path": request.path}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """The page with the navigation when it can be drawn; when drawing it fails too (the
    database is down, say), the plain page, which needs nothing."""
    try:
        workspace_of(request)
        return render(request, "500.html", status=500)
    except Exception:
        logger.exception("The 500 page with navigation failed; serving the plain one.")
        return defaults.server_error(request, template_name="500_plain.html")
