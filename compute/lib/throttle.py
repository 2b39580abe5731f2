"""Fixed-window counters in the shared cache (Redis in production), for rate limits that
must hold across web processes.

A count is taken *before* the work it limits (`cache.add` creates the window's counter,
`cache.incr` is Redis' atomic INCR), so two processes can never both see "one left" and
both pass; a caller that turns out not to need the slot gives it back (`refund`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass(frozen=True)
class Window:
    key: str
    retry_after: int  # seconds until this window ends and a fresh count starts


def window(name: str, seconds: int = 60, now: float | None = None) -> Window:
    """The current window of counter `name`: its cache key and when it ends."""
    now = time.time() if now is None else now
    index = int(now // seconds)
    ends = (index + 1) * seconds
    return Window(f"throttle:{name}:{index}", max(1, math.ceil(ends - now)))


def take(slot: Window, seconds: int = 60) -> int:
    """Counts one use of the window; returns the count including this one."""
    for _ in range(3):
        # The counter outlives its window a little, so an incr never meets a key that
        # expired a moment before; the window index in the key keeps windows apart.
        cache.add(slot.key, 0, timeout=seconds + 5)
        try:
            return cache.incr(slot.key)
        except ValueError:  # evicted between add and incr: create it again
            continue
    return 1  # the cache keeps losing the key: count this use alone rather than fail


def refund(slot: Window) -> None:
    """Gives back a use counted by `take` that the limit is not about."""
    try:
        cache.decr(slot.key)
    except ValueError:  # the window ended meanwhile: nothing to give back
        pass


def used(slot: Window) -> int:
    return int(cache.get(slot.key) or 0)
