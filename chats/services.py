"""Writes on chats. Every state change is one function here, run in one transaction.

Both the REST views and the WebSocket consumer call these; neither touches domain
rows itself. Events are published only after commit (``events.publish_on_commit``).

Concurrency model: every write that changes a chat's sequence or read state first
takes the chat's row lock (:func:`_lock_chat`). Under that lock ``last_seq`` is
read, bumped and written back in the same transaction, so seq order is commit order
and there are no gaps; a duplicate send waits for the winner and then finds it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from messenger import metrics

from . import events, selectors, sql
from .exceptions import ChatNotFound, Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from .models import Chat, Membership, Message
from .payloads import chat_payload, message_payload

User = get_user_model()

CLIENT_ID_MAX = 64
TITLE_MAX = 128


# --- results -----------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    message: Message
    duplicate: bool
    read_all_seq: int

    def payload(self) -> dict:
        return message_payload(self.message, read_all_seq=self.read_all_seq)


@dataclass(frozen=True)
class ReadResult:
    chat_id: int
    user_id: int
    last_read_seq: int
    read_all_seq: int
    changed: bool


@dataclass(frozen=True)
class _LockedChat:
    id: int
    kind: str
    last_seq: int
    read_all_seq: int
    membership_id: int
    my_last_read_seq: int
    my_role: str


# --- validation helpers ------------------------------------------------------------


def clean_text(text: object) -> str:
    """Message text: a string of 1..MESSAGE_MAX_LENGTH characters after trimming."""
    if not isinstance(text, str):
        raise InvalidInput({"text": ["Must be a string."]})
    if "\x00" in text:  # PostgreSQL text cannot hold NUL; REST (DRF) refuses it the same way
        raise InvalidInput({"text": ["Null characters are not allowed."]})
    text = text.strip()
    if not text:
        raise InvalidInput({"text": ["Must not be blank."]})
    if len(text) > settings.MESSAGE_MAX_LENGTH:
        raise InvalidInput({"text": [f"At most {settings.MESSAGE_MAX_LENGTH} characters."]})
    return text


def clean_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not (1 <= len(client_id) <= CLIENT_ID_MAX) or not client_id.strip():
        raise InvalidInput({"client_id": [f"Must be a string of 1..{CLIENT_ID_MAX} characters."]})
    if "\x00" in client_id:
        raise InvalidInput({"client_id": ["Null characters are not allowed."]})
    return client_id


def clean_title(title: object) -> str:
    if not isinstance(title, str) or not title.strip():
        raise InvalidInput({"title": ["Must not be blank."]})
    title = title.strip()
    if len(title) > TITLE_MAX:
        raise InvalidInput({"title": [f"At most {TITLE_MAX} characters."]})
    return title


# --- locking -----------------------------------------------------------------------

def _lock_chat(*, chat_id: int, user_id: int) -> _LockedChat:
    """Take the chat's row lock on behalf of a member, or raise ChatNotFound.

    A no-op UPDATE rather than SELECT ... FOR UPDATE: it takes the row lock on
    PostgreSQL and the write lock on SQLite (which ignores FOR UPDATE), so the
    same code is race-free on both.
    """
    if not selectors._valid_id(chat_id):
        raise ChatNotFound()
    row = sql.run_one(sql.LOCK_CHAT, {"chat": int(chat_id), "user": int(user_id)})
    if row is None:
        raise ChatNotFound()
    return _LockedChat(*row)


def _advance_read_all(*, chat_id: int, current: int, member_ids: list[int] | None = None) -> int:
    """Recompute the read-by-everyone watermark; broadcast ``chat.read_all`` if it grew.

    Call it *after* the transaction that moved a watermark (or removed a member) has
    committed. Then of two concurrent writers, the one whose probe starts last sees both
    watermarks, so no advance is lost -- without holding the chat lock across a commit.
    The UPDATE only ever raises the value, so racing probes cannot move it backwards.
    """
    row = sql.run_one(sql.ADVANCE_READ_ALL, {"chat": chat_id})
    if row is None:
        return current
    events.publish_on_commit(
        user_ids=member_ids if member_ids is not None else selectors.member_ids(chat_id=chat_id),
        event={"type": "chat.read_all", "chat_id": chat_id, "up_to_seq": row[0]},
    )
    return row[0]


def _append_message(
    *, chat: _LockedChat, sender_id: int | None, kind: str, text: str, client_id: str | None
) -> Message:
    """Insert the next message of a locked chat and bump its counter. Caller holds the lock."""
    seq = chat.last_seq + 1
    now = timezone.now()
    message = Message.objects.create(
        chat_id=chat.id, seq=seq, sender_id=sender_id, kind=kind, text=text, client_id=client_id, created_at=now
    )
    Chat.objects.filter(id=chat.id).update(last_seq=seq, last_activity_at=now)
    return message


def _system_message(
    *, chat: _LockedChat, text: str, recipients: list[int], read_all_seq: int, actor_still_member: bool = True,
    before_broadcast=None,
) -> Message:
    """Append a system message (a member change, a rename) and broadcast it after commit.

    The actor has seen what they did: their watermark moves past it. ``before_broadcast``
    runs between the append and the broadcast (to publish events that must come first).
    """
    message = _append_message(chat=chat, sender_id=None, kind=Message.Kind.SYSTEM, text=text, client_id=None)
    if actor_still_member:
        sql.run(sql.RAISE_WATERMARK, {"membership": chat.membership_id, "seq": message.seq})
    if before_broadcast is not None:
        before_broadcast()
    events.publish_on_commit(
        user_ids=recipients,
        event={"type": "message.new", "message": message_payload(message, read_all_seq=read_all_seq)},
    )
    return message


# --- rate limits -------------------------------------------------------------------


def check_send_rate(*, user_id: int) -> None:
    """Fixed-window per-user send limit, shared by all processes through the cache (Redis)."""
    limit = settings.SEND_RATE_LIMIT
    if limit <= 0:
        return
    window = max(1, settings.SEND_RATE_WINDOW_SECONDS)
    now = timezone.now().timestamp()
    bucket = int(now // window)
    key = f"rl:send:{user_id}:{bucket}"
    cache.add(key, 0, timeout=window * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window * 2)
        count = 1
    if count > limit:
        raise RateLimited(
            f"At most {limit} messages per {window} s.", retry_after=(bucket + 1) * window - now
        )


# --- messages ----------------------------------------------------------------------


def send_message(
    *, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None = None
) -> SendResult:
    """Store a message once per (sender, client_id) and wake up every member's sockets.

    A repeat of the key -- same moment or later, any socket, process or REST -- stores
    nothing, consumes no seq, broadcasts nothing and returns the original message.
    ``skip_channel`` is the sending socket, which gets ``message.ack`` instead of
    ``message.new``. Sending marks the chat read up to the sender's own message.
    """
    client_id = clean_client_id(client_id)
    text = clean_text(text)
    try:
        check_send_rate(user_id=user_id)
    except RateLimited:
        # A retry of a message that is already stored is answered, not refused.
        if selectors._valid_id(chat_id) and Message.objects.filter(sender_id=user_id, client_id=client_id).exists():
            metrics.DUPLICATE_SENDS.inc()
            return _original(user_id=user_id, client_id=client_id, chat_id=chat_id)
        metrics.RATE_LIMITED.labels(limit="send").inc()
        raise
    return _send_message(user_id=user_id, chat_id=chat_id, client_id=client_id, text=text, skip_channel=skip_channel)


class _Duplicate(Exception):
    """Raised inside the send transaction to roll it back when the key was used before."""


def _original(*, user_id: int, client_id: str, chat_id: int) -> SendResult:
    original = selectors.one(Message.objects.filter(sender_id=user_id, client_id=client_id).select_related("chat"))
    if original is None:  # pragma: no cover - the unique index said it exists
        raise ChatNotFound()
    if original.chat_id != int(chat_id):
        raise Conflict({"client_id": ["Already used for a message in another chat."]})
    return SendResult(message=original, duplicate=True, read_all_seq=original.chat.read_all_seq)


def _send_message(*, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None) -> SendResult:
    if not selectors._valid_id(chat_id):
        raise ChatNotFound()
    if connection.vendor == "postgresql":
        return _send_message_pg(
            user_id=user_id, chat_id=int(chat_id), client_id=client_id, text=text, skip_channel=skip_channel
        )
    try:
        result, recipients, may_advance = _store_message(
            user_id=user_id, chat_id=int(chat_id), client_id=client_id, text=text, skip_channel=skip_channel
        )
    except _Duplicate:
        # The claim was rolled back: a duplicate never consumes a seq.
        metrics.DUPLICATE_SENDS.inc()
        return _original(user_id=user_id, client_id=client_id, chat_id=chat_id)
    metrics.MESSAGES_STORED.inc()
    if may_advance:  # the sender may have held the read-by-everyone watermark back
        read_all = _advance_read_all(chat_id=int(chat_id), current=result.read_all_seq, member_ids=recipients)
        result = SendResult(message=result.message, duplicate=False, read_all_seq=read_all)
    return result


def _send_message_pg(*, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None) -> SendResult:
    """The PostgreSQL send: one statement stores it (``sql.SEND_PG``), one more after commit
    fetches the recipients and advances read-by-everyone. Same contract as the portable path
    below (:func:`_store_message`), in two round trips instead of eight."""
    now = timezone.now()
    params = {"chat": chat_id, "user": user_id, "client_id": client_id, "text": text, "now": now}
    try:
        # Inside a caller's transaction, a savepoint keeps a refused INSERT from poisoning it.
        with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
            row = sql.run_one(sql.SEND_PG, params)
    except IntegrityError:
        row = None  # a parallel send of this key committed first; the statement rolled back whole
    if row is not None and row[4] is not None:  # a repeat of a stored message
        metrics.DUPLICATE_SENDS.inc()
        return _original(user_id=user_id, client_id=client_id, chat_id=chat_id)
    if row is None:
        return _refused_send(user_id=user_id, chat_id=chat_id, client_id=client_id)
    seq, read_all, my_read, message_id, _ = row
    metrics.MESSAGES_STORED.inc()
    advanced, recipients = sql.run_one(sql.AFTER_SEND_PG, {"chat": chat_id, "probe": my_read <= read_all})
    recipients = list(recipients or [])
    message = Message(
        id=message_id, chat_id=chat_id, seq=seq, sender_id=user_id, kind=Message.Kind.TEXT, text=text,
        client_id=client_id, created_at=now,
    )
    events.publish_on_commit(
        user_ids=recipients,
        event={"type": "message.new", "message": message_payload(message, read_all_seq=read_all)},
        skip_channel=skip_channel,
    )
    if advanced is not None:
        read_all = advanced
        events.publish_on_commit(
            user_ids=recipients, event={"type": "chat.read_all", "chat_id": chat_id, "up_to_seq": advanced}
        )
    return SendResult(message=message, duplicate=False, read_all_seq=read_all)


def _refused_send(*, user_id: int, chat_id: int, client_id: str) -> SendResult:
    """Why the send statement stored nothing: not a member, a duplicate, or a deactivated peer."""
    membership = selectors.get_membership(user_id=user_id, chat_id=chat_id)  # ChatNotFound if not a member
    if Message.objects.filter(sender_id=user_id, client_id=client_id).exists():
        metrics.DUPLICATE_SENDS.inc()
        return _original(user_id=user_id, client_id=client_id, chat_id=chat_id)
    if membership.chat.kind == Chat.Kind.DIRECT and Membership.objects.filter(
        chat_id=chat_id, user__is_active=False
    ).exists():
        raise Forbidden("The other user's account is deactivated.")
    raise ChatNotFound()  # pragma: no cover - the chat vanished between the two statements


@transaction.atomic
def _store_message(
    *, user_id: int, chat_id: int, client_id: str, text: str, skip_channel: str | None
) -> tuple[SendResult, list[int], bool]:
    """The send transaction: claim the next seq under the chat lock, insert, raise the sender's watermark."""
    now = timezone.now()
    db_now = connection.ops.adapt_datetimefield_value(now)
    claimed = sql.run_one(sql.CLAIM_SEQ, {"chat": chat_id, "user": user_id, "client_id": client_id, "now": db_now})
    if claimed is None:
        raise ChatNotFound()
    _, kind, seq, read_all, membership_id, my_read, earlier_id, peer_inactive = claimed
    if earlier_id is not None:
        raise _Duplicate()
    if peer_inactive:
        raise Forbidden("The other user's account is deactivated.")
    inserted = sql.run_one(
        sql.INSERT_MESSAGE,
        {"chat": chat_id, "seq": seq, "user": user_id, "text": text, "client_id": client_id, "now": db_now},
    )
    if inserted is None:  # a parallel send of this key committed first
        raise _Duplicate()
    sql.run(sql.RAISE_WATERMARK, {"membership": membership_id, "seq": seq})
    recipients = [row[0] for row in sql.run(sql.MEMBER_IDS, {"chat": chat_id})]
    message = Message(
        id=inserted[0], chat_id=chat_id, seq=seq, sender_id=user_id, kind=Message.Kind.TEXT, text=text,
        client_id=client_id, created_at=now,
    )
    events.publish_on_commit(
        user_ids=recipients,
        event={"type": "message.new", "message": message_payload(message, read_all_seq=read_all)},
        skip_channel=skip_channel,
    )
    # my_read may predate the lock (it only grows); if it is above read_all, the sender
    # was not holding the minimum and the probe can be skipped.
    return SendResult(message=message, duplicate=False, read_all_seq=read_all), recipients, my_read <= read_all


