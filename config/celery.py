"""The Celery app. Tasks take ids and re-fetch from the database (DESIGN.md)."""

import os
import signal

from celery import Celery, signals

from config import beatstop, heap
from config.logfilters import install_quiet_periodic_tasks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Celery's Django fixup runs Django's system checks in every worker, and those load the URL
# configuration: every view, the API and pydantic, in each of the worker's processes (28 MB
# apiece, for code a worker never runs). The web process runs the checks (runserver, and
# `manage.py check` in `make test`).
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

app = Celery("hangar")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Beat's every-second sweep is DEBUG in Celery's own lines (config/logfilters.py).
install_quiet_periodic_tasks()
# Beat stops on SIGTERM without losing the stop to a send in flight (config/beatstop.py).
beatstop.install()


# Full collections no longer walk Django, the models and the tasks (config/heap.py): in the
# worker before its pool forks, and in each pool process once it has started.
@signals.worker_init.connect(weak=False)
def _freeze_before_the_pool(**_: object) -> None:
    heap.freeze_loaded()


@signals.worker_process_init.connect(weak=False)
def _freeze_in_the_pool_process(**_: object) -> None:
    heap.freeze_loaded()


# A pool process leaves stopping to the worker (its warm shutdown lets each task finish,
# then closes the pool): honcho, systemd's mixed mode and Ctrl-C signal the whole process
# group, and a pool process that died of SIGTERM mid-task made `make run`'s stop print a
# WorkerLostError traceback (the task itself was handed out again: late acks).
@signals.worker_process_init.connect(weak=False)
def _leave_sigterm_to_the_worker(**_: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
