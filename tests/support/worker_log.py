"""Reading a celery process's log: entries (a header line and what follows it, such as a
traceback), their level and time. Tests fail on an ERROR or a traceback they did not ask
for (tests/conftest.py); the beat-backlog test reads when each sweep was sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

# Celery's format: "[2025-01-31 12:00:00,123: INFO/MainProcess] message".
HEADER = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): ([A-Z]+)/[^\]]*\] ")
TRACEBACK = "Traceback (most recent call last)"
BAD_LEVELS = ("ERROR", "CRITICAL")


@dataclass
class LogEntry:
    level: str  # "" for lines before any header (a crash before logging was set up)
    at: datetime | None
    text: str

    @property
    def is_error(self) -> bool:
        return self.level in BAD_LEVELS or TRACEBACK in self.text

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0]


def read_entries(path: Path, since: int = 0) -> list[LogEntry]:
    try:
        with open(path, "rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    entries: list[LogEntry] = []
    for line in text.splitlines():
        header = HEADER.match(line)
        if header:
            at = datetime.strptime(header[1], "%Y-%m-%d %H:%M:%S,%f")
            entries.append(LogEntry(header[2], at, line))
        elif entries:
            entries[-1].text += "\n" + line
        else:
            entries.append(LogEntry("", None, line))
    return entries


def unexpected_errors(entries: list[LogEntry], allowed: list[re.Pattern[str]]) -> list[str]:
    """Errors no allowed pattern matches, each as its header line (and traceback's end)."""
    found = []
    for entry in entries:
        if entry.is_error and not any(pattern.search(entry.text) for pattern in allowed):
            lines = entry.text.strip().splitlines()
            found.append(lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}")
    return found