def mark_read(*, user_id: int, chat_id: int, up_to_seq: int, skip_channel: str | None = None) -> ReadResult:
    """Move the reader's watermark to max(old, min(up_to_seq, last_seq)).

    O(1) rows whatever the number of messages or members, and no chat lock: one
    membership UPDATE (its own transaction), then one index probe for the chat minimum
    and a chat UPDATE only when the read-by-everyone watermark grows (then
    ``chat.read_all`` goes to all members). Readers never wait for senders.
    """
    if not isinstance(up_to_seq, int) or isinstance(up_to_seq, bool) or up_to_seq < 0:
        raise InvalidInput({"up_to_seq": ["Must be a non-negative integer."]})
    if not selectors._valid_id(chat_id):
        raise ChatNotFound()
    chat_id = int(chat_id)
    raised = sql.run_one(sql.READ_UP_TO, {"chat": chat_id, "user": user_id, "seq": up_to_seq})
    if raised is None:
        state = (
            Membership.objects.filter(chat_id=chat_id, user_id=user_id)
            .values_list("last_read_seq", "chat__read_all_seq")
            .first()
        )
        if state is None:
            raise ChatNotFound()
        return ReadResult(chat_id, user_id, state[0], state[1], changed=False)
    new_value, read_all = raised
    events.publish_on_commit(
        user_ids=[user_id],
        event={"type": "chat.read", "chat_id": chat_id, "user_id": user_id, "last_read_seq": new_value},
        skip_channel=skip_channel,
    )
    read_all = _advance_read_all(chat_id=chat_id, current=read_all)
    return ReadResult(chat_id, user_id, new_value, read_all, changed=True)


