from __future__ import annotations

from django.http import HttpRequest

from workspace.access import workspaces_for

# The bell counts this far ("99+" beyond): every page pays for the count, and a user with
# years of unread reminders should not make every page slower.
UNREAD_COUNTED = 100


def unread_badge(user) -> str:  # a User
    """The bell's badge: "" for none, "7", or "99+"."""
    unread = user.notifications.filter(read_at__isnull=True)[:UNREAD_COUNTED].count()
    if unread >= UNREAD_COUNTED:
        return f"{UNREAD_COUNTED - 1}+"
    return str(unread) if unread else ""


def workspace_switcher(request: HttpRequest) -> dict:
    """The navigation's workspace switcher: the user's workspaces and the current one."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    access = getattr(request, "workspace_access", None)
    return {
        "unread_notifications": unread_badge(user),
        "switcher_workspaces": workspaces_for(user).only("name", "slug")[:50],
        "current_access": access,
        "current_workspace": access.workspace if access else None,
    }
