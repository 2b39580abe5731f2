"""Site powers are Django permissions held through groups: the migrations make the groups,
and `ensure_site_groups` makes them again where a database lost them (a test flush, a
hand-cleaned site), so the demo and the tests never depend on migration-time data.

Permissions are named by string: the workspace app never imports compute.
"""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

SITE_GROUPS: dict[str, tuple[str, ...]] = {
    "Workspace creators": ("workspace.add_workspace",),
    "Quota approvers": ("compute.decide_quotarequest", "compute.view_quotarequest"),
}


def ensure_site_groups() -> None:
    for name, permissions in SITE_GROUPS.items():
        group, _ = Group.objects.get_or_create(name=name)
        for permission in permissions:
            app_label, codename = permission.split(".")
            group.permissions.add(
                *Permission.objects.filter(content_type__app_label=app_label, codename=codename)
            )
