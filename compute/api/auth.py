"""Who calls the API, and what they may reach.

A personal access token (`Authorization: Bearer hgr_...`) or the browser's session (with
its CSRF token on writes). A token limited to one workspace finds no other (404); a
read-only token may only read (403). Roles are the pages' (workspace/access.py)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from ninja.errors import AuthorizationError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.security.session import SessionAuth

from workspace.access import WorkspaceAccess, get_access, require_role, workspaces_for
from workspace.models import AccessToken, Role, Workspace
from workspace.tokens import token_for

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class TokenAuth(HttpBearer):
    """A personal access token; sets `request.user` as the session does."""

    def authenticate(self, request: HttpRequest, token: str) -> AccessToken | None:
        found = token_for(token)
        if found is None:
            return None
        if found.read_only and request.method not in SAFE_METHODS:
            raise AuthorizationError(403, "This token is read-only: make one that may write.")
        request.user = found.user
        request.access_token = found  # type: ignore[attr-defined]
        return found


class BrowserSession(SessionAuth):
    """The signed-in browser: Django's session, CSRF checked on writes (ninja's
    SessionAuth does, as `csrf = True`)."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = super().authenticate(request, key)
        if user is not None:
            request.access_token = None  # type: ignore[attr-defined]
        return user


AUTH: list[APIKeyCookie | HttpBearer] = [TokenAuth(), BrowserSession()]


def caller(request: HttpRequest) -> User:
    return request.user  # type: ignore[return-value]  # set by the auth above


def token_of(request: HttpRequest) -> AccessToken | None:
    return getattr(request, "access_token", None)


def api_access(
    request: HttpRequest, slug: str, minimum: str = Role.READER, doing: str = "this"
) -> WorkspaceAccess:
    """The caller's access to a workspace: 404 when not a member (or the token is limited
    to another workspace), 403 naming the role needed when the role is too low."""
    access = get_access(caller(request), slug)
    token = token_of(request)
    if token is not None and token.workspace_id not in (None, access.workspace.pk):
        raise Http404("No such workspace.")
    require_role(access, minimum, doing)
    return access


def visible_workspaces(request: HttpRequest) -> QuerySet[Workspace]:
    """The workspaces the caller may see through this credential."""
    workspaces = workspaces_for(caller(request))
    token = token_of(request)
    if token is not None and token.workspace_id is not None:
        workspaces = workspaces.filter(pk=token.workspace_id)
    return workspaces.order_by("name")
