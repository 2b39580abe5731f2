"""Many compare-and-set updates in one statement (compute/models/bulk.py): what the idle
sweep relies on where the database has no row locks (SQLite) to never act on a row that
changed after it was claimed."""

from __future__ import annotations

import pytest
from django.db.models import Q
from django.utils import timezone

from compute.models import Compute, ComputeState
from compute.models.bulk import Contended, claimed_values, write_changes
from tests.support.factories import ComputeFactory

pytestmark = pytest.mark.django_db
S = ComputeState
FIELDS = ("state", "idle_deadline")
RUNNING = Q(state=S.RUNNING)  # what the rows were claimed as


def test_each_row_gets_its_own_changes_in_one_update(django_assert_num_queries):
    now = timezone.now()
    rows = [ComputeFactory(instance=True, idle_deadline=now) for _ in range(3)]
    claimed = claimed_values(rows, FIELDS)
    rows[0].state = S.STOPPING
    rows[1].idle_deadline = None
    with django_assert_num_queries(1):
        assert write_changes(Compute, rows, claimed, RUNNING) == 2  # the third is unchanged
    assert [tuple(Compute.objects.values_list(*FIELDS).get(pk=row.pk)) for row in rows] == [
        (S.STOPPING, now),
        (S.RUNNING, None),
        (S.RUNNING, now),
    ]


def test_nothing_changed_writes_nothing(django_assert_num_queries):
    rows = [ComputeFactory(instance=True)]
    with django_assert_num_queries(0):
        assert write_changes(Compute, rows, claimed_values(rows, FIELDS), RUNNING) == 0


def test_a_row_changed_since_its_claim_refuses_the_whole_write():
    """Another writer stopped the second instance after the claim: neither row is
    written, so the caller can roll back and claim again instead of guessing."""
    rows = [ComputeFactory(instance=True) for _ in range(2)]
    claimed = claimed_values(rows, FIELDS)
    Compute.objects.filter(pk=rows[1].pk).update(state=S.STOPPING)
    for row in rows:
        row.state = S.STOPPING
    with pytest.raises(Contended, match="1 of 2 rows changed since they were claimed"):
        write_changes(Compute, rows, claimed, RUNNING)
