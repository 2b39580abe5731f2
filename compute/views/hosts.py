"""The Hosts page: the Docker engines nodes run on, for site staff (everyone else gets the
404 of an address that does not exist; an anonymous visitor is sent to log in first).

Each row: the host's state in words, what its nodes hold against its capacity (the same
count placement uses: compute.models.hosts.held_by_host), its live nodes, when the sweep
last reached it, its last error, its labels and the image copies to it. One page is three
queries and one Redis read, whatever the number of hosts or nodes; htmx refreshes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from compute.lib.image_copies import image_copies
from compute.models import NodeHost
from compute.models.hosts import GIB, held_by_host
from workspace.access import AuthedRequest
from workspace.views.htmx import render_htmx

PAGE_SIZE = 25
POLL_SECONDS = 5


def staff_only(view: Any) -> Any:
    """Signed in (else the login page), then staff (else 404: the page is not there)."""

    @login_required
    @wraps(view)
    def guarded(request: AuthedRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return guarded


@dataclass
class Copy:
    image: str
    megabytes: float
    done: bool
    ago: str


@dataclass
class Figure:
    """Used against capacity: "6 of 16 cores", with the share for a bar."""

    used: float
    capacity: float
    unit: str
    override: bool

    @property
    def percent(self) -> int:
        if not self.capacity:
            return 0
        return min(100, round(100 * self.used / self.capacity))

    @property
    def over(self) -> bool:
        return self.used > self.capacity + 1e-9


@dataclass
class HostRow:
    host: NodeHost
    nodes: int
    cores: Figure
    memory: Figure
    gpus: Figure
    seen: str
    copies: list[Copy] = field(default_factory=list)

    @property
    def capacity_known(self) -> bool:
        return bool(self.host.capacity_cpus and self.host.capacity_memory_bytes)


def ago(moment: Any) -> str:
    if moment is None:
        return "never"
    seconds = (timezone.now() - moment).total_seconds()
    if seconds < 60:
        return f"{max(int(seconds), 0)} s ago"
    return f"{timesince(moment)} ago"


def rows_of(hosts: list[NodeHost]) -> list[HostRow]:
    held = held_by_host([host.pk for host in hosts])
    copies: dict[str, list[Copy]] = {}
    now = timezone.now().timestamp()
    for (name, image), progress in sorted(image_copies().items()):
        seconds = max(0, int(now - float(progress.get("at") or now)))
        copies.setdefault(name, []).append(
            Copy(
                image=image,
                megabytes=int(progress.get("bytes") or 0) / 1024**2,
                done=bool(progress.get("done")),
                ago=f"{seconds} s ago" if seconds < 60 else f"{seconds // 60} min ago",
            )
        )
    rows = []
    for host in hosts:
        cpus, memory, gpus = held.get(host.pk, (0.0, 0, 0))
        rows.append(
            HostRow(
                host=host,
                nodes=getattr(host, "live_nodes", 0),
                cores=Figure(cpus, host.capacity_cpus, "cores", host.cpus_override is not None),
                memory=Figure(
                    memory / GIB,
                    host.capacity_memory_bytes / GIB,
                    "GiB",
                    host.memory_gib_override is not None,
                ),
                gpus=Figure(gpus, host.capacity_gpus, "GPUs", host.gpus_override is not None),
                seen=ago(host.last_seen_at),
                copies=copies.get(host.name, []),
            )
        )
    return rows


@staff_only
def host_list(request: AuthedRequest) -> HttpResponse:
    hosts = NodeHost.objects.annotate(
        live_nodes=Count("nodes", filter=Q(nodes__ended_at__isnull=True))
    ).order_by("name")
    page = Paginator(hosts, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "nav": "hosts",
        "page": page,
        "rows": rows_of(list(page.object_list)),
        "poll_seconds": POLL_SECONDS,
        "default_engine": settings.HANGAR_DOCKER_URL,
        "add_url": reverse("admin:compute_nodehost_add"),
        "nodes_url": reverse("admin:compute_node_changelist"),
        "grace_seconds": settings.HANGAR_HOST_GRACE_SECONDS,
    }
    return render_htmx(request, "compute/hosts.html", context, partial="host-table")
