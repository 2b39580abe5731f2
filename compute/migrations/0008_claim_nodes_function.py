"""PostgreSQL only: a dedicated scale-up in one statement — lock the family quota row,
read its usage, work out how many nodes fit, and insert their rows.

Why a function: called outside a transaction, the statement commits on the server the
moment it ends, so the quota row is locked only for the server's own work, never across a
round trip to a client process that may be waiting for a CPU (50 scale-ups at once on 2
cores spent most of their lock time exactly there). Inside the function each statement
takes a fresh snapshot (READ COMMITTED), so the usage is read after the lock is held and
sees every change of cores that committed before it.

The usage of a family is one SQL function, hangar_family_usage, used by both locked
paths (0007's hangar_lock_family_quota is redefined here to call it) and by the quota page.
It counts live nodes per cluster with an index-only scan of node_live_idx instead of
joining every node to its size: the work done under the lock is what every waiter pays.
compute/quota.py keeps the same query for SQLite; keep the two alike.
"""

import importlib

from django.db import migrations

USAGE = """
CREATE OR REPLACE FUNCTION hangar_family_usage(ws bigint, fam bigint) RETURNS bigint AS $$
  SELECT COALESCE(SUM(s.vcpus * CASE WHEN c.kind = 'cluster' THEN (
      SELECT count(*) FROM compute_node n
      WHERE n.compute_id = c.id AND n.state IN ('preparing', 'idle', 'running')
    ) ELSE 1 END), 0)::bigint
  FROM compute_compute c JOIN compute_vmsize s ON c.vm_size_id = s.id
  WHERE c.workspace_id = ws AND s.family_id = fam AND (
    (c.kind = 'cluster' AND c.tier = 'dedicated')
    OR (c.kind = 'instance' AND c.state IN ('creating', 'starting', 'running', 'restarting'))
  )
$$ LANGUAGE sql STABLE;

CREATE OR REPLACE FUNCTION hangar_lock_family_quota(ws bigint, fam bigint)
RETURNS TABLE(quota_limit integer, quota_approved integer, used bigint) AS $$
BEGIN
  PERFORM 1 FROM compute_familyquota WHERE workspace_id = ws AND family_id = fam FOR UPDATE;
  RETURN QUERY SELECT f."limit", f.approved, hangar_family_usage(ws, fam)
  FROM compute_familyquota f WHERE f.workspace_id = ws AND f.family_id = fam;
END
$$ LANGUAGE plpgsql VOLATILE;
"""

CREATE = """
CREATE OR REPLACE FUNCTION hangar_claim_nodes(
  ws bigint, fam bigint, cluster bigint, wanted integer, vcpus integer, restricted boolean
)
RETURNS TABLE(fit integer, quota_limit integer, quota_approved integer, used bigint,
              first_index integer) AS $$
DECLARE
  row_limit integer;
  row_approved integer;
  in_use bigint;
  granted integer := 0;
  next_index integer;
BEGIN
  -- The row lock is released only after the commit; waiting there for the WAL flush would
  -- make every queued scale-up wait for the disk too. A crash can lose the last few
  -- claims, never half of one: the autoscaler claims again and the sweep removes any
  -- container whose row is gone.
  PERFORM set_config('synchronous_commit', 'off', true);
  SELECT f."limit", f.approved INTO row_limit, row_approved
    FROM compute_familyquota f WHERE f.workspace_id = ws AND f.family_id = fam FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;  -- no quota row yet: the caller makes it and calls again
  END IF;
  in_use := hangar_family_usage(ws, fam);  -- a fresh snapshot: after the lock
  IF NOT (restricted AND row_approved = 0) THEN
    granted := LEAST(wanted, GREATEST(0, row_limit - in_use) / GREATEST(1, vcpus));
  END IF;
  IF granted > 0 THEN
    UPDATE compute_compute SET next_node_index = next_node_index + granted
      WHERE id = cluster RETURNING next_node_index INTO next_index;
    INSERT INTO compute_node (compute_id, index, state, container_ref, error, created_at)
      SELECT cluster, i, 'preparing', '', '', now()
      FROM generate_series(next_index - granted, next_index - 1) AS i;
  END IF;
  RETURN QUERY SELECT granted, row_limit, row_approved, in_use, next_index - granted;
END
$$ LANGUAGE plpgsql VOLATILE;
"""
DROP = (
    "DROP FUNCTION IF EXISTS hangar_claim_nodes(bigint, bigint, bigint, integer, integer, boolean);"
)


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(USAGE)
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)
        previous = importlib.import_module("compute.migrations.0007_quota_function")
        schema_editor.execute(previous.CREATE)  # the lock function as it was
        schema_editor.execute("DROP FUNCTION IF EXISTS hangar_family_usage(bigint, bigint);")


class Migration(migrations.Migration):
    dependencies = [("compute", "0007_quota_function")]

    operations = [migrations.RunPython(create, drop)]
