"""One state vocabulary: the job transition table is enforced, every event written has a
verb of EventVerb (old rows renamed, still shown), and no template re-derives a state rule
by comparing a state with a string."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.urls import reverse

from compute.actions import computes as actions
from compute.actions.jobs import cancel_job, submit_job
from compute.controllers.reconcile import reconcile
from compute.drivers import build_driver
from compute.models import (
    Compute,
    ComputeState,
    Event,
    EventVerb,
    Job,
    JobStatus,
    VmSize,
)
from compute.models.events import record
from compute.models.states import JOB_TRANSITIONS, IllegalTransition
from workspace.access import get_access
from workspace.actions.workspaces import update_idle_policy, update_workspace
from workspace.models import IDLE_POLICY_FIELDS, Activity, Workspace

pytestmark = pytest.mark.django_db
J = JobStatus
S = ComputeState
ROOT = Path(settings.BASE_DIR)


@pytest.fixture
def noop(settings):
    settings.HANGAR_DRIVER = "noop"
    return build_driver("noop", settings.HANGAR_SITE)


@pytest.fixture
def cluster(team, django_capture_on_commit_callbacks) -> Compute:
    with django_capture_on_commit_callbacks():
        return actions.create_cluster(
            get_access(team.admin, team.workspace.slug),
            name="trainers",
            vm_size=VmSize.objects.get(name="Standard_DS3_v2"),
            min_nodes=0,
            max_nodes=2,
        )


@pytest.fixture
def job(team, cluster, django_capture_on_commit_callbacks) -> Job:
    with django_capture_on_commit_callbacks():
        return submit_job(
            get_access(team.contributor, team.workspace.slug),
            compute_id=cluster.pk,
            name="train",
            command="true",
        )


# Job transitions -------------------------------------------------------------------------


def test_a_move_the_table_forbids_raises_and_changes_nothing(job):
    with pytest.raises(IllegalTransition):
        Job.objects.filter(pk=job.pk).transition(J.QUEUED, J.RUNNING)  # skips preparing
    with pytest.raises(IllegalTransition):  # raised even when no row is in `expected`
        job.transition(J.COMPLETED, J.QUEUED)
    with pytest.raises(IllegalTransition):  # one forbidden source is enough
        Job.objects.filter(pk=job.pk).transition((J.PREPARING, J.QUEUED), J.COMPLETED)
    job.refresh_from_db()
    assert job.status == J.QUEUED and job.finished_at is None


def test_a_stale_move_loses_the_race_and_returns_false(job):
    placer = Job.objects.get(pk=job.pk)  # read before the cancel below
    assert job.transition(J.QUEUED, J.CANCELED, error="Canceled by a test.") is True
    assert job.status == J.CANCELED and job.error == "Canceled by a test."
    assert placer.transition(J.QUEUED, J.PREPARING) is False
    assert Job.objects.filter(pk=job.pk).transition(J.QUEUED, J.PREPARING) == 0
    job.refresh_from_db()
    assert job.status == J.CANCELED and job.preparing_at is None


def test_terminal_statuses_go_nowhere_and_every_status_has_a_row():
    assert set(JOB_TRANSITIONS) == set(JobStatus.values)
    for status in (J.COMPLETED, J.FAILED, J.CANCELED):
        assert JOB_TRANSITIONS[status] == set()


def test_a_canceled_queued_job_shows_canceled_and_cannot_be_canceled_twice(
    client, team, job, django_capture_on_commit_callbacks
):
    access = get_access(team.contributor, team.workspace.slug)
    cancel_job(access, job.pk)
    client.force_login(team.contributor)
    page = client.get(reverse("compute:job", args=[team.workspace.slug, job.pk]))
    assert 'data-testid="job-status">Canceled<' in page.content.decode()
    with pytest.raises(Exception, match="already canceled"):
        cancel_job(access, job.pk)


# Event verbs ------------------------------------------------------------------------------


# The recorders, and where each takes its verb: record(compute, verb, message), the event
# it writes built alone for a bulk write (event(compute, verb, message), written by
# record_all), and record(workspace, actor, verb, message).
VERB_AT = {"compute.models.events": 1, "workspace.actions.workspaces": 2}
RECORDERS = {
    "compute.models.events": ("record", "event"),
    "workspace.actions.workspaces": ("record",),
}


def record_names(tree: ast.Module, path: Path) -> dict[str, int]:
    """The names a module calls the recorders by, with the position of the verb."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in VERB_AT:
            for alias in node.names:
                if alias.name in RECORDERS[node.module]:
                    names[alias.asname or alias.name] = VERB_AT[node.module]
    if path.as_posix().endswith("workspace/actions/workspaces.py"):
        names["record"] = VERB_AT["workspace.actions.workspaces"]
    return names


