"""Long-lived objects kept out of the garbage collector's way (`gc.freeze()`), once a
process has loaded its code: the web process (config/wsgi.py) and each Celery worker
process (config/celery.py).

A full collection (generation 2) walks every object the collector tracks. A process that
has loaded Django, the models, the views and the tasks holds about 120,000 of them, so each
full collection took about 90 ms here, in the middle of whichever request or sweep
triggered it: a busy idle sweep was 80 ms at p50 and 170 ms at p95 for that alone.
Frozen, they are never walked again (they live as long as the process anyway); what a
request or a task allocates is collected as before. In a prefork worker a child's
collector also no longer writes to the parent's frozen objects, so fewer of their memory
pages are copied (reference counts still copy some): the use Python's documentation of
gc.freeze describes.
"""

from __future__ import annotations

import gc


def freeze_loaded(load_urls: bool = False) -> None:
    """Freeze what is loaded now. `load_urls`: import every view first (Django imports the
    URL configuration only on the first request), so the views are frozen too."""
    if load_urls:
        from django.urls import get_resolver

        get_resolver().url_patterns  # noqa: B018 (imports the URL configuration)
    gc.collect()  # garbage of the start goes now, not into the frozen set
    gc.freeze()
