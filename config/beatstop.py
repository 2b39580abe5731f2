"""Beat stops on SIGTERM/SIGINT without losing the stop to a send in flight.

Celery's own handler (celery.apps.beat.Beat.install_sync_handler) closes the scheduler's
broker connection inside the signal handler, then raises SystemExit. When the signal lands
while beat is sending the every-second sweep, the send is mid-read on that connection:
redis-py's `finally: buf.seek(...)` then meets the buffer the handler just closed, a
ValueError replaces the SystemExit, beat logs "Couldn't apply scheduled task ...: I/O
operation on closed file" with a traceback and keeps running until it is SIGKILLed.

Here the handler only asks the loop to stop; it interrupts beat (SystemExit) only while
beat sleeps between ticks, where nothing is in flight. A send under way finishes, the
loop sees the stop before its next tick, and Service.start's `finally` closes the
scheduler (persisting the schedule) as it does on any exit.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

from celery import beat, signals

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_celerys_handlers: dict[int, object] = {}


def install() -> None:
    signals.beat_init.connect(_stop_gently, weak=False)
    signals.beat_embedded_init.connect(_as_celery_left_them, weak=False)


def _stop_gently(sender: beat.Service, **_: object) -> None:
    # beat_init is sent from Service.start, after Celery installed its own handlers: these
    # replace them. A beat in a thread (embedded, threaded) has no signals of its own.
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        asked_before = sender._is_shutdown.is_set()
        sender._is_shutdown.set()
        asleep = frame is not None and frame.f_code is beat.Service.start.__code__
        if asleep or asked_before:
            # Asleep in the loop (time.sleep): nothing is in flight. Or asked twice (a
            # second Ctrl-C): the person waiting has decided not to wait for the send.
            raise SystemExit()

    for stop in STOP_SIGNALS:
        _celerys_handlers[stop] = signal.getsignal(stop)
        signal.signal(stop, handle)


def _as_celery_left_them(**_: object) -> None:
    # A worker's embedded beat (`-B`, sent just after beat_init) dies on SIGTERM as Celery
    # arranged: the worker that stops it does not wait for a gentle stop.
    for stop, handler in _celerys_handlers.items():
        signal.signal(stop, handler)  # type: ignore[arg-type]
