"""The Celery app. Tasks take ids and re-fetch from the database (DESIGN.md)."""

import os

from celery import Celery

from config.logfilters import install_quiet_periodic_tasks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("hangar")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Beat's every-second sweep is DEBUG in Celery's own lines (config/logfilters.py).
install_quiet_periodic_tasks()
