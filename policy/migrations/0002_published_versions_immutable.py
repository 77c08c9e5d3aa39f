"""On PostgreSQL, the database itself refuses to change or delete a published policy version.

The services already refuse; the trigger also covers raw SQL, the admin and future code paths.
SQLite (the embedded default) relies on the service layer alone.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION policy_version_immutable() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status = 'published' THEN
      RAISE EXCEPTION 'policy version % is published and cannot be deleted', OLD.id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
  END IF;
  IF OLD.status = 'published' AND (
       NEW.text IS DISTINCT FROM OLD.text OR NEW.rubric IS DISTINCT FROM OLD.rubric
       OR NEW.rubric_hash IS DISTINCT FROM OLD.rubric_hash OR NEW.number IS DISTINCT FROM OLD.number
       OR NEW.status IS DISTINCT FROM OLD.status OR NEW.policy_id IS DISTINCT FROM OLD.policy_id
       OR NEW.published_at IS DISTINCT FROM OLD.published_at) THEN
    RAISE EXCEPTION 'policy version % is published and cannot change', OLD.id USING ERRCODE = 'integrity_constraint_violation';
  END IF;
  RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER policy_version_immutable BEFORE UPDATE OR DELETE ON policy_policyversion
  FOR EACH ROW EXECUTE FUNCTION policy_version_immutable();
"""
DROP = """
DROP TRIGGER IF EXISTS policy_version_immutable ON policy_policyversion;
DROP FUNCTION IF EXISTS policy_version_immutable();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("policy", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
