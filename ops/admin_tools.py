"""Admin helpers for tables too big to count: list pages of 10M messages must stay instant."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property

# Below this many rows (by the planner's estimate) an exact COUNT(*) is cheap enough.
ESTIMATE_ABOVE = 100_000


class EstimatedCountPaginator(Paginator):
    """The admin's paginator, with PostgreSQL's row estimate for an *unfiltered* big table.

    The changelist counts its rows on every page; ``COUNT(*)`` over 10M messages is a full scan
    (seconds). Unfiltered, the count comes from ``pg_class.reltuples`` (kept by autovacuum's
    ANALYZE) when that says the table is big; a filtered or searched list, or a small table,
    is counted exactly. The total shown is then approximate, and so is the last page number.
    """

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        query = getattr(queryset, "query", None)
        if query is not None and not query.where:
            connection = connections[queryset.db]
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [connection.ops.quote_name(queryset.model._meta.db_table)],
                )
                row = cursor.fetchone()
            if row is not None and row[0] >= ESTIMATE_ABOVE:
                return int(row[0])
        return super().count


class ReadOnlyAdmin:
    """Mixin for a ModelAdmin of rows only the services write (messages, uploads): the console
    shows them and refuses add, change and delete."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
