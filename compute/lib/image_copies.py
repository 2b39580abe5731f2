"""Image copies between node hosts' engines, as the host page shows them: bytes so far and
whether each is done, kept in Redis by the worker that copies (compute/drivers/hosts.py)."""

from __future__ import annotations

import json
import time

from django.conf import settings

from compute.lib import serving_load


def copies_key() -> str:
    return f"hangar:{settings.HANGAR_SITE}:image-copies"


def note_copy(host: str, image: str, copied: int, done: bool) -> None:
    """Progress of an image copy, for the host page (every few megabytes)."""
    if not done and copied % (8 * 1024 * 1024) >= 1024 * 1024:
        return
    value = json.dumps({"bytes": copied, "done": done, "at": time.time()})
    serving_load.client().hset(copies_key(), f"{host}|{image}", value)


def image_copies() -> dict[tuple[str, str], dict]:
    raw = serving_load.client().hgetall(copies_key())
    found = {}
    for field, value in raw.items():
        text = field.decode() if isinstance(field, bytes) else str(field)
        host, _, image = text.partition("|")
        found[(host, image)] = json.loads(value)
    return found