def test_every_record_call_names_a_verb_of_the_vocabulary():
    calls = 0
    for path in [*ROOT.glob("compute/**/*.py"), *ROOT.glob("workspace/**/*.py")]:
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        names = record_names(tree, path)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in names:
                continue
            calls += 1
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            verb = node.args[names[node.func.id]]
            assert not isinstance(verb, ast.Constant | ast.JoinedStr | ast.BinOp), (
                f"{where}: a verb spelled out; use EventVerb or Activity.Verb"
            )
            if isinstance(verb, ast.Attribute):
                choices = ast.unparse(verb.value)
                assert choices in ("EventVerb", "Activity.Verb"), where
                members = EventVerb if choices == "EventVerb" else Activity.Verb
                assert verb.attr in members.__members__, where
    assert calls > 50  # the scan found the call sites, so it can fail


def test_record_refuses_a_verb_outside_the_vocabulary(cluster):
    before = Event.objects.count()
    with pytest.raises(ValueError):
        record(cluster, "compute.start", "An old spelling.")
    assert Event.objects.count() == before


def test_a_lifecycle_writes_only_vocabulary_verbs_and_the_page_shows_them(
    client, team, noop, django_capture_on_commit_callbacks
):
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")
    with django_capture_on_commit_callbacks():
        box = actions.create_instance(access, name="box", vm_size=size)
        cluster = actions.create_cluster(access, name="pool", vm_size=size, min_nodes=1)
        submit_job(access, compute_id=cluster.pk, name="kept", command="true")
        dropped = submit_job(access, compute_id=cluster.pk, name="dropped", command="true")
        cancel_job(access, dropped.pk)
    for verb in ("stop", "start", "restart"):
        for _ in range(4):
            reconcile(box.pk, noop)
            reconcile(cluster.pk, noop)
        with django_capture_on_commit_callbacks():
            actions.instance_verb(access, box.pk, verb)
    with django_capture_on_commit_callbacks():
        actions.update_cluster(
            access, cluster.pk, min_nodes=0, max_nodes=2, idle_seconds_before_scaledown=0
        )
        actions.delete_compute(access, box.pk)
    for _ in range(4):
        reconcile(box.pk, noop)
        reconcile(cluster.pk, noop)

    written = set(Event.objects.values_list("verb", flat=True))
    assert written <= set(EventVerb.values)
    assert {
        EventVerb.COMPUTE_CREATED,
        EventVerb.STOP_REQUESTED,
        EventVerb.REACHED_STOPPED,
        EventVerb.START_REQUESTED,
        EventVerb.REACHED_RUNNING,
        EventVerb.RESTART_REQUESTED,
        EventVerb.DELETE_REQUESTED,
        EventVerb.DELETED,
        EventVerb.REACHED_STEADY,
        EventVerb.COMPUTE_UPDATED,
        EventVerb.SCALED_UP,
        EventVerb.NODE_ADDED,
        EventVerb.NODE_READY,
        EventVerb.NODE_REMOVED,
        EventVerb.JOB_SUBMITTED,
        EventVerb.JOB_CANCELED,
    } <= written
    client.force_login(team.reader)
    page = client.get(reverse("compute:detail", args=[team.workspace.slug, cluster.pk]))
    assert "canceled job dropped" in page.content.decode()


def migration(app: str, name: str):
    return importlib.import_module(f"{app}.migrations.{name}")


