"""The quota's SQL functions (migrations 0007/0008) fenced against drift from the Python
they stand in for, and the scale-up claim on both of its paths.

The functions are read back from the database (`pg_get_functiondef`): what is checked is
what runs, not a migration's text. The suite runs on PostgreSQL (CI, `.ci/run`).
"""

from __future__ import annotations

import re

import pytest
from django.db import connection, transaction
from django.db.models.fields import NOT_PROVIDED
from django.test.utils import CaptureQueriesContext

from compute import quota
from compute.actions import computes as actions
from compute.models import (
    ComputeKind,
    FamilyQuota,
    Node,
    NodeState,
    Tier,
    VmFamily,
    VmSize,
)
from compute.models.states import LIVE_NODE_STATES
from tests.support.factories import ComputeFactory, NodeFactory
from tests.support.teams import make_team
from workspace.access import get_access

postgresql_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL functions (CI runs on PostgreSQL)"
)


def source(function: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.proname = %s", [function]
        )
        (found,) = cursor.fetchall()
    return found[0]


def literals(text: str) -> set[str]:
    return set(re.findall(r"'([^']*)'", text))


def state_lists(sql: str) -> dict[str, set[str]]:
    """{table alias: the states of its `alias.state IN (...)`}, every list of one alias alike."""
    found: dict[str, set[str]] = {}
    for alias, values in re.findall(r"(\w+)\.state IN \(([^)]*)\)", sql):
        assert found.setdefault(alias, literals(values)) == literals(values), sql
    return found


def usage_query(sql: str) -> str:
    """The usage query with placeholders, casts and layout taken out."""
    sql = re.sub(r"::bigint", "", sql)
    sql = re.sub(r"\b(ws|fam)\b", "%s", sql)
    return " ".join(sql.split())


@postgresql_only
@pytest.mark.django_db
def test_the_usage_function_counts_the_states_python_counts_and_is_the_sqlite_query():
    usage = source("hangar_family_usage")
    assert state_lists(usage) == {
        "n": set(LIVE_NODE_STATES),  # a cluster's nodes that hold cores
        "c": set(quota.HOLDING_INSTANCE),  # instances that hold (or are about to) a node
    }
    vocabulary = {*ComputeKind.values, *Tier.values, *NodeState.values, *quota.S.values}
    assert literals(usage) <= vocabulary, literals(usage) - vocabulary
    body = usage.split("$function$")[1]
    assert usage_query(body) == usage_query(quota.DEDICATED_USED_SQL)


@postgresql_only
@pytest.mark.django_db
def test_the_locking_paths_use_the_one_usage_function_and_no_state_list_of_their_own():
    for function in ("hangar_lock_family_quota", "hangar_claim_nodes"):
        text = source(function)
        assert "hangar_family_usage(ws, fam)" in text, function
        assert state_lists(text) == {}, function


@postgresql_only
@pytest.mark.django_db
def test_the_claim_function_inserts_every_required_node_column_as_the_model_would():
    text = source("hangar_claim_nodes")
    insert = re.search(
        r"INSERT INTO compute_node \(([^)]*)\)\s+SELECT (.*?)\s+FROM generate_series", text, re.S
    )
    assert insert, text
    columns = [c.strip() for c in insert.group(1).split(",")]
    values = dict(zip(columns, (v.strip() for v in insert.group(2).split(",")), strict=True))

    required_by_model = {
        field.column
        for field in Node._meta.concrete_fields
        if not field.null and not field.primary_key and field.db_default is NOT_PROVIDED
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'compute_node'"
            " AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'"
        )
        required_by_table = {row[0] for row in cursor.fetchall()}
    assert required_by_model <= set(columns), required_by_model - set(columns)
    assert required_by_table <= set(columns), required_by_table - set(columns)
    # A new node starts where the model's default starts it.
    assert values["state"] == f"'{Node._meta.get_field('state').default}'"
    assert values["state"] == f"'{NodeState.PREPARING}'"


def test_only_a_dedicated_claim_on_postgresql_outside_a_transaction_is_one_statement():
    assert quota.claims_on_server("postgresql", Tier.DEDICATED, in_transaction=False)
    assert not quota.claims_on_server("postgresql", Tier.DEDICATED, in_transaction=True)
    assert not quota.claims_on_server("postgresql", Tier.LOW_PRIORITY, in_transaction=False)
    assert not quota.claims_on_server("sqlite", Tier.DEDICATED, in_transaction=False)


