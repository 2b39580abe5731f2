"""How Hangar reaches an attached compute: address, credentials (encrypted), the pinned
host key, the machine's facts and its health. One row per attached compute."""

from __future__ import annotations

from django.db import models

from compute.models.compute import Compute


class TargetKind(models.TextChoices):
    """Every unmanaged kind of seeds/FACTS.md; compute/rules/targets.py says which run today."""

    LOCAL = "local", "Local computer"
    REMOTE_VM = "remote_vm", "Remote VM"
    HDINSIGHT = "hdinsight", "HDInsight"
    BATCH = "batch", "Batch"
    DATABRICKS = "databricks", "Databricks"
    DATA_LAKE = "data_lake", "Data Lake Analytics"
    CONTAINER_INSTANCE = "container_instance", "Container instances"
    KUBERNETES = "kubernetes", "Kubernetes"


class SecretKind(models.TextChoices):
    KEY = "key", "Private key"
    PASSWORD = "password", "Password"


class Attachment(models.Model):
    compute = models.OneToOneField(
        Compute, primary_key=True, on_delete=models.CASCADE, related_name="attachment"
    )
    target_kind = models.CharField(max_length=24, choices=TargetKind.choices)
    host = models.CharField(max_length=253, blank=True)
    port = models.PositiveIntegerField(default=22)
    username = models.CharField(max_length=64, blank=True)
    secret_kind = models.CharField(max_length=8, choices=SecretKind.choices, blank=True)
    # A MultiFernet token (compute/lib/secrets.py); never the key or password itself.
    secret = models.TextField(blank=True)
    # Trust on first use: "ssh-ed25519 AAAA…" as first seen; a different key is refused.
    host_key = models.TextField(blank=True)
    facts = models.JSONField(default=dict, blank=True)
    max_concurrent_jobs = models.PositiveSmallIntegerField(default=1)
    healthy = models.BooleanField(null=True)  # None: not checked yet
    health_reason = models.CharField(max_length=300, blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # A site-level power (DESIGN.md "Security"): the local computer runs jobs on
        # Hangar's own machine, so site staff holding this permission alone attach it.
        permissions = [
            ("attach_local_computer", "Can attach the local computer (jobs run on Hangar's host)")
        ]
        indexes = [
            # The sweep finds attachments whose health check is due (controllers/sweep.py).
            models.Index(fields=["health_checked_at"], name="attachment_health_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_target_kind_display()} {self.address}"

    @property
    def uses_ssh(self) -> bool:
        return self.target_kind in (TargetKind.REMOTE_VM, TargetKind.HDINSIGHT)

    @property
    def address(self) -> str:
        return f"{self.username}@{self.host}:{self.port}" if self.uses_ssh else "this machine"

    @property
    def host_key_fingerprint(self) -> str:
        from compute.lib.ssh import fingerprint

        return fingerprint(self.host_key) if self.host_key else ""
