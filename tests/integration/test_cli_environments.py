"""`hangar environment list|show|build` as a user runs it: a subprocess talking HTTP to a
live server (pytest-django's `live_server` on the test database). The build itself is the
worker's (tested in test_environments.py); here its end is written into the image's row
while `build --wait` polls, and the user sees the package manager's line."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from compute.models import Environment, EnvironmentImage, ImageState
from tests.integration.test_cli import Hangar, one_line_error
from tests.support.teams import make_team
from workspace.tokens import create_token

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
SLUG = "clienv"


def environment(workspace, name: str, state: str, version: int = 1, **image) -> Environment:
    made = EnvironmentImage.objects.create(
        spec_hash=f"{name[:8]}{version:08x}", tag=f"hangar/env-{name}", state=state, **image
    )
    return Environment.objects.create(
        workspace=workspace, name=name, version=version, image=made,
        debian_packages="python3-numpy", pip_requirements="joblib==1.4.2\n",
        variables={"OMP_NUM_THREADS": "1"},
    )  # fmt: skip


@pytest.fixture
def team(live_server, transactional_db):
    team = make_team(SLUG)
    environment(None, "site-tools", ImageState.READY, size_bytes=150 * 1024 * 1024,
                image_id="sha256:0123456789abcdef0123")  # fmt: skip
    environment(team.workspace, "tabular", ImageState.READY, version=1)
    environment(team.workspace, "tabular", ImageState.FAILED, version=2,
                error="E: Unable to locate package python3-nope\nmore lines")  # fmt: skip
    return team


def as_user(url: str, user: object, home) -> Hangar:
    return Hangar(url, create_token(user, name="cli test", expires_in_days=1).secret, home)


def test_environments_are_listed_shown_and_built(live_server, team, tmp_path):
    hangar = as_user(live_server.url, team.contributor, tmp_path)
    table = hangar.ok("environment", "list", "-w", SLUG).stdout
    for name in ("site-tools:1", "tabular:2", "tabular:1", "site", "workspace"):
        assert name in table, table
    assert "150.0 MiB" in table and "failed" in table and "ready" in table
    listed = hangar.json("environment", "list", "-w", SLUG)
    # (The curated environments of the repository may be there too, as after a migrate.)
    ours = [e for e in listed if e["name"] in ("site-tools", "tabular")]
    assert sorted((e["name"], e["version"], e["curated"]) for e in ours) == [
        ("site-tools", 1, True), ("tabular", 1, False), ("tabular", 2, False),
    ]  # fmt: skip

    # By name: its newest version; name:version; id.
    shown = hangar.ok("environment", "show", "tabular", "-w", SLUG).stdout
    assert "tabular:2" in shown and "failed" in shown
    assert "E: Unable to locate package python3-nope" in shown
    assert "python3-numpy" in shown and "joblib==1.4.2" in shown and "OMP_NUM_THREADS=1" in shown
    one = hangar.json("environment", "show", "tabular:1", "-w", SLUG)
    assert one["image"]["state"] == "ready" and one["pip_requirements"] == ["joblib==1.4.2"]
    assert one["url"].endswith(f"/w/{SLUG}/environments/{one['id']}/")
    assert hangar.json("environment", "show", str(one["id"]), "-w", SLUG)["version"] == 1
    line = one_line_error(hangar("environment", "show", "tabular:9", "-w", SLUG))
    assert line == f"hangar: Not found: no version 9 of environment 'tabular' in '{SLUG}'. (404)"

    # Build: queues a failed image again; a ready or queued one is a conflict, in its words.
    built = hangar.json("environment", "build", "tabular", "-w", SLUG)
    assert (built["version"], built["image"]["state"], built["image"]["error"]) == (
        2, "queued", "",
    )  # fmt: skip
    line = one_line_error(hangar("environment", "build", "tabular", "-w", SLUG))
    assert line == "hangar: tabular:2's image is already queued. (409)"
    line = one_line_error(hangar("environment", "build", "tabular:1", "-w", SLUG))
    assert line == "hangar: tabular:1's image is already ready. (409)"

    # A reader sees them but may not build.
    reader = as_user(live_server.url, team.reader, tmp_path)
    assert len(reader.json("environment", "list", "-w", SLUG)) == len(listed)
    line = one_line_error(reader("environment", "build", "site-tools", "-w", SLUG))
    assert "building an environment" in line and line.endswith("(403)")


def test_build_wait_ends_with_the_builds_end(live_server, team, tmp_path):
    """--wait polls until the image is ready or failed; a failed build exits 1 with the
    package manager's first line, after the environment is shown."""
    hangar = as_user(live_server.url, team.contributor, tmp_path)
    image = Environment.objects.get(name="tabular", version=2).image

    def fail_it() -> None:
        try:
            deadline = time.monotonic() + 30
            while EnvironmentImage.objects.get(pk=image.pk).state != ImageState.QUEUED:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            EnvironmentImage.objects.filter(pk=image.pk).update(state=ImageState.BUILDING)
            time.sleep(1)
            EnvironmentImage.objects.filter(pk=image.pk).update(
                state=ImageState.FAILED, error="E: Unable to locate package python3-nope again"
            )
        finally:
            connection.close()

    builder = threading.Thread(target=fail_it)
    builder.start()
    done = hangar("environment", "build", "tabular", "--wait", "-w", SLUG)
    builder.join()
    assert done.returncode == 1, done
    assert "tabular:2" in done.stdout and "failed" in done.stdout
    assert done.stderr.splitlines() == [
        f"hangar: building tabular:2 (its page: {done.stdout.split()[-1]})",
        "hangar: the build of tabular:2 failed: E: Unable to locate package python3-nope again",
    ]
