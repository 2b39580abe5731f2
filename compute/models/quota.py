"""Quotas: dedicated cores per VM family, one low-priority pool, a compute count; and the
requests that raise them, decided by site admins in the Django admin."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from compute.models.catalog import VmFamily
from workspace.models import Workspace


class FamilyQuota(models.Model):
    """A workspace's dedicated-core limit for one family. `approved` is the ceiling site
    admins granted; workspace admins may set `limit` lower, never higher."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="family_quotas")
    family = models.ForeignKey(VmFamily, on_delete=models.CASCADE, related_name="quotas")
    limit = models.PositiveIntegerField()
    approved = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "family"], name="family_quota_unique"),
            models.CheckConstraint(
                condition=models.Q(limit__lte=models.F("approved")), name="quota_limit_le_approved"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workspace} · {self.family}: {self.limit} cores"


class WorkspaceQuota(models.Model):
    """The low-priority core pool and the compute count of a workspace."""

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="quota")
    low_priority_limit = models.PositiveIntegerField()
    low_priority_approved = models.PositiveIntegerField()
    max_computes = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"{self.workspace}: {self.low_priority_limit} low-priority cores"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class QuotaRequest(models.Model):
    workspace = models.ForeignKey(
        Workspace, on_delete=models.CASCADE, related_name="quota_requests"
    )
    # None: the workspace's low-priority pool.
    family = models.ForeignKey(
        VmFamily, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    requested_limit = models.PositiveIntegerField()
    justification = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="quota_requests",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(
        max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # A site power (the "Quota approvers" group): being staff is not enough.
        permissions = [("decide_quotarequest", "Can approve or reject quota requests")]

    def __str__(self) -> str:
        return f"{self.workspace}: {self.target} → {self.requested_limit} cores ({self.status})"

    @property
    def target(self) -> str:
        return f"{self.family.name} cores" if self.family else "low-priority cores"

    # What the pages ask, so no template compares the status with a string.
    @property
    def is_approved(self) -> bool:
        return self.status == RequestStatus.APPROVED

    @property
    def is_rejected(self) -> bool:
        return self.status == RequestStatus.REJECTED
