"""The one access layer every workspace view goes through.

A workspace the user is not a member of does not exist for them (404). A member whose
role is too low for an action gets 403 with a message naming the role needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django_htmx.middleware import HtmxDetails

from workspace.models import Membership, Role, Workspace


class HtmxRequest(HttpRequest):
    """Any request, as mypy sees it once django-htmx's middleware has run (Django builds
    plain HttpRequests; these classes are annotations only)."""

    htmx: HtmxDetails


class AuthedRequest(HtmxRequest):
    """A request behind `login_required`: a signed-in user, and, behind `workspace_view`,
    the user's access to the workspace (read by the context processor)."""

    user: User
    workspace_access: WorkspaceAccess


@dataclass(frozen=True)
class WorkspaceAccess:
    """What a request knows about the current user's standing in a workspace."""

    workspace: Workspace
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role

    def can(self, minimum: str) -> bool:
        return self.membership.has_role(minimum)

    @property
    def is_admin(self) -> bool:
        return self.can(Role.ADMIN)

    @property
    def is_contributor(self) -> bool:
        return self.can(Role.CONTRIBUTOR)


def workspaces_for(user: User | AnonymousUser) -> QuerySet[Workspace]:
    """Every workspace the user may see: exactly those they are a member of.

    A subquery, not a join on memberships: a join would narrow every later aggregate over
    memberships to the viewer's own row (a member count of 1 in a workspace of 3)."""
    if not user.is_authenticated:
        return Workspace.objects.none()
    return Workspace.objects.filter(
        pk__in=Membership.objects.filter(user=user).values("workspace_id")
    )


def scoped(queryset: QuerySet, user: User | AnonymousUser, path: str = "workspace") -> QuerySet:
    """Scope any queryset of workspace-owned objects to the user's memberships."""
    if not user.is_authenticated:
        return queryset.none()
    return queryset.filter(**{f"{path}__memberships__user": user})


def get_access(user: User, slug: str) -> WorkspaceAccess:
    membership = (
        Membership.objects.select_related("workspace")
        .filter(workspace__slug=slug, user_id=user.pk)
        .first()
    )
    if membership is None:
        raise Http404("No such workspace.")
    return WorkspaceAccess(workspace=membership.workspace, membership=membership)


def require_role(access: WorkspaceAccess, minimum: str, doing: str) -> None:
    if not access.can(minimum):
        raise PermissionDenied(
            f"You are a {access.role} in {access.workspace.name}; "
            f"{doing} needs the {Role(minimum).label.lower()} role."
        )


ViewFunc = Callable[..., HttpResponseBase]  # a page, or a file (a job's log)


def workspace_view(
    minimum: str = Role.READER, doing: str = "this"
) -> Callable[[ViewFunc], ViewFunc]:
    """Decorate a view taking `slug`: resolve access, enforce the role, pass `access` on."""

    def decorate(view: ViewFunc) -> ViewFunc:
        @login_required
        @wraps(view)
        def wrapper(
            request: AuthedRequest, slug: str, *args: Any, **kwargs: Any
        ) -> HttpResponseBase:
            access = get_access(request.user, slug)
            # Set before the role check: a member refused here (403) keeps the workspace's
            # navigation on the error page. A non-member got 404 above, with none.
            request.workspace_access = access
            require_role(access, minimum, doing)
            return view(request, access, *args, **kwargs)

        return wrapper

    return decorate