def notify_typing(*, user_id: int, chat_id: int) -> bool:
    """Tell other members' sockets that ``user_id`` is typing; at most once per 3 s per chat.

    Typing is ephemeral: nothing is stored. Returns whether an event was sent.
    """
    selectors.get_membership(user_id=user_id, chat_id=chat_id)
    if not cache.add(f"typing:{user_id}:{int(chat_id)}", 1, timeout=settings.TYPING_THROTTLE_SECONDS):
        return False
    others = [uid for uid in selectors.member_ids(chat_id=int(chat_id)) if uid != user_id]
    events.publish_on_commit(user_ids=others, event={"type": "typing", "chat_id": int(chat_id), "user_id": user_id})
    return True


# --- chats -------------------------------------------------------------------------


def _active_user(user_id: object) -> User:
    if not selectors._valid_id(user_id):
        raise NotFound("User not found.")
    user = User.objects.filter(id=int(user_id), is_active=True).first()
    if user is None:
        raise NotFound("User not found.")
    return user


def _announce_chat(*, chat_id: int, user_ids: list[int]) -> None:
    """Send ``chat.created`` to each user, with the chat as that user sees it."""
    for view in _views_by_user(chat_id=chat_id, user_ids=user_ids):
        events.publish_on_commit(user_ids=[view[0]], event={"type": "chat.created", "chat": view[1]})


