"""Reads on accounts."""

from __future__ import annotations

from django.db.models import QuerySet
from django.db.models.functions import Lower

from .models import User

SEARCH_LIMIT = 20


def search_users(*, prefix: str, exclude_id: int | None = None, limit: int = SEARCH_LIMIT) -> QuerySet[User]:
    """Active users whose username starts with ``prefix`` (any case), alphabetically, at most ``limit``."""
    qs = User.objects.filter(is_active=True).annotate(username_lower=Lower("username"))
    if prefix:
        qs = qs.filter(username_lower__startswith=prefix.lower())
    if exclude_id is not None:
        qs = qs.exclude(id=exclude_id)
    return qs.order_by("username_lower", "id").only("id", "username")[:limit]
