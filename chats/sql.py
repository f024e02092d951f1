"""The hot-path statements (send, read), written once for PostgreSQL and SQLite.

Each command is a handful of single-row statements by primary key or unique index.
On PostgreSQL they run on the raw psycopg cursor with ``prepare=True``: the server
plans each statement once per connection (connections persist, ``CONN_MAX_AGE``), and
the ORM's query compilation is skipped. Errors are still Django's
(``wrap_database_errors``), so transactions, ``on_commit`` and the error mapping
behave as for ORM queries.
"""

from __future__ import annotations

from django.db import connection

# Every statement that takes the chat row lock is an UPDATE (PostgreSQL: row lock;
# SQLite, which ignores FOR UPDATE: the database write lock), so a duplicate or a
# concurrent sender waits for the holder and then sees its commit.
_MEMBER = "SELECT {col} FROM chats_membership m WHERE m.chat_id = chats_chat.id AND m.user_id = %(user)s"

LOCK_CHAT = f"""
UPDATE chats_chat SET last_seq = last_seq
WHERE id = %(chat)s AND EXISTS ({_MEMBER.format(col="1")})
RETURNING id, kind, last_seq, read_all_seq,
          ({_MEMBER.format(col="m.id")}), ({_MEMBER.format(col="m.last_read_seq")}), ({_MEMBER.format(col="m.role")})
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608

# Send, step 1: take the lock and the next seq in one statement; report an earlier message
# with this (sender, client_id) and, for direct chats, a deactivated peer.
CLAIM_SEQ = f"""
UPDATE chats_chat SET last_seq = last_seq + 1, last_activity_at = %(now)s
WHERE id = %(chat)s AND EXISTS ({_MEMBER.format(col="1")})
RETURNING id, kind, last_seq, read_all_seq,
          ({_MEMBER.format(col="m.id")}),
          ({_MEMBER.format(col="m.last_read_seq")}),
          (SELECT x.id FROM chats_message x WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s),
          (kind = 'direct' AND EXISTS (
              SELECT 1 FROM chats_membership p JOIN accounts_user u ON u.id = p.user_id
              WHERE p.chat_id = chats_chat.id AND NOT u.is_active))
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608

# Send, step 2: the row. ON CONFLICT covers a parallel send of the same key that committed
# after step 1 read its snapshot (or went to another chat).
INSERT_MESSAGE = """
INSERT INTO chats_message (chat_id, seq, sender_id, kind, text, client_id, created_at)
VALUES (%(chat)s, %(seq)s, %(user)s, 'text', %(text)s, %(client_id)s, %(now)s)
ON CONFLICT (sender_id, client_id) DO NOTHING
RETURNING id
"""