def _views_by_user(*, chat_id: int, user_ids: list[int]):
    base = selectors.chat_views_for_user(user_id=user_ids[0], chat_ids=[chat_id])[0] if user_ids else None
    if base is None:
        return []
    reads = dict(Membership.objects.filter(chat_id=chat_id, user_id__in=user_ids).values_list("user_id", "last_read_seq"))
    out = []
    for uid in user_ids:
        view = selectors.ChatView(
            chat=base.chat,
            role="",
            last_read_seq=reads.get(uid, 0),
            members_count=base.members_count,
            members=base.members,
            last_message=base.last_message,
        )
        out.append((uid, chat_payload(view)))
    return out


@dataclass(frozen=True)
class DirectResult:
    chat: Chat
    created: bool


def open_direct_chat(*, user_id: int, other_user_id: int) -> DirectResult:
    """The one direct chat between two users, created on first use (race-safe by a unique key)."""
    if selectors._valid_id(other_user_id) and int(other_user_id) == int(user_id):
        raise InvalidInput({"user_id": ["You cannot open a direct chat with yourself."]})
    other = _active_user(other_user_id)
    key = Chat.make_direct_key(user_id, other.id)
    existing = Chat.objects.filter(direct_key=key).first()
    if existing is not None:
        return DirectResult(existing, False)
    try:
        with transaction.atomic():
            now = timezone.now()
            chat = Chat.objects.create(
                kind=Chat.Kind.DIRECT, direct_key=key, created_by_id=user_id, created_at=now, last_activity_at=now
            )
            Membership.objects.bulk_create(
                [Membership(chat=chat, user_id=uid, role=Membership.Role.MEMBER, joined_at=now) for uid in (user_id, other.id)]
            )
            _announce_chat(chat_id=chat.id, user_ids=[user_id, other.id])
    except IntegrityError:
        # Both users opened it at once; the other transaction won.
        return DirectResult(Chat.objects.get(direct_key=key), False)
    return DirectResult(chat, True)


