"""Attack tests: secret environment variables (issue 12, points 7 and 8).

A secret value is written once, in the submit form, and then exists only encrypted: not
in the database in clear, not on any page (not even to whoever typed it), not in the
Django admin, not in an event, not in a task message, not in an error report. Readers
see the names of variables only, never a value. On main, the job page showed every
value to every member, and there was no secret field at all.
"""

from __future__ import annotations

import sys

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from django.views.debug import ExceptionReporter

from compute.lib import secrets
from compute.models import Compute, Event, Job, VmSize
from tests.security.conftest import submit_url

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-Value-9f8e7d"
PLAIN = "plain-value-abc123"


def submit(client, team, trainers, callbacks, **extra: str):
    client.force_login(team.contributor)
    data = {
        "compute": trainers.pk,
        "command": 'test "$API_TOKEN" = expected && echo ok',
        "node_count": "1",
        "environment": f"EPOCHS={PLAIN}",
        "secret_environment": f"API_TOKEN={SECRET}",
        **extra,
    }
    with callbacks() as queued:
        response = client.post(submit_url(team), data)
    return response, queued


def raw_column(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column}::text FROM {table} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def test_a_secret_is_stored_encrypted_and_decrypts_to_its_value(
    client, team, trainers, django_capture_on_commit_callbacks
):
    response, queued = submit(client, team, trainers, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    job = Job.objects.get()
    raw = raw_column("compute_job", "secret_environment", job.pk)
    assert SECRET not in raw and "API_TOKEN" in raw  # the name stays readable
    assert secrets.decrypt_variables(job.secret_environment) == {"API_TOKEN": SECRET}
    # The plain variables column holds no secret, and no other column of the row does.
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(j)::text FROM compute_job j WHERE id = %s", [job.pk])
        assert SECRET not in cursor.fetchone()[0]
    assert len(queued) == 1  # the reconcile of the compute, enqueued by id


def test_no_page_and_no_admin_page_shows_a_secret(
    client, team, trainers, django_capture_on_commit_callbacks
):
    submit(client, team, trainers, django_capture_on_commit_callbacks)
    job = Job.objects.get()
    token = job.secret_environment["API_TOKEN"]
    pages = [
        job.get_absolute_url(),
        reverse("compute:jobs", args=[team.workspace.slug]),
        trainers.get_absolute_url(),
    ]
    for user in (team.admin, team.contributor, team.reader):
        client.force_login(user)
        for url in pages:
            body = client.get(url).content.decode()
            assert SECRET not in body and token not in body, (user, url)
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    for url in (
        reverse("admin:compute_job_change", args=[job.pk]),
        reverse("admin:compute_job_changelist"),
    ):
        page = client.get(url)
        assert page.status_code == 200, url
        body = page.content.decode()
        assert SECRET not in body and token not in body  # not even the ciphertext
    for event in Event.objects.all():
        assert SECRET not in event.message and token not in event.message


def test_readers_see_names_only_contributors_see_plain_values(
    client, team, trainers, django_capture_on_commit_callbacks
):
    submit(client, team, trainers, django_capture_on_commit_callbacks)
    job = Job.objects.get()
    client.force_login(team.reader)
    body = client.get(job.get_absolute_url()).content.decode()
    assert "EPOCHS=••••" in body and "API_TOKEN=••••" in body
    assert PLAIN not in body  # on main a reader saw every value
    for user in (team.contributor, team.admin):
        client.force_login(user)
        body = client.get(job.get_absolute_url()).content.decode()
        assert f"EPOCHS={PLAIN}" in body and "API_TOKEN=••••" in body


def test_a_form_shown_again_after_an_error_does_not_echo_the_secret(
    client, team, trainers, django_capture_on_commit_callbacks
):
    response, queued = submit(
        client, team, trainers, django_capture_on_commit_callbacks, environment="API_TOKEN=x"
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "give each variable once" in body
    assert SECRET not in body
    assert queued == [] and not Job.objects.exists()


def test_an_error_report_of_the_submit_view_hides_the_secret(
    client, team, trainers, django_capture_on_commit_callbacks
):
    response, _ = submit(client, team, trainers, django_capture_on_commit_callbacks)
    request = response.wsgi_request
    assert SECRET in request.POST["secret_environment"]  # what an error report would read
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = ExceptionReporter(request, *sys.exc_info())
    report = reporter.get_traceback_text() + reporter.get_traceback_html()
    assert "secret_environment" in report and SECRET not in report
    assert PLAIN in report  # the filter is on the secret only: the report is real


def test_rotation_re_encrypts_job_and_instance_secrets(
    client, team, trainers, settings, django_capture_on_commit_callbacks
):
    submit(client, team, trainers, django_capture_on_commit_callbacks)
    client.force_login(team.contributor)
    with django_capture_on_commit_callbacks():
        response = client.post(
            reverse("compute:create", args=[team.workspace.slug, "instance"]),
            {
                "name": "notebook",
                "vm_size": VmSize.objects.get(name="Standard_DS3_v2").pk,
                "secret_environment": f"HF_TOKEN={SECRET}",
            },
        )
    assert response.status_code == 302, response.content.decode()[:800]
    instance = Compute.objects.get(name="notebook")
    assert SECRET not in raw_column("compute_compute", "secret_environment", instance.pk)
    old_keys = list(settings.HANGAR_SECRET_KEYS)
    new_key = Fernet.generate_key().decode()
    settings.HANGAR_SECRET_KEYS = [new_key, *old_keys]
    call_command("rotate_secrets", stdout=open("/dev/null", "w"))
    settings.HANGAR_SECRET_KEYS = [new_key]  # the old keys are gone now
    job = Job.objects.get()
    assert secrets.decrypt_variables(job.secret_environment) == {"API_TOKEN": SECRET}
    instance.refresh_from_db()
    assert secrets.decrypt_variables(instance.secret_environment) == {"HF_TOKEN": SECRET}
    settings.HANGAR_SECRET_KEYS = old_keys  # and the old keys alone no longer open them
    with pytest.raises(secrets.SecretUnreadable, match="API_TOKEN") as caught:
        secrets.decrypt_variables(job.secret_environment)
    assert SECRET not in str(caught.value)


def test_an_instance_shows_secret_names_only_anywhere(
    client, team, django_capture_on_commit_callbacks
):
    client.force_login(team.contributor)
    with django_capture_on_commit_callbacks():
        client.post(
            reverse("compute:create", args=[team.workspace.slug, "instance"]),
            {
                "name": "notebook",
                "vm_size": VmSize.objects.get(name="Standard_DS3_v2").pk,
                "setup_script": 'echo "$HF_TOKEN" > /dev/null',
                "secret_environment": f"HF_TOKEN={SECRET}",
            },
        )
    instance = Compute.objects.get(name="notebook")
    token = instance.secret_environment["HF_TOKEN"]
    for user in (team.admin, team.contributor, team.reader):
        client.force_login(user)
        body = client.get(instance.get_absolute_url()).content.decode()
        assert "HF_TOKEN=••••" in body and SECRET not in body and token not in body
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    page = client.get(reverse("admin:compute_compute_change", args=[instance.pk]))
    assert page.status_code == 200
    assert SECRET not in page.content.decode() and token not in page.content.decode()


def test_deleting_a_job_leaves_no_value_behind(
    client, team, trainers, django_capture_on_commit_callbacks
):
    submit(client, team, trainers, django_capture_on_commit_callbacks)
    Job.objects.get().delete()
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(j)::text FROM compute_job j")
        assert cursor.fetchall() == []
        cursor.execute("SELECT message FROM compute_event")
        assert all(SECRET not in message for (message,) in cursor.fetchall())
