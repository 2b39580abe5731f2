"""Demo users and a workspace. Idempotent: running it again changes nothing but passwords."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from workspace.models import Activity, Membership, Role, Workspace
from workspace.sitepowers import ensure_site_groups

DEMO_WORKSPACE = ("vision-team", "Vision team", "Image models: detection and segmentation.")
# username, password, workspace role (None: site admin only), email
DEMO_USERS = [
    ("admin", "hangar-admin", None),
    ("approver", "hangar-approver", None),
    ("alice", "hangar-alice", Role.ADMIN),
    ("bob", "hangar-bob", Role.CONTRIBUTOR),
    ("carol", "hangar-carol", Role.READER),
]
# Site powers of the demo: who is staff, and the groups (made by migrations) they are in.
SITE_ROLES = {
    "admin": "site admin (/admin/)",
    "approver": "site staff: decides quota (/admin/)",
}
GROUPS = {"approver": ["Quota approvers"], "alice": ["Workspace creators"]}


class Command(BaseCommand):
    help = (
        "Create the demo users (admin, approver, alice, bob, carol) and the vision-team workspace."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--quiet-logins", action="store_true", help="Do not print logins.")

    @transaction.atomic
    def handle(self, *args, quiet_logins: bool = False, **options) -> None:
        User = get_user_model()
        ensure_site_groups()
        slug, name, description = DEMO_WORKSPACE
        users = {}
        for username, password, _ in DEMO_USERS:
            user, _ = User.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com"}
            )
            user.set_password(password)
            if username == "admin":
                user.is_staff = user.is_superuser = True
            if username == "approver":
                user.is_staff = True
            user.save()
            user.groups.add(*Group.objects.filter(name__in=GROUPS.get(username, [])))
            users[username] = user
        workspace, created = Workspace.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "description": description, "created_by": users["alice"]},
        )
        if created:
            Activity.objects.create(
                workspace=workspace,
                actor=users["alice"],
                verb=Activity.Verb.WORKSPACE_CREATED,
                message=f"alice created {name} (demo data)",
            )
        for username, _, role in DEMO_USERS:
            if role is None:
                continue
            _, added = Membership.objects.get_or_create(
                workspace=workspace,
                user=users[username],
                defaults={"role": role, "added_by": users["alice"]},
            )
            if added and username != "alice":
                Activity.objects.create(
                    workspace=workspace,
                    actor=users["alice"],
                    verb=Activity.Verb.MEMBER_ADDED,
                    message=f"alice added {username} as {role.label.lower()} (demo data)",
                )
        if not quiet_logins:
            # HANGAR_BASE_URL follows HANGAR_PORT, the port `make run` serves on.
            self.stdout.write(self.style.SUCCESS(f"Demo logins ({settings.HANGAR_BASE_URL}):"))
            for username, password, role in DEMO_USERS:
                what = f"{role.label.lower()} of {slug}" if role else SITE_ROLES[username]
                if username == "alice":
                    what += ", may create workspaces"
                self.stdout.write(f"  {username:<8} / {password:<15} {what}")