@transaction.atomic
def create_group(*, user_id: int, title: str, member_ids: list[int]) -> Chat:
    """A group owned by its creator, with the given members and a first system message."""
    title = clean_title(title)
    if not isinstance(member_ids, list) or not all(selectors._valid_id(m) for m in member_ids):
        raise InvalidInput({"member_ids": ["Must be a list of user ids."]})
    wanted = sorted({int(m) for m in member_ids} - {int(user_id)})
    if len(wanted) + 1 > settings.GROUP_MAX_MEMBERS:
        raise InvalidInput({"member_ids": [f"A group has at most {settings.GROUP_MAX_MEMBERS} members."]})
    found = set(User.objects.filter(id__in=wanted, is_active=True).values_list("id", flat=True))
    missing = [m for m in wanted if m not in found]
    if missing:
        raise InvalidInput({"member_ids": [f"Unknown or inactive users: {missing}."]})
    creator = User.objects.get(id=user_id)
    now = timezone.now()
    chat = Chat.objects.create(kind=Chat.Kind.GROUP, title=title, created_by_id=user_id, created_at=now, last_activity_at=now)
    Membership.objects.bulk_create(
        [Membership(chat=chat, user_id=user_id, role=Membership.Role.OWNER, joined_at=now)]
        + [Membership(chat=chat, user_id=uid, role=Membership.Role.MEMBER, joined_at=now) for uid in wanted]
    )
    locked = _lock_chat(chat_id=chat.id, user_id=user_id)
    all_ids = [user_id, *wanted]
    message = _append_message(
        chat=locked, sender_id=None, kind=Message.Kind.SYSTEM, text=f"{creator.username} created the group «{title}»", client_id=None
    )
    # Everyone starts having read the creation message, so nobody holds read-by-all back.
    Membership.objects.filter(chat_id=chat.id).update(last_read_seq=message.seq)
    Chat.objects.filter(id=chat.id).update(read_all_seq=message.seq)
    _announce_chat(chat_id=chat.id, user_ids=all_ids)
    chat.refresh_from_db()
    return chat


_MANAGERS = {Membership.Role.OWNER, Membership.Role.ADMIN}


def _require_group_manager(chat: _LockedChat) -> None:
    if chat.kind != Chat.Kind.GROUP:
        raise InvalidInput("Direct chats have no title or member management.")
    if chat.my_role not in _MANAGERS:
        raise Forbidden("Only the group's owner or admins can do this.")


@transaction.atomic
def rename_group(*, user_id: int, chat_id: int, title: str) -> Chat:
    title = clean_title(title)
    chat = _lock_chat(chat_id=chat_id, user_id=user_id)
    _require_group_manager(chat)
    current = Chat.objects.get(id=chat.id)
    if current.title != title:
        Chat.objects.filter(id=chat.id).update(title=title)
        actor = User.objects.only("username").get(id=user_id)
        recipients = selectors.member_ids(chat_id=chat.id)
        _system_message(chat=chat, text=f"{actor.username} renamed the group to «{title}»", recipients=recipients, read_all_seq=chat.read_all_seq)
        events.publish_on_commit(user_ids=recipients, event={"type": "chat.updated", "chat_id": chat.id, "title": title})
        current.refresh_from_db()
    return current


