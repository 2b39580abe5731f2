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


class Activity(models.Model):
    """The workspace's activity log: who did what, when, and to whom."""

    class Verb(models.TextChoices):
        WORKSPACE_CREATED = "workspace.created", "created the workspace"
        WORKSPACE_UPDATED = "workspace.updated", "updated the workspace"
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
