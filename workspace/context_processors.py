from __future__ import annotations

from django.http import HttpRequest

from workspace.access import workspaces_for


def workspace_switcher(request: HttpRequest) -> dict:
    """The navigation's workspace switcher: the user's workspaces and the current one."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    access = getattr(request, "workspace_access", None)
    return {
        "unread_notifications": user.notifications.filter(read_at__isnull=True).count(),
        "switcher_workspaces": workspaces_for(user).only("name", "slug")[:50],
        "current_access": access,
        "current_workspace": access.workspace if access else None,
    }
