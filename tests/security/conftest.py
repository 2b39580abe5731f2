"""Fixtures of the attack tests: a cluster to submit to, a jobs folder of the test's own."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.urls import reverse

from compute.actions import computes as actions
from compute.models import Compute, ComputeState, VmSize
from workspace.access import get_access


def make_cluster(team, name: str = "trainers") -> Compute:
    cluster = actions.create_cluster(
        get_access(team.admin, team.workspace.slug),
        name=name,
        vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
        max_nodes=2,
    )
    Compute.objects.filter(pk=cluster.pk).update(state=ComputeState.STEADY)
    return cluster


@pytest.fixture
def trainers(team, django_capture_on_commit_callbacks) -> Compute:
    with django_capture_on_commit_callbacks():
        return make_cluster(team)


@pytest.fixture
def jobs_dir(settings, tmp_path: Path) -> Path:
    settings.HANGAR_JOBS_DIR = tmp_path / "jobs"
    return settings.HANGAR_JOBS_DIR


def submit_url(team) -> str:
    return reverse("compute:job-submit", args=[team.workspace.slug])


def zipped(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def form_errors(response) -> str:
    """Every error of the submit form, as the page shows them."""
    assert response.status_code == 200, response.status_code
    form = response.context["form"]
    return " ".join(str(message) for errors in form.errors.values() for message in errors)