def test_old_verbs_are_renamed_and_their_rows_still_show(client, team, cluster):
    renames = migration("compute", "0016_event_verbs")
    old_rows = {
        old: Event.objects.create(compute=cluster, verb=old, message=f"An old {old} row.")
        for old in renames.RENAMED
    }
    scaled = Event.objects.create(compute=cluster, verb="autoscale", message="Scaled 0 → 1: …")
    held = Event.objects.create(compute=cluster, verb="autoscale", message="Not scaling: …")
    gave_up = Event.objects.create(
        compute=cluster, verb="job.requeued", message="Job j (#1) failed: x, retries exhausted."
    )
    requeued = Event.objects.create(
        compute=cluster, verb="job.requeued", message="Job j (#1) requeued: x (retry 1 of 3)."
    )
    renames.forward(apps, None)

    for old, row in old_rows.items():
        row.refresh_from_db()
        assert row.verb == renames.RENAMED[old] and row.verb in EventVerb.values
    expected = [
        (scaled, EventVerb.SCALED_UP),
        (held, EventVerb.SCALING_HELD),
        (gave_up, EventVerb.JOB_GAVE_UP),
        (requeued, EventVerb.JOB_REQUEUED),
    ]
    for row, verb in expected:
        row.refresh_from_db()
        assert row.verb == verb
    client.force_login(team.reader)
    page = client.get(reverse("compute:detail", args=[team.workspace.slug, cluster.pk]))
    assert "An old compute.start row." in page.content.decode()

    renames.backward(apps, None)
    assert Event.objects.get(pk=old_rows["compute.start"].pk).verb == "compute.start"
    assert Event.objects.get(pk=gave_up.pk).verb == "job.requeued"


def test_the_idle_policy_has_its_own_activity_verb_old_rows_included(team):
    access = get_access(team.admin, team.workspace.slug)
    policy = {field: getattr(team.workspace, field) for field in IDLE_POLICY_FIELDS}
    update_idle_policy(access, **{**policy, "keep_running_minutes": 90})
    update_workspace(access, name="Renamed", description="")
    verbs = list(Activity.objects.order_by("id").values_list("verb", flat=True))
    assert verbs[-2:] == [Activity.Verb.IDLE_POLICY_CHANGED, Activity.Verb.WORKSPACE_UPDATED]

    old = Activity.objects.create(
        workspace=team.workspace,
        verb="workspace.updated",
        message="vision-admin set the idle policy: keep running minutes → 90",
    )
    migration("workspace", "0007_activity_idle_policy_verb").forward(apps, None)
    old.refresh_from_db()
    assert old.verb == Activity.Verb.IDLE_POLICY_CHANGED
    assert Activity.objects.get(message__contains="renamed it").verb == "workspace.updated"
    assert Workspace.objects.get(pk=team.workspace.pk).name == "Renamed"


# Templates -------------------------------------------------------------------------------

# `x.state == 'running'`, `'failed' != job.status`, `s in "creating starting"` (with
# s=compute.state): a template re-deriving a state rule instead of asking the model
# (is_running, allowed_verbs...).
ALIAS = re.compile(r"\bwith\s+(\w+)=[\w.]*(state|status)\b")


def state_comparisons(text: str) -> list[tuple[int, str]]:
    aliases = [re.escape(alias) for alias, _ in ALIAS.findall(text)]
    names = "|".join([r"\w*(?:state|status)\w*", *aliases])
    compared = re.compile(
        rf"""\b(?:{names})\s*(?:==|!=|\bin\b)\s*["']"""
        rf"""|["']\s*(?:==|!=)\s*[\w.]*\b(?:{names})\b"""
    )
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if compared.search(line)
    ]


def test_no_template_compares_a_state_with_a_string():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line[:80]}"
        for path in ROOT.glob("templates/**/*.html")
        for number, line in state_comparisons(path.read_text())
    ]
    assert offenders == []


def test_the_template_check_catches_what_it_is_for():
    caught = [
        "{% if compute.state == 'failed' %}",
        '{% if job.status != "queued" %}',
        "{% if 'running' == compute.state %}",
        '{% with s=compute.state %}{% if s in "creating starting" %}{% endif %}{% endwith %}',
        '{% with state=invitation.effective_state %}{% if state == "pending" %}',
    ]
    for line in caught:
        assert state_comparisons(line), line
    fine = '{% with s=compute.state %}<span class="state-{{ s }}">{% if compute.is_failed %}'
    assert state_comparisons(fine) == []