# The claim on both paths ----------------------------------------------------------------


def scale_up_boundaries(slug: str) -> list[str]:
    """The autoscaler's claim at its boundaries; returns the SQL it ran."""
    team = make_team(slug)
    family = VmFamily.objects.get(name="DSv2")
    FamilyQuota.objects.create(workspace=team.workspace, family=family, limit=8, approved=8)
    access = get_access(team.admin, team.workspace.slug)
    size = VmSize.objects.get(name="Standard_DS3_v2")  # 4 cores
    cluster = actions.create_cluster(access, name="pool", vm_size=size, max_nodes=4)
    with CaptureQueriesContext(connection) as queries:
        fit, first, result = quota.claim_nodes(cluster, 3)  # 12 cores wanted, 8 allowed
        assert (fit, result.limit, result.used, result.short) == (2, 8, 0, 4)
        assert sorted(cluster.nodes.values_list("index", flat=True)) == [first, first + 1]
        assert cluster.nodes.filter(state=NodeState.PREPARING).count() == 2
        fit, _, result = quota.claim_nodes(cluster, 1)  # exactly full now
        assert (fit, result.used) == (0, 8)
        cluster.nodes.filter(index=first).update(state=NodeState.LEAVING)  # cores freed
        fit, then, _ = quota.claim_nodes(cluster, 1)
        assert (fit, then) == (1, first + 2)  # numbers are never reused
    return [query["sql"] for query in queries.captured_queries]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@postgresql_only
@pytest.mark.django_db
def test_a_claim_inside_a_callers_transaction_leaves_its_synchronous_commit_alone():
    with transaction.atomic():
        assert synchronous_commit() == "on"
        ran = scale_up_boundaries("inside")
        # The function would have switched it off for the rest of this transaction.
        assert synchronous_commit() == "on"
    assert not any("hangar_claim_nodes" in sql for sql in ran)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_claim_on_its_own_is_one_statement_committed_on_the_server(catalog):
    assert not connection.in_atomic_block
    ran = scale_up_boundaries("alone")
    assert sum("hangar_claim_nodes" in sql for sql in ran) == 3
    assert synchronous_commit() == "on"  # it was the claim's own transaction's setting


# Usage of many quotas at once (the quota page, the admin's list of requests) -------------


@pytest.mark.django_db
def test_the_usage_of_many_quotas_at_once_is_each_ones_usage():
    """The grouped queries count what the one-quota functions count, pair by pair: live
    nodes of dedicated clusters, instances that hold a node, low-priority nodes apart."""
    ds3 = VmSize.objects.get(name="Standard_DS3_v2")  # DSv2, 4 cores
    nc6 = VmSize.objects.get(name="Standard_NC6s_v3")  # NCsv3, 6 cores
    vision, rivals = make_team("vision").workspace, make_team("rivals").workspace
    busy = ComputeFactory(workspace=vision, vm_size=ds3)
    NodeFactory(compute=busy)
    NodeFactory(compute=busy, running=True)
    NodeFactory(compute=busy, state=NodeState.LEAVING)  # on its way out: holds nothing
    ComputeFactory(workspace=vision, vm_size=nc6, instance=True)  # running: one node
    ComputeFactory(workspace=rivals, vm_size=nc6, stopped=True)  # holds nothing
    cheap = ComputeFactory(workspace=rivals, vm_size=ds3, tier=Tier.LOW_PRIORITY)
    NodeFactory(compute=cheap)

    pairs = [(w.pk, s.family_id) for w in (vision, rivals) for s in (ds3, nc6)]
    grouped = quota.dedicated_used_by_pair(pairs)
    pools = quota.low_priority_used_by_workspace([vision.pk, rivals.pk])

    one_by_one = {
        (w.pk, s.family_id): quota.dedicated_used(w, s.family)
        for w in (vision, rivals)
        for s in (ds3, nc6)
    }
    assert grouped == one_by_one
    assert grouped[vision.pk, ds3.family_id] == 8 and grouped[vision.pk, nc6.family_id] == 6
    assert pools == {rivals.pk: 4}
    assert quota.low_priority_used(rivals) == 4 and quota.low_priority_used(vision) == 0
    assert quota.dedicated_used_by_pair([]) == {}
