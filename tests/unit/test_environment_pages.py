"""Environment pages: who sees and makes what, bad package lists refused with the reason
and nothing made, the build log live while the image builds."""

from __future__ import annotations

import pytest
from django.urls import reverse

from compute.actions.environments import create_environment, sync_curated
from compute.lib.buildlogs import log_path
from compute.models import Environment, EnvironmentImage, ImageState
from tests.support.teams import make_team
from workspace.access import get_access

pytestmark = pytest.mark.django_db


def url(team, name: str = "environments", *args: int) -> str:
    return reverse(f"compute:{name}", args=[team.workspace.slug, *args])


@pytest.fixture
def made(team, django_capture_on_commit_callbacks) -> Environment:
    with django_capture_on_commit_callbacks():  # its build is not sent anywhere
        return create_environment(
            get_access(team.contributor, team.workspace.slug),
            name="tabular",
            debian_packages="python3-pandas",
            pip_requirements="six",
        )


def test_members_see_their_own_and_the_curated_ones_outsiders_nothing(client, team, made):
    sync_curated()
    client.force_login(team.reader)
    page = client.get(url(team)).content.decode()
    assert "tabular" in page and "scikit-learn" in page and "pytorch-cpu" in page
    assert "New environment" not in page  # a reader makes none
    assert client.get(url(team, "environment-create")).status_code == 403
    client.force_login(team.outsider)
    assert client.get(url(team)).status_code == 404
    assert client.get(url(team, "environment", made.pk)).status_code == 404
    # Another workspace's member, asking for it by id under their own workspace: 404.
    other = make_team("other")
    client.force_login(other.admin)
    assert client.get(url(other, "environment", made.pk)).status_code == 404


def test_a_bad_package_list_is_refused_with_the_reason_and_nothing_is_made(client, team):
    client.force_login(team.contributor)
    response = client.post(
        url(team, "environment-create"),
        {"name": "x", "debian_packages": "python3; rm -rf /", "pip_requirements": "-r /etc/shadow"},
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "is not a Debian package name" in page and "no pip options" in page
    assert not Environment.objects.filter(workspace=team.workspace).exists()
    assert not EnvironmentImage.objects.filter(environments__workspace=team.workspace).exists()


def test_making_one_queues_its_build_once_and_the_same_packages_share_it(
    client, team, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    posted = {"name": "nlp", "debian_packages": "python3-numpy", "pip_requirements": "six==1.16.0"}
    with django_capture_on_commit_callbacks() as sent:
        response = client.post(url(team, "environment-create"), posted)
    first = Environment.objects.get(workspace=team.workspace, name="nlp")
    assert response.url == url(team, "environment", first.pk)
    assert len(sent) == 1 and first.image.state == ImageState.QUEUED
    with django_capture_on_commit_callbacks() as sent_again:
        client.post(url(team, "environment-create"), {**posted, "name": "nlp-copy"})
    copy = Environment.objects.get(workspace=team.workspace, name="nlp-copy")
    assert copy.image_id == first.image_id and sent_again == []


def test_the_build_log_is_live_while_the_image_builds(client, team, made, settings, tmp_path):
    settings.HANGAR_ENV_BUILD_LOG_DIR = tmp_path
    client.force_login(team.reader)
    EnvironmentImage.objects.filter(pk=made.image_id).update(state=ImageState.BUILDING)
    log_path(made.image.spec_hash).write_text("Get:1 http://deb.debian.org bookworm python3\n")
    page = client.get(url(team, "environment", made.pk), HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in page  # it polls while building
    assert "Get:1 http://deb.debian.org bookworm python3" in page
    EnvironmentImage.objects.filter(pk=made.image_id).update(
        state=ImageState.FAILED, error="E: Unable to locate package python3-pandaz"
    )
    page = client.get(url(team, "environment", made.pk)).content.decode()
    assert 'hx-trigger="every 1s"' not in page  # done: no more polling
    assert "Unable to locate package python3-pandaz" in page
    assert "Build again" not in page  # a reader cannot


def test_build_again_after_a_failure_is_for_contributors_and_queues_once(
    client, team, made, django_capture_on_commit_callbacks
):
    EnvironmentImage.objects.filter(pk=made.image_id).update(state=ImageState.FAILED)
    client.force_login(team.reader)
    assert client.post(url(team, "environment-build", made.pk)).status_code == 403
    client.force_login(team.contributor)
    assert "Build again" in client.get(url(team, "environment", made.pk)).content.decode()
    with django_capture_on_commit_callbacks() as sent:
        client.post(url(team, "environment-build", made.pk))
        client.post(url(team, "environment-build", made.pk))  # a second click: nothing more
    assert len(sent) == 1
    assert EnvironmentImage.objects.get(pk=made.image_id).state == ImageState.QUEUED


def test_the_admin_shows_each_images_disk_and_hands_removal_to_a_worker(
    admin_client, made, django_capture_on_commit_callbacks
):
    EnvironmentImage.objects.filter(pk=made.image_id).update(
        state=ImageState.READY, size_bytes=734_003_200
    )
    changelist = reverse("admin:compute_environmentimage_changelist")
    assert "700.0\xa0MB" in admin_client.get(changelist).content.decode()
    with django_capture_on_commit_callbacks() as sent:
        response = admin_client.post(
            changelist,
            {"action": "remove_unused", "_selected_action": [made.image_id]},
            follow=True,
        )
    assert "that nothing uses" in response.content.decode()
    assert len(sent) == 1  # the worker's task; the page itself removed nothing
    assert EnvironmentImage.objects.get(pk=made.image_id).state == ImageState.READY