@transaction.atomic
def add_member(*, actor_id: int, chat_id: int, user_id: int, role: str = Membership.Role.MEMBER) -> Membership:
    """Add a user to a group (owner/admin only; only the owner appoints admins)."""
    chat = _lock_chat(chat_id=chat_id, user_id=actor_id)
    _require_group_manager(chat)
    if role not in (Membership.Role.MEMBER, Membership.Role.ADMIN):
        raise InvalidInput({"role": ["Must be 'member' or 'admin'."]})
    if role == Membership.Role.ADMIN and chat.my_role != Membership.Role.OWNER:
        raise Forbidden("Only the owner can appoint admins.")
    user = _active_user(user_id)
    recipients = selectors.member_ids(chat_id=chat.id)
    if user.id in recipients:
        raise Conflict({"user_id": ["Already a member."]})
    if len(recipients) + 1 > settings.GROUP_MAX_MEMBERS:
        raise InvalidInput({"user_id": [f"A group has at most {settings.GROUP_MAX_MEMBERS} members."]})
    actor = User.objects.only("username").get(id=actor_id)
    membership = Membership.objects.create(chat_id=chat.id, user=user, role=role, last_read_seq=chat.last_seq + 1)
    recipients.append(user.id)
    # The new member hears chat.created (the chat as it now is) before any message of it.
    _system_message(
        chat=chat, text=f"{actor.username} added {user.username}", recipients=recipients,
        read_all_seq=chat.read_all_seq, before_broadcast=lambda: _announce_chat(chat_id=chat.id, user_ids=[user.id]),
    )
    events.publish_on_commit(
        user_ids=[uid for uid in recipients if uid != user.id],
        event={"type": "chat.member_added", "chat_id": chat.id, "user_id": user.id, "role": role},
    )
    return membership


def remove_member(*, actor_id: int, chat_id: int, user_id: int) -> None:
    """Remove a member (owner/admin) or leave (anyone removes themself).

    An admin removes plain members only; the owner removes anyone. When the owner
    leaves, the longest-standing admin (else member) becomes owner.
    """
    chat, remaining = _remove_member(actor_id=actor_id, chat_id=chat_id, user_id=user_id)
    if remaining:
        # The member who left may have held the read-by-everyone watermark back.
        _advance_read_all(chat_id=chat.id, current=chat.read_all_seq, member_ids=remaining)


@transaction.atomic
def _remove_member(*, actor_id: int, chat_id: int, user_id: int) -> tuple[_LockedChat, list[int]]:
    chat = _lock_chat(chat_id=chat_id, user_id=actor_id)
    if chat.kind != Chat.Kind.GROUP:
        raise InvalidInput("Members of a direct chat cannot be removed.")
    if not selectors._valid_id(user_id):
        raise NotFound("Member not found.")
    target = selectors.one(Membership.objects.select_related("user").filter(chat_id=chat.id, user_id=int(user_id)))
    if target is None:
        raise NotFound("Member not found.")
    leaving = target.user_id == actor_id
    if not leaving:
        _require_group_manager(chat)
        if chat.my_role == Membership.Role.ADMIN and target.role != Membership.Role.MEMBER:
            raise Forbidden("Admins can remove plain members only.")
    actor = User.objects.only("username").get(id=actor_id)
    target.delete()
    remaining = selectors.member_ids(chat_id=chat.id)
    if target.role == Membership.Role.OWNER and remaining:
        successor = (
            Membership.objects.filter(chat_id=chat.id)
            .order_by("role", "joined_at", "id")  # 'admin' sorts before 'member'
            .first()
        )
        Membership.objects.filter(id=successor.id).update(role=Membership.Role.OWNER)
        events.publish_on_commit(
            user_ids=remaining,
            event={"type": "chat.member_updated", "chat_id": chat.id, "user_id": successor.user_id, "role": Membership.Role.OWNER},
        )
    text = f"{actor.username} left" if leaving else f"{actor.username} removed {target.user.username}"
    _system_message(
        chat=chat, text=text, recipients=remaining, read_all_seq=chat.read_all_seq, actor_still_member=not leaving
    )
    events.publish_on_commit(
        user_ids=[*remaining, target.user_id],
        event={"type": "chat.member_removed", "chat_id": chat.id, "user_id": target.user_id},
    )
    return chat, remaining
