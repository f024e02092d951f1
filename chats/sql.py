"""The statements of the message paths (send, read, typing, system messages, the changes of
issue 12: edit, delete, forward, reactions, pins; message views for every read), each with its row type.

Each is one round trip by primary key or unique index, run prepared by either executor of
``runtime.plans``. Every statement that changes a chat's ``seq`` takes the chat's row lock
(an UPDATE of ``chats_chat``), so seq order is commit order and a duplicate or concurrent
sender waits for the holder and then sees its commit.

Every value is a bound parameter; the f-strings below only join constant SQL fragments.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import NamedTuple

from outbox import record_sql
from runtime.plans import Statement


def _json(value):
    """A jsonb value: decoded by psycopg on the async pool, left as text by Django's connection."""
    return json.loads(value) if isinstance(value, str) else value


_MEMBER = "SELECT {col} FROM chats_membership m WHERE m.chat_id = chats_chat.id AND m.user_id = %(user)s"


def _readable(chat: str, reader: str) -> str:
    """Whether ``reader`` may read chat ``chat`` (SQL expressions): a member; for a channel also
    a subscriber, and anyone when it is public. The rule ``selectors.get_chat_for_reader``
    applies too (one rule, written for the ORM there and for statements here)."""
    return f"""(EXISTS (SELECT 1 FROM chats_membership rm WHERE rm.chat_id = {chat} AND rm.user_id = {reader})
    OR EXISTS (SELECT 1 FROM chats_chat rc WHERE rc.id = {chat} AND rc.kind = 'channel' AND (rc.handle IS NOT NULL
        OR EXISTS (SELECT 1 FROM chats_subscription rs WHERE rs.chat_id = rc.id AND rs.user_id = {reader}))))"""  # constant SQL fragments only (column names and placeholders); every value is a bound parameter  # nosec B608


# --- rows ----------------------------------------------------------------------------------


class LockedChat(NamedTuple):
    id: int
    kind: str
    last_seq: int
    read_all_seq: int
    version: int
    pinned_seqs: list[int]
    membership_id: int | None
    my_last_read_seq: int | None
    my_role: str | None


class ReplyRef(NamedTuple):
    seq: int
    sender_id: int | None
    text: str  # the first 100 characters
    deleted: bool


class ForwardRef(NamedTuple):
    chat_id: int | None
    seq: int | None
    sender_id: int | None
    sender_username: str | None
    created_at: dt.datetime | None
    visible: bool  # the reader is a member of the source chat: chat_id and seq are shown


class MessageView(NamedTuple):
    """A message as a reader sees it: everything its JSON object shows (``chats.payloads``)."""

    id: int
    chat_id: int
    seq: int
    sender_id: int | None
    kind: str
    text: str
    client_id: str | None
    created_at: dt.datetime
    version: int
    edited_at: dt.datetime | None
    deleted: bool
    reply_to: ReplyRef | None
    forwarded_from: ForwardRef | None
    reactions: list  # [[emoji, count], ...] most used first
    my_reactions: list[str]  # the reader's emoji on it
    pinned: bool
    attachments: list  # the cached form of each file (attachments.payloads.cached_entry)

    @classmethod
    def from_row(cls, row: tuple) -> MessageView:
        head = row[:11]
        reply = ReplyRef(row[11], row[12], row[13] or "", bool(row[14])) if row[11] is not None else None
        forward = ForwardRef(*row[15:21]) if row[19] is not None else None
        return cls(*head, reply, forward, _json(row[21]) or [], row[22] or [], bool(row[23]), _json(row[24]) or [])


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
    version: int | None
    created_at: dt.datetime | None
    reply_sender_id: int | None
    reply_text: str | None
    original: Original

    @classmethod
    def from_row(cls, row: tuple) -> SendRow:
        return cls(*row[:8], Original._make(row[8:]))


class WatchAccess(NamedTuple):
    is_channel: bool
    can_read: bool
    is_member: bool


