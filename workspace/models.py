"""Tenancy: a workspace owns shared compute; members hold one role each."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxLengthValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

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
    # Where its new nodes go among the node hosts: the fullest host with room (binpack:
    # whole hosts stay free for big nodes) or the emptiest (spread: a host lost takes
    # fewer of its nodes).
    node_placement = models.CharField(
        max_length=8,
        choices=[("binpack", "Binpack (fill hosts)"), ("spread", "Spread (emptiest host)")],
        default="binpack",
    )
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
            # The inbox pages through a user's newest notifications.
            models.Index(fields=["user", "-created_at", "-id"], name="notification_recent_idx"),
            # Retention deletes old notifications once read (compute/controllers/retention.py).
            models.Index(
                fields=["created_at"],
                name="notification_read_idx",
                condition=models.Q(read_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.title


class Activity(models.Model):
    """The workspace's activity log: who did what, when, and to whom."""

    class Verb(models.TextChoices):
        WORKSPACE_CREATED = "workspace.created", "created the workspace"
        WORKSPACE_UPDATED = "workspace.updated", "updated the workspace"
        IDLE_POLICY_CHANGED = "workspace.idle_policy_changed", "changed the idle policy"
        QUOTA_REQUESTED = "quota.requested", "requested quota"
        QUOTA_APPROVED = "quota.approved", "approved a quota request"
        QUOTA_REJECTED = "quota.rejected", "rejected a quota request"
        QUOTA_CHANGED = "quota.changed", "changed a quota limit"
        MEMBER_ADDED = "member.added", "added a member"
        MEMBER_ROLE_CHANGED = "member.role_changed", "changed a role"
        MEMBER_REMOVED = "member.removed", "removed a member"
        MEMBER_INVITED = "member.invited", "invited someone"
        MEMBER_JOINED = "member.joined", "joined by invitation"
        INVITATION_REVOKED = "invitation.revoked", "revoked an invitation"

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
        indexes = [
            # A workspace's activity page and overview read its newest rows off this index;
            # retention its newest rows before the cutoff, which stay (compute/controllers/
            # retention.py).
            models.Index(
                fields=["workspace", "-created_at", "-id"], name="activity_workspace_recent_idx"
            ),
        ]

    def __str__(self) -> str:
        return self.message


class InvitationState(models.TextChoices):
    """An invitation's life. Every change is a compare-and-set from PENDING
    (workspace/actions/invitations.py):

        pending → accepted   the invitee accepted (a Membership is created in the same
                             transaction), or accepted another invitation to the same workspace
        pending → declined   the invitee said no
        pending → revoked    a workspace admin withdrew it
        pending → expired    seen past `expires_at` (at accept time, or when re-inviting)

    A pending invitation past its expiry *is* expired for every purpose (`effective_state`);
    the row is moved to EXPIRED lazily, so no periodic task is needed.
    """

    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


INVITATION_TRANSITIONS = {
    InvitationState.PENDING: (
        InvitationState.ACCEPTED,
        InvitationState.DECLINED,
        InvitationState.REVOKED,
        InvitationState.EXPIRED,
    ),
}


class Invitation(models.Model):
    """An admin's offer of a role; nobody becomes a member until they accept it.

    `identifier` is what the admin typed, and the only name the workspace ever shows for the
    invitee: showing the matched account instead would tell the admin whether it exists.
    `invitee` is the matching active account at invitation time, or null when none matched.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="invitations")
    identifier = models.CharField(max_length=254)
    invitee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="invitations",
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.READER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    state = models.CharField(
        max_length=16, choices=InvitationState.choices, default=InvitationState.PENDING
    )
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Inviting the same name twice while one is pending adds no second row; a double
            # submit racing itself hits this (invitation_actions.invite_member).
            models.UniqueConstraint(
                "workspace",
                Lower("identifier"),
                name="invitation_pending_unique",
                condition=models.Q(state="pending"),
            ),
        ]
        indexes = [
            # The invitee's pending invitations (invitation_views.invitations).
            models.Index(
                fields=["invitee"],
                name="invitation_pending_idx",
                condition=models.Q(state="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.identifier} to {self.workspace} ({self.state})"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def effective_state(self) -> InvitationState:
        if self.state == InvitationState.PENDING and self.is_expired:
            return InvitationState.EXPIRED
        return InvitationState(self.state)

    @property
    def is_pending(self) -> bool:
        """The invitee may still answer: pending and not expired."""
        return self.effective_state == InvitationState.PENDING


class AccessToken(models.Model):
    """A personal access token for the API (`Authorization: Bearer hgr_...`).

    Only a SHA-256 of the secret is kept: the token is shown once, when made. A token is
    random (256 bits), so a fast hash is as safe as a slow one and costs nothing a request.
    It may be limited to one workspace and to reading; it stops working when it expires or
    is revoked, at once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="access_tokens"
    )
    name = models.CharField(max_length=80)
    # The start of the token as shown in lists ("hgr_3f9a1c2b…"), and what finds its row.
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    workspace = models.ForeignKey(
        Workspace,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="access_tokens",
        help_text="Only this workspace; empty: every workspace of the user.",
    )
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="token_user_idx")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"
