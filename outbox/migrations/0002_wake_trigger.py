"""The relays' wake-up moves from ``record``'s statement into a row trigger on the outbox table,
so every way of inserting an event (``record``, or a use case's own statement through
``outbox.record_sql``) wakes them. PostgreSQL sends a NOTIFY at commit only, and several of one
transaction with the same payload once."""

from django.db import migrations

CREATE = """
CREATE FUNCTION outbox_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('messenger_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_wake AFTER INSERT ON outbox_outboxevent FOR EACH ROW EXECUTE FUNCTION outbox_wake();
"""
DROP = "DROP TRIGGER outbox_wake ON outbox_outboxevent; DROP FUNCTION outbox_wake();"


class Migration(migrations.Migration):
    dependencies = [("outbox", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
