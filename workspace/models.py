"""Tenancy: a workspace owns shared compute; members hold one role each."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

SLUG_RULE = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$",
    "Use 1–40 lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
)
NAME_RULE = RegexValidator(
    r"^[^<>&\"'`]+$",
    "Names cannot contain < > & \" ' or `.",
)


# The idle-shutdown policy of a workspace: set together by its admins (forms, actions).
IDLE_POLICY_FIELDS = (
    "idle_min_minutes",
    "idle_max_minutes",
    "idle_default_minutes",
    "idle_required",
    "reminder_leads",
    "keep_running_minutes",
    "missed_start_window_minutes",
)


class Role(models.TextChoices):
    """What a member may do. Ordered: each role includes the ones below it."""

    READER = "reader", "Reader"
    CONTRIBUTOR = "contributor", "Contributor"
    ADMIN = "admin", "Admin"

    @classmethod
    def rank(cls, role: str) -> int:
        return [cls.READER, cls.CONTRIBUTOR, cls.ADMIN].index(cls(role))

    @classmethod
    def describe(cls, role: str) -> str:
        return ROLE_DESCRIPTIONS[cls(role)]


ROLE_DESCRIPTIONS = {
    Role.READER: "Sees the workspace, its compute and jobs; changes nothing.",
    Role.CONTRIBUTOR: "Creates, attaches, starts and stops compute; submits jobs.",
    Role.ADMIN: "Everything, plus members, roles and workspace settings.",
}


class Workspace(models.Model):
    name = models.CharField(max_length=64, validators=[NAME_RULE])
    slug = models.SlugField(
        max_length=40,
        unique=True,
        error_messages={"unique": "A workspace with this slug already exists."},
        validators=[SLUG_RULE],
        help_text="Used in URLs; cannot be changed later.",
    )
    description = models.TextField(blank=True, validators=[MaxLengthValidator(2000)])
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Idle-shutdown policy for the workspace's compute instances (minutes).
    idle_min_minutes = models.PositiveIntegerField(default=15)
    idle_max_minutes = models.PositiveIntegerField(default=3 * 24 * 60)
    idle_default_minutes = models.PositiveIntegerField(null=True, blank=True, default=60)
    idle_required = models.BooleanField(
        default=False, help_text="Every instance must have idle shutdown."
    )
    reminder_leads = models.CharField(
        max_length=60, default="30,5", help_text="Minutes before a stop to remind, comma-separated."
    )
    keep_running_minutes = models.PositiveIntegerField(default=60)
    missed_start_window_minutes = models.PositiveIntegerField(default=30)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="Membership",
        through_fields=("workspace", "user"),
        related_name="workspaces",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                Lower("name"),
                name="workspace_name_unique_ci",
                violation_error_message="A workspace with this name already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("workspace:overview", args=[self.slug])

    @property
    def leads(self) -> list[int]:
        """Reminder lead times in minutes, largest first."""
        return sorted({int(x) for x in self.reminder_leads.split(",") if x.strip()}, reverse=True)


class Membership(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READER)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user__username"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"

    def has_role(self, minimum: str) -> bool:
        return Role.rank(self.role) >= Role.rank(minimum)


class Notification(models.Model):
    """The in-app inbox: the bell in the navigation counts the unread ones."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    workspace = models.ForeignKey(
        Workspace, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)
    # [{"label": ..., "url": ..., "method": "post" | "get"}]: one-click buttons.
    actions = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The bell counts unread notifications on every page (context_processors.py).
            models.Index(
                fields=["user"], name="notification_unread_idx", condition=models.Q(read_at=None)
            ),
        ]

    def __str__(self) -> str:
        return self.title


class Activity(models.Model):
    """The workspace's activity log: who did what, when, and to whom."""

    class Verb(models.TextChoices):
        WORKSPACE_CREATED = "workspace.created", "created the workspace"
        WORKSPACE_UPDATED = "workspace.updated", "updated the workspace"
        QUOTA_REQUESTED = "quota.requested", "requested quota"
        QUOTA_APPROVED = "quota.approved", "approved a quota request"
        QUOTA_REJECTED = "quota.rejected", "rejected a quota request"
        QUOTA_CHANGED = "quota.changed", "changed a quota limit"
        MEMBER_ADDED = "member.added", "added a member"
        MEMBER_ROLE_CHANGED = "member.role_changed", "changed a role"
        MEMBER_REMOVED = "member.removed", "removed a member"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="activity")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    verb = models.CharField(max_length=40, choices=Verb.choices)
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "activity"

    def __str__(self) -> str:
        return self.message