# PostgreSQL: the whole send in ONE statement, hence one transaction and one round trip.
# Returns (seq, read_all_seq, sender's old watermark, message id, NULL) when stored, or
# (NULL, NULL, NULL, NULL, id of the earlier message) for a member's repeat of a stored key.
# The claim only matches for a member, a new (sender, client_id) and a live direct peer, so
# a duplicate or a refusal consumes no seq (no row: the caller finds out which). A parallel
# duplicate that committed while this statement waited for the chat lock is invisible to the
# NOT EXISTS (its snapshot is older) but not to the unique index: the INSERT fails and the
# whole statement, seq bump included, rolls back -- still no gap.
SEND_PG = f"""
WITH claim AS (
    UPDATE chats_chat SET last_seq = last_seq + 1, last_activity_at = %(now)s
    WHERE id = %(chat)s AND EXISTS ({_MEMBER.format(col="1")})
      AND NOT EXISTS (SELECT 1 FROM chats_message x WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s)
      AND NOT (kind = 'direct' AND EXISTS (
          SELECT 1 FROM chats_membership p JOIN accounts_user u ON u.id = p.user_id
          WHERE p.chat_id = chats_chat.id AND NOT u.is_active))
    RETURNING id, last_seq, read_all_seq, ({_MEMBER.format(col="m.last_read_seq")}) AS my_read
),
stored AS (
    INSERT INTO chats_message (chat_id, seq, sender_id, kind, text, client_id, created_at)
    SELECT id, last_seq, %(user)s, 'text', %(text)s, %(client_id)s, %(now)s FROM claim
    RETURNING id
),
mine AS (
    UPDATE chats_membership SET last_read_seq = claim.last_seq FROM claim
    WHERE chats_membership.chat_id = claim.id AND chats_membership.user_id = %(user)s
      AND chats_membership.last_read_seq < claim.last_seq
)
SELECT claim.last_seq, claim.read_all_seq, claim.my_read, stored.id,
       NULL::bigint, NULL::bigint, NULL::bigint, NULL::varchar, NULL::text, NULL::timestamptz, NULL::bigint
FROM claim, stored
UNION ALL
-- A retry of a stored message (the common duplicate), for a member of this chat: the original
-- (id, chat, seq, kind, text, created_at) and its chat's read-by-everyone seq, so the caller
-- answers it without another query. The row this statement inserts is invisible here, so a
-- new message never matches.
SELECT NULL, NULL, NULL, NULL, x.id, x.chat_id, x.seq, x.kind, x.text, x.created_at,
       (SELECT c.read_all_seq FROM chats_chat c WHERE c.id = x.chat_id)
FROM chats_message x
WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s AND EXISTS (
    SELECT 1 FROM chats_membership m WHERE m.chat_id = %(chat)s AND m.user_id = %(user)s)
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608

# PostgreSQL, after a send committed: the recipients, and (when asked) the read-by-everyone
# advance, in one round trip.
AFTER_SEND_PG = """
WITH advanced AS (
    UPDATE chats_chat SET read_all_seq = (
        SELECT m.last_read_seq FROM chats_membership m WHERE m.chat_id = %(chat)s ORDER BY m.last_read_seq LIMIT 1)
    WHERE id = %(chat)s AND %(probe)s AND read_all_seq < (
        SELECT m.last_read_seq FROM chats_membership m WHERE m.chat_id = %(chat)s ORDER BY m.last_read_seq LIMIT 1)
    RETURNING read_all_seq
)
SELECT (SELECT read_all_seq FROM advanced), array_agg(user_id) FROM chats_membership WHERE chat_id = %(chat)s
"""

# Read watermark: only ever moves forward, evaluated on the row's latest version.
RAISE_WATERMARK = """
UPDATE chats_membership SET last_read_seq = %(seq)s
WHERE id = %(membership)s AND last_read_seq < %(seq)s
RETURNING last_read_seq
"""

# Read up to a seq, clamped to last_seq, only forward; one statement, its own transaction.
_LAST_SEQ = "(SELECT c.last_seq FROM chats_chat c WHERE c.id = %(chat)s)"
# LEAST(seq, last_seq), spelled so SQLite understands it too.
_TARGET = f"(CASE WHEN %(seq)s < {_LAST_SEQ} THEN %(seq)s ELSE {_LAST_SEQ} END)"
READ_UP_TO = f"""
UPDATE chats_membership SET last_read_seq = {_TARGET}
WHERE chat_id = %(chat)s AND user_id = %(user)s AND last_read_seq < {_TARGET}
RETURNING last_read_seq, (SELECT c.read_all_seq FROM chats_chat c WHERE c.id = %(chat)s)
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608

MEMBER_IDS = "SELECT user_id FROM chats_membership WHERE chat_id = %(chat)s"

# read_all_seq = the lowest watermark (one probe of the (chat_id, last_read_seq) index);
# written only when it grows, and the new value returned so the caller broadcasts once.
ADVANCE_READ_ALL = """
UPDATE chats_chat SET read_all_seq = (
    SELECT m.last_read_seq FROM chats_membership m WHERE m.chat_id = %(chat)s ORDER BY m.last_read_seq LIMIT 1)
WHERE id = %(chat)s AND read_all_seq < (
    SELECT m.last_read_seq FROM chats_membership m WHERE m.chat_id = %(chat)s ORDER BY m.last_read_seq LIMIT 1)
RETURNING read_all_seq
"""


def run(sql: str, params: dict) -> list[tuple]:
    """Execute one hot-path statement and return its rows."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            with connection.connection.cursor() as cursor:
                cursor.execute(sql, params, prepare=True)
                return cursor.fetchall() if cursor.description else []
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def run_one(sql: str, params: dict) -> tuple | None:
    rows = run(sql, params)
    return rows[0] if rows else None
