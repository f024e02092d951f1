"""The statements of the message paths (send, read, typing, system messages), each with its row type.

Each is one round trip by primary key or unique index, run prepared by either executor of
``runtime.plans``. Every statement that changes a chat's ``seq`` takes the chat's row lock
(an UPDATE of ``chats_chat``), so seq order is commit order and a duplicate or concurrent
sender waits for the holder and then sees its commit.

Every value is a bound parameter; the f-strings below only join constant SQL fragments.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from runtime.plans import Statement

_MEMBER = "SELECT {col} FROM chats_membership m WHERE m.chat_id = chats_chat.id AND m.user_id = %(user)s"


# --- rows ----------------------------------------------------------------------------------


class LockedChat(NamedTuple):
    id: int
    kind: str
    last_seq: int
    read_all_seq: int
    membership_id: int
    my_last_read_seq: int
    my_role: str


class Original(NamedTuple):
    """An earlier message of this ``(sender, client_id)``; all None when there is none."""

    id: int | None
    chat_id: int | None
    seq: int | None
    kind: str | None
    text: str | None
    created_at: dt.datetime | None
    read_all_seq: int | None  # of the original's chat


class SendRow(NamedTuple):
    """What :data:`SEND` did: ``stored_id`` set when it stored the message, ``original.id`` set
    when the key was used before (by a member of the chat); no row when it was refused."""

    seq: int | None
    read_all_seq: int | None
    my_last_read_seq: int | None
    stored_id: int | None
    original: Original

    @classmethod
    def from_row(cls, row: tuple) -> SendRow:
        return cls(*row[:4], Original._make(row[4:]))


class SendObstacles(NamedTuple):
    """Why a send may not store (:data:`SEND_OBSTACLES`)."""

    is_member: bool
    peer_inactive: bool
    original: Original

    @classmethod
    def from_row(cls, row: tuple) -> SendObstacles:
        return cls(*row[:2], Original._make(row[2:]))


class AfterSend(NamedTuple):
    advanced_read_all_seq: int | None
    recipients: list[int] | None


class Appended(NamedTuple):
    id: int
    seq: int
    created_at: dt.datetime


class ReadRaised(NamedTuple):
    last_read_seq: int
    read_all_seq: int


class ReadState(NamedTuple):
    last_read_seq: int
    read_all_seq: int


class ReadAll(NamedTuple):
    read_all_seq: int


class Members(NamedTuple):
    user_ids: list[int]


class MemberId(NamedTuple):
    user_id: int


# --- statements ------------------------------------------------------------------------------

# The chat's row lock, taken on behalf of a member (no row: not a member, or no such chat).
# A no-op UPDATE: a row lock without FOR UPDATE's separate SELECT.
LOCK_CHAT = Statement(
    f"""
UPDATE chats_chat SET last_seq = last_seq
WHERE id = %(chat)s AND EXISTS ({_MEMBER.format(col="1")})
RETURNING id, kind, last_seq, read_all_seq,
          ({_MEMBER.format(col="m.id")}), ({_MEMBER.format(col="m.last_read_seq")}), ({_MEMBER.format(col="m.role")})
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    LockedChat,
)

# The earlier message of a (sender, client_id), with its chat's read-by-everyone seq.
_ORIGINAL_COLUMNS = (
    "x.id, x.chat_id, x.seq, x.kind, x.text, x.created_at, "
    "(SELECT c.read_all_seq FROM chats_chat c WHERE c.id = x.chat_id)"
)
_PEER_INACTIVE = """(kind = 'direct' AND EXISTS (
          SELECT 1 FROM chats_membership p JOIN accounts_user u ON u.id = p.user_id
          WHERE p.chat_id = chats_chat.id AND NOT u.is_active))"""

# The whole send in ONE statement, hence one transaction and one round trip: claim the next
# seq under the chat lock, insert the message, raise the sender's own watermark.
# The claim only matches for a member, a new (sender, client_id) and a live direct peer, so a
# duplicate or a refusal consumes no seq (no row; SEND_OBSTACLES says why). A parallel
# duplicate that committed while this statement waited for the chat lock is invisible to the
# NOT EXISTS (its snapshot is older) but not to the unique index: the INSERT fails and the
# whole statement, seq bump included, rolls back -- still no gap; the caller runs it again.
# The second branch answers a member's repeat of a stored key with the original (the row this
# statement inserts is invisible to it, so a new message never matches).
SEND = Statement(
    f"""
WITH claim AS (
    UPDATE chats_chat SET last_seq = last_seq + 1, last_activity_at = %(now)s
    WHERE id = %(chat)s AND EXISTS ({_MEMBER.format(col="1")})
      AND NOT EXISTS (SELECT 1 FROM chats_message x WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s)
      AND NOT {_PEER_INACTIVE}
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
SELECT NULL, NULL, NULL, NULL, {_ORIGINAL_COLUMNS}
FROM chats_message x
WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s AND EXISTS (
    SELECT 1 FROM chats_membership m WHERE m.chat_id = %(chat)s AND m.user_id = %(user)s)
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    SendRow,
)

# What stands in the way of a send: membership, a deactivated direct peer, an earlier message
# of the key (anywhere). For a send SEND refused, and for a sender over the rate limit.
SEND_OBSTACLES = Statement(
    f"""
SELECT EXISTS (SELECT 1 FROM chats_membership m WHERE m.chat_id = %(chat)s AND m.user_id = %(user)s),
       COALESCE((SELECT {_PEER_INACTIVE} FROM chats_chat WHERE id = %(chat)s), false),
       o.*
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT {_ORIGINAL_COLUMNS} FROM chats_message x WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s
) AS o ON true
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    SendObstacles,
)