class SendObstacles(NamedTuple):
    """Why a send may not store (:data:`SEND_OBSTACLES`). ``reply_state``: None when the send
    answers no message, else ``"live"``, ``"missing"`` or ``"deleted"``."""

    is_member: bool
    can_read: bool  # a channel's subscriber or a public channel's reader (who may not post)
    peer_inactive: bool
    reply_state: str | None  # None, "live", "missing" or "deleted"
    uploads_ok: bool  # every upload named is the sender's (true when none is)
    original: Original

    @classmethod
    def from_row(cls, row: tuple) -> SendObstacles:
        return cls(*row[:5], Original._make(row[5:]))


class AfterSend(NamedTuple):
    advanced_read_all_seq: int | None
    recipients: list[int] | None


class Appended(NamedTuple):
    id: int
    seq: int
    created_at: dt.datetime
    version: int


class Target(NamedTuple):
    """A message a change names, as the chat lock protects it."""

    id: int
    seq: int
    sender_id: int | None
    kind: str
    text: str
    deleted: bool
    created_at: dt.datetime
    forwarded: bool
    reactions: list
    attachments: list
    # The origin a forward of it names: its own origin when it is a forward itself.
    origin_chat_id: int | None
    origin_seq: int | None
    origin_sender_id: int | None
    origin_sender_username: str | None
    origin_created_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: tuple) -> Target:
        return cls(*row[:8], _json(row[8]), _json(row[9]) or [], *row[10:])


class MyReactions(NamedTuple):
    emoji: list[str]


class Changed(NamedTuple):
    """The chat's new version after a change, and what else the change returns."""

    version: int
    reactions: list | None = None
    pinned_seqs: list[int] | None = None

    @classmethod
    def from_row(cls, row: tuple) -> Changed:
        return cls(row[0], _json(row[1]) if len(row) > 1 else None, row[2] if len(row) > 2 else None)


class Deleted(NamedTuple):
    version: int
    pinned_seqs: list[int]
    released_uploads: list[int] | None  # uploads the deleted messages carried


class Released(NamedTuple):
    """A blob that lost references when uploads went, and how many it has left."""

    blob_id: int
    refs: int


class Forwarded(NamedTuple):
    id: int
    seq: int


class KeyUse(NamedTuple):
    client_id: str
    id: int
    chat_id: int
    seq: int


class MembersSplit(NamedTuple):
    """A chat's members, split by whether they are also members of another chat."""

    also: list[int] | None
    not_also: list[int] | None


class ChatVersion(NamedTuple):
    version: int
    pinned_seqs: list[int]


class EditEntry(NamedTuple):
    text: str
    edited_at: dt.datetime


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


# --- statements ------------------------------------------------------------------------------

