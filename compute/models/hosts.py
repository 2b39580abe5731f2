"""Node hosts: the Docker engines nodes run on. With none registered, every node runs on
the engine HANGAR_DOCKER_URL names (or the local one), as before hosts existed. With hosts,
each new node is placed on a ready host with room for its scaled limits
(compute/controllers/hosts.py), and its row says which."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, FloatField, IntegerField, Sum
from django.db.models.functions import Cast

from compute.models.compute import Node
from compute.models.states import LIVE_NODE_STATES, NodeState

GIB = 1024**3
# What a host's capacity counts as used: its live nodes, and leaving ones (their container
# is still there).
HOLDING = (*LIVE_NODE_STATES, NodeState.LEAVING)

HOST_NAME_RULE = RegexValidator(
    r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$",
    "2–40 lowercase letters, digits and hyphens, starting with a letter.",
)


class HostState(models.TextChoices):
    READY = "ready", "Ready"
    UNREACHABLE = "unreachable", "Unreachable"
    DRAINING = "draining", "Draining"  # nothing new placed; idle nodes removed
    DISABLED = "disabled", "Disabled"  # nothing new placed; nodes left as they are


class NodeHost(models.Model):
    name = models.CharField(max_length=40, unique=True, validators=[HOST_NAME_RULE])
    docker_url = models.CharField(
        max_length=300,
        help_text="unix:///var/run/docker.sock, tcp://gpu-box-2:2376 (TLS) or ssh://ml@gpu-box-2.",
    )
    # TLS client certificate for tcp:// (MultiFernet tokens, compute/lib/secrets.py): the
    # worker decrypts them into a private folder to connect; never shown again.
    tls_ca = models.TextField(blank=True)
    tls_cert = models.TextField(blank=True)
    tls_key = models.TextField(blank=True)
    labels = models.JSONField(default=list, blank=True, help_text='e.g. ["gpu", "zone-a"]')
    # On this machine: it may run serving replicas and batch scoring nodes, which see
    # folders of this machine (their model, inputs, the replica's socket).
    on_this_machine = models.BooleanField(default=False)
    # What the engine reports (docker info), and what an admin says instead.
    cpus = models.FloatField(default=0)
    memory_bytes = models.BigIntegerField(default=0)
    gpus = models.PositiveSmallIntegerField(default=0)
    cpus_override = models.FloatField(null=True, blank=True)
    memory_gib_override = models.FloatField(null=True, blank=True)
    gpus_override = models.PositiveSmallIntegerField(null=True, blank=True)
    state = models.CharField(max_length=12, choices=HostState.choices, default=HostState.READY)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    unreachable_since = models.DateTimeField(null=True, blank=True)
    # The grace ran out: its nodes were written off (their jobs requeued).
    nodes_lost_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def capacity_cpus(self) -> float:
        return self.cpus if self.cpus_override is None else self.cpus_override

    @property
    def capacity_memory_bytes(self) -> int:
        if self.memory_gib_override is None:
            return self.memory_bytes
        return int(self.memory_gib_override * GIB)

    @property
    def capacity_gpus(self) -> int:
        return self.gpus if self.gpus_override is None else self.gpus_override

    @property
    def takes_new_nodes(self) -> bool:
        return self.state == HostState.READY


def held_by_host(host_ids: list[int] | None) -> dict[int, tuple[float, int, int]]:
    """What the nodes on each host (of `host_ids`, or every host) hold (scaled cores,
    memory bytes, GPUs): one query. Placement counts room with it
    (compute/controllers/hosts.py) and the Hosts page shows it, so both say the same."""
    if host_ids is not None and not host_ids:
        return {}
    on = {"host_id__in": host_ids} if host_ids is not None else {"host__isnull": False}
    rows = (
        Node.objects.filter(**on, state__in=HOLDING, ended_at__isnull=True)
        .values("host_id")
        .annotate(
            vcpus=Sum("compute__vm_size__vcpus"),
            memory_gib=Sum(Cast(F("compute__vm_size__memory_gib"), FloatField())),
            gpus=Sum(Cast(F("compute__vm_size__gpus"), IntegerField())),
        )
        .order_by()
    )
    return {
        row["host_id"]: (
            (row["vcpus"] or 0) * settings.HANGAR_CPU_SCALE,
            int((row["memory_gib"] or 0) * settings.HANGAR_MEMORY_SCALE * GIB),
            row["gpus"] or 0,
        )
        for row in rows
    }