# After a send committed: the recipients, and (when ``probe``) the read-by-everyone advance the
# sender's own watermark may have allowed, in one round trip.
_LOWEST_WATERMARK = (
    "(SELECT m.last_read_seq FROM chats_membership m WHERE m.chat_id = %(chat)s ORDER BY m.last_read_seq LIMIT 1)"
)
AFTER_SEND = Statement(
    f"""
WITH advanced AS (
    UPDATE chats_chat SET read_all_seq = {_LOWEST_WATERMARK}
    WHERE id = %(chat)s AND %(probe)s AND read_all_seq < {_LOWEST_WATERMARK}
    RETURNING read_all_seq
)
SELECT (SELECT read_all_seq FROM advanced), array_agg(user_id) FROM chats_membership WHERE chat_id = %(chat)s
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    AfterSend,
)

# A system message (a member change, a rename) in a chat whose lock the caller's transaction
# holds: the next seq and the row, and the actor's watermark past it while they are a member.
APPEND_SYSTEM = Statement(
    """
WITH claim AS (
    UPDATE chats_chat SET last_seq = last_seq + 1, last_activity_at = %(now)s
    WHERE id = %(chat)s
    RETURNING id, last_seq
),
stored AS (
    INSERT INTO chats_message (chat_id, seq, sender_id, kind, text, client_id, created_at)
    SELECT id, last_seq, NULL, 'system', %(text)s, NULL, %(now)s FROM claim
    RETURNING id, seq, created_at
),
mine AS (
    UPDATE chats_membership SET last_read_seq = claim.last_seq FROM claim
    WHERE chats_membership.chat_id = claim.id AND chats_membership.user_id = %(actor)s
      AND chats_membership.last_read_seq < claim.last_seq
)
SELECT id, seq, created_at FROM stored
""",
    Appended,
)

# Read up to a seq, clamped to last_seq, only forward; one statement, its own transaction.
_LAST_SEQ = "(SELECT c.last_seq FROM chats_chat c WHERE c.id = %(chat)s)"
_TARGET = f"LEAST(%(seq)s, {_LAST_SEQ})"
READ_UP_TO = Statement(
    f"""
UPDATE chats_membership SET last_read_seq = {_TARGET}
WHERE chat_id = %(chat)s AND user_id = %(user)s AND last_read_seq < {_TARGET}
RETURNING last_read_seq, (SELECT c.read_all_seq FROM chats_chat c WHERE c.id = %(chat)s)
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    ReadRaised,
)

# The member's read state (no row: not a member).
READ_STATE = Statement(
    """
SELECT m.last_read_seq, c.read_all_seq FROM chats_membership m JOIN chats_chat c ON c.id = m.chat_id
WHERE m.chat_id = %(chat)s AND m.user_id = %(user)s
""",
    ReadState,
)

# read_all_seq = the lowest watermark (one probe of the (chat_id, last_read_seq) index);
# written only when it grows, and the new value returned so the caller broadcasts once.
ADVANCE_READ_ALL = Statement(
    f"""
UPDATE chats_chat SET read_all_seq = {_LOWEST_WATERMARK}
WHERE id = %(chat)s AND read_all_seq < {_LOWEST_WATERMARK}
RETURNING read_all_seq
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    ReadAll,
)

MEMBER_IDS = Statement("SELECT user_id FROM chats_membership WHERE chat_id = %(chat)s", MemberId)

# Every member of the chat, if ``user`` is one of them (no row otherwise).
MEMBERS_IF_MEMBER = Statement(
    """
SELECT array_agg(user_id) FROM chats_membership WHERE chat_id = %(chat)s
HAVING bool_or(user_id = %(user)s)
""",
    Members,
)

# Each statement's label in messenger_db_statement_seconds is its name here ("send", "read_up_to", ...).
for _name, _statement in list(globals().items()):
    if isinstance(_statement, Statement):
        _statement.name = _name.lower()
