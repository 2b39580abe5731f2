"""PostgreSQL only: lock a family quota row and read its usage in one round trip.

Inside the function each statement takes a fresh snapshot (READ COMMITTED), so the usage
is read after the lock is held and sees every scale-up that committed before it: correct,
and one round trip instead of two under the lock every scale-up waits for.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION hangar_lock_family_quota(ws bigint, fam bigint)
RETURNS TABLE(quota_limit integer, quota_approved integer, used bigint) AS $$
BEGIN
  PERFORM 1 FROM compute_familyquota WHERE workspace_id = ws AND family_id = fam FOR UPDATE;
  RETURN QUERY SELECT f."limit", f.approved, (
    COALESCE((
      SELECT SUM(s.vcpus) FROM compute_node n
      JOIN compute_compute c ON n.compute_id = c.id
      JOIN compute_vmsize s ON c.vm_size_id = s.id
      WHERE c.workspace_id = ws AND s.family_id = fam AND c.kind = 'cluster'
        AND c.tier = 'dedicated' AND n.state IN ('preparing', 'idle', 'running')
    ), 0) + COALESCE((
      SELECT SUM(s.vcpus) FROM compute_compute c
      JOIN compute_vmsize s ON c.vm_size_id = s.id
      WHERE c.workspace_id = ws AND s.family_id = fam AND c.kind = 'instance'
        AND c.state IN ('creating', 'starting', 'running', 'restarting')
    ), 0))::bigint
  FROM compute_familyquota f WHERE f.workspace_id = ws AND f.family_id = fam;
END
$$ LANGUAGE plpgsql VOLATILE;
"""
DROP = "DROP FUNCTION IF EXISTS hangar_lock_family_quota(bigint, bigint);"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("compute", "0006_quotas")]

    operations = [migrations.RunPython(create, drop)]