# The chat's row lock, taken on behalf of a member (no row: not a member, or no such chat).
# A no-op UPDATE: a row lock without FOR UPDATE's separate SELECT.
LOCK_CHAT = Statement(
    f"""
UPDATE chats_chat SET last_seq = last_seq
WHERE id = %(chat)s AND EXISTS ({_MEMBER.format(col="1")})
RETURNING id, kind, last_seq, read_all_seq, version, pinned_seqs,
          ({_MEMBER.format(col="m.id")}), ({_MEMBER.format(col="m.last_read_seq")}), ({_MEMBER.format(col="m.role")})
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    LockedChat,
)

# The same lock for a reaction: a member, or a channel's subscriber (whose membership fields are
# NULL). Readers of a public channel who have not subscribed get no row.
LOCK_CHAT_TO_REACT = Statement(
    f"""
UPDATE chats_chat SET last_seq = last_seq
WHERE id = %(chat)s AND (EXISTS ({_MEMBER.format(col="1")}) OR (kind = 'channel' AND EXISTS (
    SELECT 1 FROM chats_subscription s WHERE s.chat_id = chats_chat.id AND s.user_id = %(user)s)))
RETURNING id, kind, last_seq, read_all_seq, version, pinned_seqs,
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
# The send also bumps the chat's change counter, and takes its time under the lock: the later
# of the clock and the chat's previous message, so created_at never decreases along seq.
# A reply (``reply``) must name a live message of the chat, else no row (SEND_OBSTACLES says why).
_NOW_UNDER_LOCK = "GREATEST(clock_timestamp(), last_activity_at)"
_LIVE_REPLY = """(%(reply)s::bigint IS NULL OR EXISTS (
          SELECT 1 FROM chats_message r WHERE r.chat_id = chats_chat.id AND r.seq = %(reply)s AND r.deleted_at IS NULL))"""
# With ``uploads`` (a send carrying files, SEND_ATTACHED): every upload must be the sender's;
# the message keeps their cached form (``attachments``), one MessageAttachment row references
# each, and the uploads are marked attached (so the purge of unattached uploads leaves them).
_OWN_UPLOADS = """(SELECT count(*) FROM attachments_upload u
            WHERE u.id = ANY(%(uploads)s::bigint[]) AND u.owner_id = %(user)s) = cardinality(%(uploads)s::bigint[])"""
_ATTACHMENTS_JSON = """(SELECT COALESCE(jsonb_agg(jsonb_build_object(
        'id', u.id, 'kind', u.kind, 'mime', b.mime, 'size', u.size, 'name', u.name, 'width', b.width,
        'height', b.height, 'duration', b.duration, 'waveform', b.waveform, 'thumb', b.thumbnail_key <> ''
    ) ORDER BY w.n), '[]'::jsonb)
    FROM unnest(%(uploads)s::bigint[]) WITH ORDINALITY AS w(id, n)
    JOIN attachments_upload u ON u.id = w.id JOIN attachments_blob b ON b.id = u.blob_id)"""


# The domain events the feed workers follow (feeds/handlers.py), recorded inside the statements
# that make the change (``outbox.record_sql``): a post, a deleted post, a like or unlike of a
# post. Only channels record them; for any other chat the CTE inserts nothing.
_POST_CREATED = record_sql(
    "SELECT 'post.created' AS type, jsonb_build_object('post_id', stored.id, 'channel_id', claim.id) AS payload,"
    " 'channel:' || claim.id AS key FROM claim CROSS JOIN stored WHERE claim.kind = 'channel'"
)


def _send_sql(*, attached: bool) -> str:
    own = f"\n      AND {_OWN_UPLOADS}" if attached else ""
    column, value = (", attachments", f", {_ATTACHMENTS_JSON}") if attached else ("", "")
    extra = (
        """,
attached AS (
    INSERT INTO chats_messageattachment (message_id, upload_id, position)
    SELECT stored.id, w.id, w.n FROM stored CROSS JOIN unnest(%(uploads)s::bigint[]) WITH ORDINALITY AS w(id, n)
),
marked AS (
    UPDATE attachments_upload SET attached_at = COALESCE(attached_at, claim.last_activity_at) FROM claim
    WHERE attachments_upload.id = ANY(%(uploads)s::bigint[])
)"""
        if attached
        else ""
    )
    return f"""
WITH claim AS (
    UPDATE chats_chat SET last_seq = last_seq + 1, version = version + 1, last_activity_at = {_NOW_UNDER_LOCK}
    WHERE id = %(chat)s AND EXISTS ({_MEMBER.format(col="1")})
      AND NOT EXISTS (SELECT 1 FROM chats_message x WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s)
      AND NOT {_PEER_INACTIVE}
      AND {_LIVE_REPLY}{own}
    RETURNING id, kind, last_seq, version, last_activity_at, read_all_seq, ({_MEMBER.format(col="m.last_read_seq")}) AS my_read
),
stored AS (
    INSERT INTO chats_message (chat_id, seq, sender_id, kind, text, client_id, created_at, version, reply_to_seq{column})
    SELECT id, last_seq, %(user)s, 'text', %(text)s, %(client_id)s, last_activity_at, version, %(reply)s{value} FROM claim
    RETURNING id
),
mine AS (
    UPDATE chats_membership SET last_read_seq = claim.last_seq FROM claim
    WHERE chats_membership.chat_id = claim.id AND chats_membership.user_id = %(user)s
      AND chats_membership.last_read_seq < claim.last_seq
),
announced AS ({_POST_CREATED}){extra}
SELECT claim.last_seq, claim.read_all_seq, claim.my_read, stored.id, claim.version, claim.last_activity_at,
       r.sender_id, left(r.text, 100),
       NULL::bigint, NULL::bigint, NULL::bigint, NULL::varchar, NULL::text, NULL::timestamptz, NULL::bigint
FROM claim CROSS JOIN stored
LEFT JOIN chats_message r ON %(reply)s::bigint IS NOT NULL AND r.chat_id = claim.id AND r.seq = %(reply)s
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, {_ORIGINAL_COLUMNS}
FROM chats_message x
WHERE x.sender_id = %(user)s AND x.client_id = %(client_id)s AND EXISTS (
    SELECT 1 FROM chats_membership m WHERE m.chat_id = %(chat)s AND m.user_id = %(user)s)
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608


# Group commit (runtime/async_db.py): one chat's sends in a group take the next seqs in arrival
# order under the chat lock the group's transaction holds; a group that fails is retried send by send.
SEND = Statement(_send_sql(attached=False), SendRow, group_commit=True)
SEND_ATTACHED = Statement(_send_sql(attached=True), SendRow, name="SendAttachedRow")

# What stands in the way of a send: membership, a deactivated direct peer, the message it
# answers, an earlier message of the key (anywhere). For a send SEND refused, and for a sender
# over the rate limit.
SEND_OBSTACLES = Statement(
    f"""
SELECT EXISTS (SELECT 1 FROM chats_membership m WHERE m.chat_id = %(chat)s AND m.user_id = %(user)s),
       {_readable("%(chat)s", "%(user)s")},
       COALESCE((SELECT {_PEER_INACTIVE} FROM chats_chat WHERE id = %(chat)s), false),
       CASE WHEN %(reply)s::bigint IS NULL THEN NULL
            ELSE COALESCE((SELECT CASE WHEN r.deleted_at IS NULL THEN 'live' ELSE 'deleted' END
                           FROM chats_message r WHERE r.chat_id = %(chat)s AND r.seq = %(reply)s), 'missing')
       END,
       {_OWN_UPLOADS},
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
    f"""
WITH claim AS (
    UPDATE chats_chat SET last_seq = last_seq + 1, version = version + 1, last_activity_at = {_NOW_UNDER_LOCK}
    WHERE id = %(chat)s
    RETURNING id, last_seq, version, last_activity_at
),
stored AS (
    INSERT INTO chats_message (chat_id, seq, sender_id, kind, text, client_id, created_at, version)
    SELECT id, last_seq, NULL, 'system', %(text)s, NULL, last_activity_at, version FROM claim
    RETURNING id, seq, created_at, version
),
mine AS (
    UPDATE chats_membership SET last_read_seq = claim.last_seq FROM claim
    WHERE chats_membership.chat_id = claim.id AND chats_membership.user_id = %(actor)s
      AND chats_membership.last_read_seq < claim.last_seq
)
SELECT id, seq, created_at, version FROM stored
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
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

# Every member's id, as one array: one value to decode instead of a row per member.
MEMBER_IDS = Statement(
    "SELECT coalesce(array_agg(user_id), '{}') FROM chats_membership WHERE chat_id = %(chat)s", Members
)

# Every member of the chat, if ``user`` is one of them (no row otherwise).
MEMBERS_IF_MEMBER = Statement(
    """
SELECT array_agg(user_id) FROM chats_membership WHERE chat_id = %(chat)s
HAVING bool_or(user_id = %(user)s)
""",
    Members,
)


# --- message views: every read of messages (history, catch-up, changes, events) -----------------

# A message as ``reader`` sees it (MessageView): the replied message as it is now, the forward's
# origin (its chat and seq only for readers of that chat), the reactions with the reader's own,
# and whether it is pinned. Every join is by primary key or unique index.
_VIEW = f"""
SELECT m.id, m.chat_id, m.seq, m.sender_id, m.kind, m.text, m.client_id, m.created_at, m.version, m.edited_at,
       m.deleted_at IS NOT NULL,
       m.reply_to_seq, r.sender_id, left(r.text, 100), r.deleted_at IS NOT NULL,
       m.forward_chat_id, m.forward_seq, m.forward_sender_id, m.forward_sender_username, m.forward_created_at,
       m.forward_chat_id IS NOT NULL AND {_readable("m.forward_chat_id", "%(reader)s::bigint")},
       m.reactions,
       CASE WHEN m.reactions = '[]'::jsonb THEN '{{}}'::varchar[]
            ELSE ARRAY(SELECT x.emoji FROM chats_reaction x WHERE x.message_id = m.id AND x.user_id = %(reader)s::bigint)
       END,
       m.seq = ANY(c.pinned_seqs),
       m.attachments
FROM chats_message m
JOIN chats_chat c ON c.id = m.chat_id
LEFT JOIN chats_message r ON r.chat_id = m.chat_id AND r.seq = m.reply_to_seq
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608


def _view_statement(tail: str) -> Statement:
    """A MessageView statement: the view's columns and joins, then ``tail`` (constant SQL)."""
    sql = _VIEW + tail  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    return Statement(sql, MessageView)


# Messages ``lo < seq <= hi`` (a history page: seq is gap-free, so an offset is a seq range).
MESSAGES_IN_RANGE = _view_statement("WHERE m.chat_id = %(chat)s AND m.seq > %(lo)s AND m.seq <= %(hi)s ORDER BY m.seq")
MESSAGES_AFTER = _view_statement("WHERE m.chat_id = %(chat)s AND m.seq > %(after)s ORDER BY m.seq LIMIT %(limit)s")
MESSAGES_BEFORE = _view_statement(
    "WHERE m.chat_id = %(chat)s AND m.seq < %(before)s ORDER BY m.seq DESC LIMIT %(limit)s"
)
MESSAGES_BY_SEQS = _view_statement("WHERE m.chat_id = %(chat)s AND m.seq = ANY(%(seqs)s::bigint[]) ORDER BY m.seq")
# The newest message of each chat: pairs (chat, seq) from the chat rows, one index probe each.
LAST_MESSAGES = _view_statement(
    "JOIN unnest(%(chats)s::bigint[], %(seqs)s::bigint[]) AS want(chat_id, seq)"
    " ON m.chat_id = want.chat_id AND m.seq = want.seq"
)
# The current state of every message changed after version ``after``, in change order, up to the
# chat's version read in the same snapshot (so a client that takes it as its cursor skips nothing).
CHANGES = _view_statement(
    """WHERE m.chat_id = %(chat)s AND m.version > %(after)s
  AND m.version <= (SELECT v.version FROM chats_chat v WHERE v.id = %(chat)s)
ORDER BY m.version, m.seq LIMIT %(limit)s"""
)
CHANGES_OF_VERSION = _view_statement("WHERE m.chat_id = %(chat)s AND m.version = %(version)s ORDER BY m.seq")
CHAT_VERSION = Statement("SELECT version, pinned_seqs FROM chats_chat WHERE id = %(chat)s", ChatVersion)

EDIT_HISTORY = Statement(
    "SELECT text, edited_at FROM chats_messageedit WHERE message_id = %(message)s ORDER BY id",
    EditEntry,
)

# --- changes: each runs in a transaction that took the chat lock (LOCK_CHAT) first -------------

# The messages a change names, as the lock protects them.
TARGETS = Statement(
    """
SELECT id, seq, sender_id, kind, text, deleted_at IS NOT NULL, created_at, forward_created_at IS NOT NULL, reactions,
       attachments,
       CASE WHEN forward_created_at IS NOT NULL THEN forward_chat_id ELSE chat_id END,
       CASE WHEN forward_created_at IS NOT NULL THEN forward_seq ELSE seq END,
       CASE WHEN forward_created_at IS NOT NULL THEN forward_sender_id ELSE sender_id END,
       CASE WHEN forward_created_at IS NOT NULL THEN forward_sender_username
            ELSE (SELECT u.username FROM accounts_user u WHERE u.id = sender_id) END,
       COALESCE(forward_created_at, created_at)
FROM chats_message WHERE chat_id = %(chat)s AND seq = ANY(%(seqs)s::bigint[])
ORDER BY chats_message.seq
""",
    Target,
)

MY_REACTIONS = Statement(
    "SELECT ARRAY(SELECT emoji FROM chats_reaction WHERE message_id = %(message)s AND user_id = %(user)s ORDER BY id)",
    MyReactions,
)

# An edit: the old text into the history, the new one in place, one version.
EDIT = Statement(
    """
WITH bump AS (UPDATE chats_chat SET version = version + 1 WHERE id = %(chat)s RETURNING version),
history AS (
    INSERT INTO chats_messageedit (message_id, text, edited_at) VALUES (%(message)s, %(old_text)s, %(now)s)
)
UPDATE chats_message m SET text = %(text)s, edited_at = %(now)s, version = bump.version
FROM bump WHERE m.id = %(message)s
RETURNING bump.version
""",
    Changed,
)

_POST_DELETED = record_sql(
    "SELECT 'post.deleted' AS type, jsonb_build_object('post_id', t.id, 'channel_id', %(chat)s::bigint) AS payload,"
    " 'channel:' || %(chat)s AS key FROM tombstones t CROSS JOIN bump WHERE bump.kind = 'channel'"
)

# Delete for everyone: tombstones (content, reactions and edit history erased), out of the pins,
# one version for the whole batch.
DELETE = Statement(
    f"""
WITH bump AS (
    UPDATE chats_chat SET version = version + 1,
        pinned_seqs = ARRAY(SELECT p.s FROM unnest(pinned_seqs) WITH ORDINALITY AS p(s, o)
                            WHERE p.s <> ALL(%(seqs)s::bigint[]) ORDER BY p.o)
    WHERE id = %(chat)s RETURNING kind, version, pinned_seqs
),
edits AS (DELETE FROM chats_messageedit WHERE message_id = ANY(%(ids)s::bigint[])),
reactions AS (DELETE FROM chats_reaction WHERE message_id = ANY(%(ids)s::bigint[])),
files AS (DELETE FROM chats_messageattachment WHERE message_id = ANY(%(ids)s::bigint[]) RETURNING upload_id),
tombstones AS (
    UPDATE chats_message m SET deleted_at = %(now)s, text = '', edited_at = NULL, reactions = '[]'::jsonb,
        attachments = '[]'::jsonb, reply_to_seq = NULL, forward_chat_id = NULL, forward_seq = NULL,
        forward_sender_id = NULL, forward_sender_username = NULL, forward_created_at = NULL, version = bump.version
    FROM bump WHERE m.id = ANY(%(ids)s::bigint[])
    RETURNING m.id
),
announced AS ({_POST_DELETED})
SELECT bump.version, bump.pinned_seqs, (SELECT array_agg(DISTINCT upload_id) FROM files)
FROM bump WHERE EXISTS (SELECT 1 FROM tombstones)
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    Deleted,
)

# After a delete removed attachment rows (same transaction): the uploads no message carries any
# more are deleted and their blobs lose a reference each; blobs left at 0 references are removed
# after the commit (attachments.services.remove_blobs).
RELEASE_UPLOADS = Statement(
    """
WITH orphaned AS (
    DELETE FROM attachments_upload u
    WHERE u.id = ANY(%(uploads)s::bigint[])
      AND NOT EXISTS (SELECT 1 FROM chats_messageattachment a WHERE a.upload_id = u.id)
    RETURNING u.blob_id
),
counted AS (SELECT blob_id, count(*) AS n FROM orphaned GROUP BY blob_id)
UPDATE attachments_blob b SET refs = b.refs - counted.n FROM counted
WHERE b.id = counted.blob_id
RETURNING b.id, b.refs
""",
    Released,
)

LIKE = "\u2764\ufe0f"  # ❤️: a channel post's like is this reaction (the same rows, events and change log)


def _recount(*, adds: bool) -> str:
    """The tail of a reaction's add or remove: the message's counts recounted from the rows (the
    rows this statement changes included), one version -- or nothing at all when it changed no
    row; a like of a channel post (the ❤️ reaction) recorded as ``post.liked``."""
    liked = "true" if adds else "false"
    announce = record_sql(
        "SELECT 'post.liked' AS type, jsonb_build_object('post_id', %(message)s::bigint, 'channel_id', %(chat)s::bigint,"
        f" 'user_id', %(user)s::bigint, 'liked', {liked}) AS payload, 'channel:' || %(chat)s AS key"  # constants only  # nosec B608
        f" FROM bump WHERE bump.kind = 'channel' AND %(emoji)s = '{LIKE}'"  # constants only  # nosec B608
    )
    return f"""
bump AS (UPDATE chats_chat SET version = version + 1 WHERE id = %(chat)s AND EXISTS (SELECT 1 FROM changed) RETURNING kind, version),
announced AS ({announce})
UPDATE chats_message m SET version = bump.version, reactions = COALESCE((
    SELECT jsonb_agg(jsonb_build_array(e.emoji, e.n) ORDER BY e.n DESC, e.first)
    FROM (SELECT emoji, count(*) AS n, min(id) AS first FROM counted GROUP BY emoji) AS e), '[]'::jsonb)
FROM bump WHERE m.id = %(message)s
RETURNING bump.version, m.reactions
"""  # constant SQL fragments only; every value is a bound parameter  # nosec B608


REACTION_ADD = Statement(
    """
WITH changed AS (
    INSERT INTO chats_reaction (message_id, user_id, emoji, created_at) VALUES (%(message)s, %(user)s, %(emoji)s, %(now)s)
    ON CONFLICT DO NOTHING RETURNING id, emoji
),
counted AS (SELECT id, emoji FROM chats_reaction WHERE message_id = %(message)s UNION ALL SELECT id, emoji FROM changed),
"""
    + _recount(adds=True),  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    Changed,
)
REACTION_REMOVE = Statement(
    """
WITH changed AS (
    DELETE FROM chats_reaction WHERE message_id = %(message)s AND user_id = %(user)s AND emoji = %(emoji)s
    RETURNING id
),
counted AS (SELECT id, emoji FROM chats_reaction WHERE message_id = %(message)s AND id NOT IN (SELECT id FROM changed)),
"""
    + _recount(adds=False),  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    Changed,
)

# Pin (newest first) or unpin one message; the message's version moves too.
PIN = Statement(
    """
WITH bump AS (
    UPDATE chats_chat SET version = version + 1,
        pinned_seqs = CASE WHEN %(pinned)s THEN array_prepend(%(seq)s::bigint, array_remove(pinned_seqs, %(seq)s::bigint))
                           ELSE array_remove(pinned_seqs, %(seq)s::bigint) END
    WHERE id = %(chat)s RETURNING version, pinned_seqs
)
UPDATE chats_message m SET version = bump.version FROM bump WHERE m.id = %(message)s
RETURNING bump.version, NULL::jsonb, bump.pinned_seqs
""",
    Changed,
)

# Earlier messages of the sender with these keys (anywhere).
KEY_USES = Statement(
    "SELECT client_id, id, chat_id, seq FROM chats_message WHERE sender_id = %(user)s AND client_id = ANY(%(keys)s::varchar[])",
    KeyUse,
)

# A forward: the new messages in one claim of consecutive seqs and versions under the lock the
# transaction holds, and the sender's watermark past them.
FORWARD = Statement(
    f"""
WITH items AS (
    SELECT * FROM unnest(%(client_ids)s::varchar[], %(texts)s::text[], %(origin_chats)s::bigint[],
                         %(origin_seqs)s::bigint[], %(origin_senders)s::bigint[], %(origin_names)s::varchar[],
                         %(origin_times)s::timestamptz[], %(attachments)s::jsonb[])
        WITH ORDINALITY AS i(client_id, text, origin_chat, origin_seq, origin_sender, origin_name, origin_time,
                             attachments, n)
),
claim AS (
    UPDATE chats_chat SET last_seq = last_seq + %(count)s, version = version + %(count)s,
        last_activity_at = {_NOW_UNDER_LOCK}
    WHERE id = %(chat)s
    RETURNING id, kind, last_seq - %(count)s AS base_seq, version - %(count)s AS base_version, last_seq, last_activity_at
),
stored AS (
    INSERT INTO chats_message (chat_id, seq, sender_id, kind, text, client_id, created_at, version,
                               forward_chat_id, forward_seq, forward_sender_id, forward_sender_username, forward_created_at,
                               attachments)
    SELECT claim.id, claim.base_seq + i.n, %(user)s, 'text', i.text, i.client_id, claim.last_activity_at,
           claim.base_version + i.n, i.origin_chat, i.origin_seq, i.origin_sender, i.origin_name, i.origin_time,
           i.attachments
    FROM claim CROSS JOIN items i
    RETURNING id, seq
),
-- A forwarded file is the same upload: one more reference to it, no copy.
attached AS (
    INSERT INTO chats_messageattachment (message_id, upload_id, position)
    SELECT stored.id, (e.value ->> 'id')::bigint, e.n
    FROM stored JOIN claim ON true JOIN items i ON stored.seq = claim.base_seq + i.n
    CROSS JOIN jsonb_array_elements(i.attachments) WITH ORDINALITY AS e(value, n)
),
mine AS (
    UPDATE chats_membership SET last_read_seq = claim.last_seq FROM claim
    WHERE chats_membership.chat_id = claim.id AND chats_membership.user_id = %(user)s
      AND chats_membership.last_read_seq < claim.last_seq
),
announced AS ({_POST_CREATED})
SELECT id, seq FROM stored ORDER BY seq
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    Forwarded,
)


class Flag(NamedTuple):
    value: bool


class Username(NamedTuple):
    username: str


# A direct chat whose other member is deactivated (no one may send there).
PEER_INACTIVE = Statement(
    f"SELECT {_PEER_INACTIVE} FROM chats_chat WHERE id = %(chat)s",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    Flag,
)
CAN_READ = Statement(
    f"SELECT {_readable('%(chat)s', '%(user)s')}",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    Flag,
)
# May the user watch the chat (a channel they read), and are they on its staff (then its events
# reach them as a member already)?
WATCH_ACCESS = Statement(
    f"""
SELECT c.kind = 'channel', {_readable("c.id", "%(user)s")},
       EXISTS (SELECT 1 FROM chats_membership m WHERE m.chat_id = c.id AND m.user_id = %(user)s)
FROM chats_chat c WHERE c.id = %(chat)s
""",  # constant SQL fragments only; every value is a bound parameter  # nosec B608
    WatchAccess,
)
USERNAME = Statement("SELECT username FROM accounts_user WHERE id = %(user)s", Username)

# The members of ``chat``, split by whether they are members of ``other`` too.
MEMBERS_SPLIT = Statement(
    """
SELECT array_agg(m.user_id) FILTER (WHERE o.id IS NOT NULL), array_agg(m.user_id) FILTER (WHERE o.id IS NULL)
FROM chats_membership m
LEFT JOIN chats_membership o ON o.chat_id = %(other)s AND o.user_id = m.user_id
WHERE m.chat_id = %(chat)s
""",
    MembersSplit,
)

# Each statement's label in messenger_db_statement_seconds is its name here ("send", "read_up_to", ...).
for _name, _statement in list(globals().items()):
    if isinstance(_statement, Statement):
        _statement.name = _name.lower()
