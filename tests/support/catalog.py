"""Reload the catalog of the data migration: transactional tests flush it away."""

from __future__ import annotations

import importlib

from django.apps import apps

from compute.models import VmSize


def ensure_catalog() -> None:
    if VmSize.objects.exists():
        return
    migration = importlib.import_module("compute.migrations.0002_load_catalog")
    migration.load_catalog(apps, None)
