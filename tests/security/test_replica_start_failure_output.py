"""A replica whose scoring script fails at start: its last output line is shown on the
endpoint page and in the events, and that output is the tenant's. Escapes (terminal
colours, window titles), bidirectional overrides and HTML are removed or escaped, a line
as long as the script likes is cut, and a traceback printed first cannot hide the one
that failed."""

from __future__ import annotations

import pytest
from django.conf import settings

from compute.controllers.nodes import START_FAILURE_LINE_CHARS
from compute.controllers.reconcile import reconcile
from compute.drivers.base import NodeLog, NodeObservation, container_name
from compute.drivers.noop import NoopDriver
from compute.inference.models import Deployment
from compute.models import Compute, EventVerb, Node, NodeState
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.inference import make_endpoint, make_model

pytestmark = pytest.mark.django_db

HOSTILE = (
    b"Traceback (most recent call last):\n  File fake\nValueError: decoy, printed by run\n"
    b"score-server: init() failed, the replica does not start:\n"
    b'Traceback (most recent call last):\n  File "/hangar/serve/score.py", line 3\n'
    b"    raise RuntimeError(...)\n"
    b"RuntimeError: \x1b]0;owned\x07\x1b[31m<script>alert(1)</script>\xe2\x80\xae"
    + b"A" * 5000
    + b"\nafter the traceback\n"
)


class ExitedReplicas(NoopDriver):
    """Each replica's container exited with code 3 having written HOSTILE."""

    def list_nodes(self, compute_id: int | None = None) -> list[NodeObservation]:
        return [
            NodeObservation(
                n.container_ref, n.container_ref, n.compute_id, n.pk, False, "exited", 3
            )
            for n in Node.objects.filter(ended_at=None)
            if compute_id in (None, n.compute_id)
        ]

    def node_log(self, name: str, tail_bytes: int) -> NodeLog:
        return NodeLog(HOSTILE[-tail_bytes:])


def test_a_failed_starts_output_is_cleaned_cut_and_escaped_on_the_page(client, team):
    model = make_model(team.workspace)
    endpoint = make_endpoint(team.workspace, model)
    blue = Deployment.objects.get(endpoint=endpoint, name="blue")
    compute = ComputeFactory(
        workspace=team.workspace, serving={"deployment": blue.pk, "model": model.pk},
        min_nodes=0, max_nodes=1, replica_target=1,
    )  # fmt: skip
    Deployment.objects.filter(pk=blue.pk).update(compute=compute)
    node = NodeFactory(compute=compute, state=NodeState.IDLE)
    Node.objects.filter(pk=node.pk).update(
        container_ref=container_name(settings.HANGAR_SITE, compute.pk, node.pk)
    )
    reconcile(compute.pk, ExitedReplicas(settings.HANGAR_SITE))

    failed = compute.events.get(verb=EventVerb.NODE_UNUSABLE)
    held = compute.events.get(verb=EventVerb.SCALING_HELD)
    note = Compute.objects.get(pk=compute.pk).autoscale_note
    for text in (failed.message, held.message, note, Node.objects.get(pk=node.pk).error):
        assert "RuntimeError: <script>alert(1)</script>AAA" in text, text
        assert "decoy" not in text and "after the traceback" not in text
        assert not {"\x1b", "\x07", "\u202e"} & set(text), text
    line = failed.message.split("did not start: ", 1)[1].split(". A new replica")[0]
    assert len(line) == START_FAILURE_LINE_CHARS and line.endswith("…")
    # No new replica while it backs off.
    assert not Node.objects.filter(compute=compute, ended_at=None).exists()

    client.force_login(team.reader)
    page = client.get(f"/w/{team.workspace.slug}/endpoints/{endpoint.pk}/").content.decode()
    assert "Not starting a replica before" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
