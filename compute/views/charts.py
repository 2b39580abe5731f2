"""Charts drawn as SVG here: the cluster chart (node count and queued jobs over the last
hour), and charts of values over intervals (an endpoint's requests, latency, replicas)."""

from __future__ import annotations

import math
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


# Charts of values over intervals (the endpoint page's last hour), drawn the same way.

Segment = tuple[float, float, float | None]  # (start, end) in epoch seconds, the value


@dataclass
class Line:
    label: str
    css: str  # its colour (hangar.css)
    dash: str  # its stroke pattern: lines differ by more than colour
    path: str
    latest: str  # the last value, in words


@dataclass
class LineChart:
    title: str
    lines: list[Line]
    top: str  # the value at the top line, with its unit
    summary: str  # the accessible name: what it shows and its figures
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD

    @property
    def baseline(self) -> int:
        return self.height - self.pad

    @property
    def top_y(self) -> int:
        return self.pad


def nice_top(value: float) -> float:
    """The chart's top: the value rounded up to 1, 2 or 5 times a power of ten."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 5, 10) if step * power >= value)


def line_chart(
    title: str,
    lines: list[tuple[str, str, str, list[Segment]]],
    start: float,
    end: float,
    unit: str = "",
    floor: float = 1.0,
    ceiling: float = math.inf,
) -> LineChart:
    """Each line as steps over its intervals; an interval without a value leaves a gap.
    Values are drawn no higher than `ceiling` (latency past the last bucket)."""
    values = [min(v, ceiling) for *_, segments in lines for _, _, v in segments if v is not None]
    top = nice_top(max([floor, *values]))
    span = max(end - start, 1.0)

    def x(moment: float) -> float:
        return PAD + (min(max(moment, start), end) - start) / span * (WIDTH - 2 * PAD)

    def y(value: float) -> float:
        return HEIGHT - PAD - min(value, ceiling) / top * (HEIGHT - 2 * PAD)

    drawn = []
    for label, css, dash, segments in lines:
        parts, joined_at = [], None
        for begin, finish, value in segments:
            if value is None:
                joined_at = None
                continue
            move = "L" if joined_at is not None and abs(joined_at - begin) < 1e-6 else "M"
            parts.append(f"{move}{x(begin):.1f},{y(value):.1f} L{x(finish):.1f},{y(value):.1f}")
            joined_at = finish
        last = segments[-1][2] if segments else None  # None: no value now (no request)
        latest = "none" if last is None else f"{show(last, ceiling)}{unit}"
        drawn.append(Line(label, css, dash, " ".join(parts), latest))
    summary = f"{title} over the last hour; now: " + ", ".join(
        f"{line.label} {line.latest}" for line in drawn
    )
    return LineChart(title, drawn, f"{show(top, math.inf)}{unit}", summary)


def show(value: float, ceiling: float) -> str:
    if value >= ceiling:
        return f"> {ceiling:g}"
    return f"{value:.1f}" if value < 10 and value != int(value) else f"{value:.0f}"
