"""``Idempotency-Key`` on REST commands: a repeated key returns the original answer and
changes nothing.

:func:`run_once` runs the command and stores its answer (status and body) in the command's own
transaction, under the unique ``(user, key)``: a repeat finds the row and answers from it, and
a parallel repeat waits for the first to commit and then finds it. A command that fails stores
nothing (it changed nothing), so its repeat runs again. The same key for another command
(another post, another channel, another verb) is refused with ``idempotency_conflict``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Now
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter
from rest_framework import status

from ops.errors import MessengerError

from .exceptions import InvalidInput
from .models import CommandKey

HEADER = "Idempotency-Key"
KEY_MAX = 64

# The header in the schema of each command that takes it.
PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Optional, 1..64 visible ASCII characters: a repeat within IDEMPOTENCY_KEY_HOURS returns the "
    "first answer (with `Idempotent-Replayed: true`) and changes nothing; the same key for another request is 409 "
    "`idempotency_conflict`.",
)
SEND_PARAMETER = OpenApiParameter(
    HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The message's client_id, when the body has none (the same key if both are given).",
)


class IdempotencyConflict(MessengerError):
    code = "idempotency_conflict"
    status = status.HTTP_409_CONFLICT
    default_detail = "This Idempotency-Key was used for another request."


def key_from(request) -> str | None:
    """The request's key, or None; InvalidInput unless 1..64 visible ASCII characters."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not (1 <= len(key) <= KEY_MAX) or not all("!" <= char <= "~" for char in key):
        raise InvalidInput({HEADER: [f"1 to {KEY_MAX} visible ASCII characters."]})
    return key


_CLAIM = """
INSERT INTO chats_commandkey (user_id, key, command, status, body, created_at)
VALUES (%(user)s, %(key)s, %(command)s, 0, 'null'::jsonb, %(now)s)
ON CONFLICT (user_id, key) DO UPDATE SET command = EXCLUDED.command, status = 0, body = 'null'::jsonb,
    created_at = EXCLUDED.created_at
WHERE chats_commandkey.created_at < %(expired)s
RETURNING id
"""


def run_once(
    *, user_id: int, key: str | None, command: str, run: Callable[[], tuple[int, dict]]
) -> tuple[int, dict, bool]:
    """``run()`` -> ``(status, body)`` once per ``(user_id, key)``; returns ``(status, body,
    replayed)``. Without a key it just runs. A key older than IDEMPOTENCY_KEY_HOURS is free again."""
    if key is None:
        return (*run(), False)
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _CLAIM,
                {
                    "user": user_id,
                    "key": key,
                    "command": command,
                    "now": now,
                    "expired": now - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS),
                },
            )
            claimed = cursor.fetchone()
        if claimed is None:  # used before (a parallel first use has committed by now)
            stored = CommandKey.objects.get(user_id=user_id, key=key)
            if stored.command != command:
                raise IdempotencyConflict()
            return stored.status, stored.body, True
        answer_status, body = run()
        CommandKey.objects.filter(id=claimed[0]).update(status=answer_status, body=body)
        return answer_status, body, False


def purge(*, older_than_hours: int | None = None) -> int:
    """Delete keys past their lifetime; returns how many."""
    hours = settings.IDEMPOTENCY_KEY_HOURS if older_than_hours is None else older_than_hours
    deleted, _ = CommandKey.objects.filter(created_at__lt=Now() - dt.timedelta(hours=hours)).delete()
    return deleted
