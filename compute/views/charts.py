"""The cluster chart: node count and queued jobs over the last hour, drawn as SVG here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from compute.models import Compute, ComputeSample

WIDTH, HEIGHT, PAD = 640, 150, 24
WINDOW = timedelta(hours=1)


@dataclass
class Chart:
    nodes: str
    queued: str
    top: int
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD
    empty: bool = False

    @property
    def baseline(self) -> int:
        return self.height - self.pad

    @property
    def top_y(self) -> int:
        return self.pad


def cluster_chart(compute: Compute) -> Chart:
    now = timezone.now()
    start = now - WINDOW
    before = (
        ComputeSample.objects.filter(compute=compute, at__lt=start)
        .order_by("-at")
        .values_list("nodes", "queued")
        .first()
    )
    samples = list(
        ComputeSample.objects.filter(compute=compute, at__gte=start)
        .order_by("at")
        .values_list("at", "nodes", "queued")
    )
    if before is None and not samples:
        return Chart(nodes="", queued="", top=1, empty=True)
    points = [(start, *(before or samples[0][1:])), *samples]
    top = max(1, compute.max_nodes, *(n for _, n, _ in points), *(q for _, _, q in points))

    def x(moment) -> float:
        return PAD + (moment - start).total_seconds() / WINDOW.total_seconds() * (WIDTH - 2 * PAD)

    def y(value: int) -> float:
        return HEIGHT - PAD - value / top * (HEIGHT - 2 * PAD)

    def steps(index: int) -> str:
        coords, previous = [], None
        for moment, *values in points:
            value = values[index]
            if previous is not None:
                coords.append(f"{x(moment):.1f},{y(previous):.1f}")
            coords.append(f"{x(moment):.1f},{y(value):.1f}")
            previous = value
        assert previous is not None  # points always holds the window's first point
        coords.append(f"{x(now):.1f},{y(previous):.1f}")
        return " ".join(coords)

    return Chart(nodes=steps(0), queued=steps(1), top=top)
