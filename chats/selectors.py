"""Reads on chats, and the access checks.

:func:`get_chat_for_member` is the only way to load a chat a user acts in, and
:func:`get_chat_for_reader` the only way to load one whose messages they read (a member; for a
channel also a subscriber, and anyone when it is public -- ``sql._readable`` is the same rule
for statements). A missing chat and one the user may not see raise the same ``ChatNotFound``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Lower

from attachments.exceptions import FileNotFound
from attachments.models import Upload
from runtime.plans import fetch

from . import sql
from .exceptions import ChatNotFound, MessageNotFound
from .models import Chat, Membership, Message, MessageAttachment, Subscription
from .sql import MessageView
from .validation import HANDLE_RULE, as_id

# Chats up to this size list their members inline in chat objects.
INLINE_MEMBERS_LIMIT = 100


def one(queryset):
    """The first row of a queryset filtered on a unique key, or None.

    Unlike ``.first()`` it adds no ``ORDER BY id``, which can steer PostgreSQL onto the
    primary key index instead of the unique index the filter names.
    """
    return next(iter(queryset.order_by()[:1]), None)


def get_membership(*, user_id: int, chat_id: int) -> Membership:
    """The caller's membership with its chat loaded, or ChatNotFound (missing and foreign look alike)."""
    chat_id = as_id(chat_id)
    membership = (
        one(Membership.objects.select_related("chat").filter(chat_id=chat_id, user_id=user_id))
        if chat_id is not None
        else None
    )
    if membership is None:
        raise ChatNotFound()
    return membership


def get_chat_for_member(*, user_id: int, chat_id: int) -> Chat:
    """The chat if ``user_id`` is a member, else ChatNotFound."""
    return get_membership(user_id=user_id, chat_id=chat_id).chat


def readable_chats(user_id: int):
    """The chats ``user_id`` may read, as a queryset (the rule of ``sql._readable``)."""
    return Chat.objects.filter(
        Q(Exists(Membership.objects.filter(chat_id=OuterRef("pk"), user_id=user_id)))
        | Q(kind=Chat.Kind.CHANNEL, handle__isnull=False)
        | Q(kind=Chat.Kind.CHANNEL, pk__in=Subscription.objects.filter(user_id=user_id).values("chat_id"))
    )


def get_chat_for_reader(*, user_id: int, chat_id: int) -> Chat:
    """The chat if ``user_id`` may read its messages, else ChatNotFound."""
    chat_id = as_id(chat_id)
    chat = one(readable_chats(user_id).filter(pk=chat_id)) if chat_id is not None else None
    if chat is None:
        raise ChatNotFound()
    return chat


@dataclass
class ChannelView:
    """A channel as one user sees it: their role on its staff and whether they subscribe."""

    chat: Chat
    role: str | None
    subscribed: bool


def _channel_views(queryset, *, user_id: int) -> list[ChannelView]:
    rows = queryset.annotate(
        my_role=Subquery(Membership.objects.filter(chat_id=OuterRef("pk"), user_id=user_id).values("role")[:1]),
        subscribed=Exists(Subscription.objects.filter(chat_id=OuterRef("pk"), user_id=user_id)),
    )
    return [ChannelView(chat, chat.my_role, chat.subscribed) for chat in rows]


def channel_view(*, user_id: int, key: object) -> ChannelView:
    """The channel with id or handle ``key`` (any case) the user may see, or ChatNotFound."""
    channels = readable_chats(user_id).filter(kind=Chat.Kind.CHANNEL)
    if isinstance(key, str) and not key.isdigit():
        handle = key.removeprefix("@")
        if not HANDLE_RULE.fullmatch(handle):  # no channel has it (and NUL never reaches SQL)
            raise ChatNotFound()
        channels = channels.filter(handle__iexact=handle)
    else:
        chat_id = as_id(key)
        if chat_id is None:
            raise ChatNotFound()
        channels = channels.filter(pk=chat_id)
    views = _channel_views(channels.order_by()[:1], user_id=user_id)
    if not views:
        raise ChatNotFound()
    return views[0]


def search_channels(*, user_id: int, query: str, limit: int) -> list[ChannelView]:
    """Public channels whose handle or title starts with ``query`` (any case; a leading "@"
    names handles only), most subscribed first. Prefix matches on the two partial indexes."""
    query = query.strip()
    handles_only = query.startswith("@")
    prefix = query.removeprefix("@").lower()
    # lower(...) LIKE 'prefix%' is what the two partial text_pattern_ops indexes answer (Django
    # escapes % and _ in the value).
    channels = Chat.objects.alias(lhandle=Lower("handle"), ltitle=Lower("title")).filter(
        kind=Chat.Kind.CHANNEL, handle__isnull=False
    )
    match = Q(lhandle__startswith=prefix)
    if not handles_only:
        match |= Q(ltitle__startswith=prefix)
    channels = channels.filter(match).order_by("-subscribers_count", "id")
    return _channel_views(channels[:limit], user_id=user_id)


def my_channels(*, user_id: int) -> list[ChannelView]:
    """The channels the user subscribes to or runs, most recent activity first."""
    channels = Chat.objects.filter(
        Q(pk__in=Subscription.objects.filter(user_id=user_id).values("chat_id"))
        | Q(pk__in=Membership.objects.filter(user_id=user_id, chat__kind=Chat.Kind.CHANNEL).values("chat_id")),
        kind=Chat.Kind.CHANNEL,
    ).order_by("-last_activity_at", "-id")
    return _channel_views(channels, user_id=user_id)


def post_ref(*, user_id: int, post_id: object) -> tuple[int, int]:
    """``(chat_id, seq)`` of the channel post with message id ``post_id`` the user may read,
    else ChatNotFound (missing and foreign alike)."""
    post_id = as_id(post_id)
    row = (
        one(
            Message.objects.filter(
                pk=post_id, chat__kind=Chat.Kind.CHANNEL, chat__in=readable_chats(user_id)
            ).values_list("chat_id", "seq")
        )
        if post_id is not None
        else None
    )
    if row is None:
        raise ChatNotFound()
    return row


def member_ids(*, chat_id: int) -> list[int]:
    return list(Membership.objects.filter(chat_id=chat_id).values_list("user_id", flat=True))


def users_refusing_groups_from(*, actor_id: int, user_ids: list[int]) -> list[int]:
    """Those of ``user_ids`` whose ``who_can_add_me`` does not let ``actor_id`` put them in a
    group: ``nobody``, or ``contacts`` without a chat (direct or group) shared with the actor."""
    User = get_user_model()
    shared = Membership.objects.filter(user_id=OuterRef("id"), chat__memberships__user_id=actor_id)
    refusing = (
        User.objects.filter(id__in=user_ids)
        .exclude(who_can_add_me=User.WhoCanAddMe.EVERYBODY)
        .exclude(Q(who_can_add_me=User.WhoCanAddMe.CONTACTS) & Exists(shared))
    )
    return sorted(refusing.values_list("id", flat=True))


def _members_count_subquery():
    return Coalesce(
        Subquery(
            Membership.objects.filter(chat_id=OuterRef("chat_id"))
            .order_by()
            .values("chat_id")
            .annotate(n=Count("id"))
            .values("n")[:1]
        ),
        0,
    )


@dataclass
class ChatView:
    """A chat as one member sees it; what chat serializers render."""

    chat: Chat
    last_read_seq: int
    members_count: int
    members: list[Membership] | None
    last_message: MessageView | None

    @property
    def unread_count(self) -> int:
        return max(0, self.chat.last_seq - self.last_read_seq)


def _views_for(memberships: list[Membership], *, reader: int) -> list[ChatView]:
    """Attach inline members and last messages: two queries, whatever the number of chats."""
    small = [m.chat_id for m in memberships if m.members_count <= INLINE_MEMBERS_LIMIT]
    members_by_chat: dict[int, list[Membership]] = {cid: [] for cid in small}
    if small:
        for member in (
            Membership.objects.filter(chat_id__in=small)
            .select_related("user")
            .only("id", "chat_id", "role", "user__id", "user__username")
            .order_by("chat_id", "id")
        ):
            members_by_chat[member.chat_id].append(member)
    last_by_chat: dict[int, MessageView] = {}
    # One probe of the (chat_id, seq) index per chat: the pairs are known from the chat rows.
    # (A join on chat.last_seq lets the planner hash-join every message of a big chat.)
    newest = [(m.chat_id, m.chat.last_seq) for m in memberships if m.chat.last_seq > 0]
    if newest:
        chats, seqs = zip(*newest, strict=True)
        for message in fetch(sql.LAST_MESSAGES.all(chats=list(chats), seqs=list(seqs), reader=reader)):
            last_by_chat[message.chat_id] = message
    return [
        ChatView(
            chat=m.chat,
            last_read_seq=m.last_read_seq,
            members_count=m.members_count,
            members=members_by_chat.get(m.chat_id),
            last_message=last_by_chat.get(m.chat_id),
        )
        for m in memberships
    ]


def chat_views_for_user(*, user_id: int, chat_ids: list[int] | None = None) -> list[ChatView]:
    """The user's chats, most recent activity first. Three queries in all."""
    qs = (
        Membership.objects.filter(user_id=user_id)
        .select_related("chat")
        .annotate(members_count=_members_count_subquery())
        .order_by("-chat__last_activity_at", "-chat_id")
    )
    if chat_ids is not None:
        qs = qs.filter(chat_id__in=chat_ids)
    return _views_for(list(qs), reader=user_id)


def chat_view(*, user_id: int, chat_id: int) -> ChatView:
    """One chat as ``user_id`` sees it, or ChatNotFound."""
    chat_id = as_id(chat_id)
    views = chat_views_for_user(user_id=user_id, chat_ids=[chat_id]) if chat_id is not None else []
    if not views:
        raise ChatNotFound()
    return views[0]


def history_page(*, chat: Chat, reader: int, offset: int, limit: int) -> list[MessageView]:
    """Messages number ``offset+1 .. offset+limit`` in seq order.

    ``seq`` is gap-free and messages are never hard-deleted (a delete leaves a tombstone), so
    the k-th message has seq k and OFFSET becomes an index range: O(limit) at any depth.
    """
    if limit <= 0:
        return []
    return fetch(sql.MESSAGES_IN_RANGE.all(chat=chat.id, lo=offset, hi=offset + limit, reader=reader))


def messages_after(*, chat: Chat, reader: int, after_seq: int, limit: int) -> tuple[list[MessageView], bool]:
    """Up to ``limit`` messages with seq > after_seq, ascending, and whether more follow."""
    rows = fetch(sql.MESSAGES_AFTER.all(chat=chat.id, after=after_seq, limit=limit + 1, reader=reader))
    return rows[:limit], len(rows) > limit


def messages_before(*, chat: Chat, reader: int, before_seq: int, limit: int) -> tuple[list[MessageView], bool]:
    """The ``limit`` messages just before ``before_seq``, ascending, and whether older ones exist."""
    rows = fetch(sql.MESSAGES_BEFORE.all(chat=chat.id, before=before_seq, limit=limit + 1, reader=reader))
    has_more = len(rows) > limit
    rows = rows[:limit]
    rows.reverse()
    return rows, has_more


def message_view(*, chat: Chat, reader: int, seq: object) -> MessageView:
    """One message of a chat the reader is a member of, or MessageNotFound."""
    seq = as_id(seq)
    rows = fetch(sql.MESSAGES_BY_SEQS.all(chat=chat.id, seqs=[seq], reader=reader)) if seq is not None else []
    if not rows:
        raise MessageNotFound()
    return rows[0]


@dataclass(frozen=True)
class ChangesPage:
    results: list[MessageView]
    version: int
    pinned_seqs: list[int]
    has_more: bool


def changes_after(*, chat: Chat, reader: int, after_version: int, limit: int) -> ChangesPage:
    """The current state of each message changed after ``after_version``, in change order.

    One index range of ``(chat_id, version)``: O(limit) at any depth. A page never ends inside
    one version (a delete batch stamps up to 100 messages with one), so the last result's
    version is a safe cursor for the next page; with ``has_more`` false the client holds
    ``version``, read in the same snapshot as the rows.
    """
    with _one_snapshot():
        state = fetch(sql.CHAT_VERSION.one(chat=chat.id))
        rows = fetch(sql.CHANGES.all(chat=chat.id, after=after_version, limit=limit + 1, reader=reader))
        has_more = len(rows) > limit
        if has_more:
            last = rows[limit - 1]
            rows = [row for row in rows[:limit] if row.version != last.version] + fetch(
                sql.CHANGES_OF_VERSION.all(chat=chat.id, version=last.version, reader=reader)
            )
            return ChangesPage(rows, last.version, state.pinned_seqs, True)
    return ChangesPage(rows, state.version, state.pinned_seqs, False)


@contextlib.contextmanager
def _one_snapshot():
    """Several reads that must see one snapshot: a REPEATABLE READ transaction (read-only work).

    Without it a change committing between two reads (a pin between the chat's version and
    pins and the changed messages) yields a page whose ``version`` covers the change but whose
    ``pinned_seqs`` predates it. Inside an outer transaction (tests) it can only join that one.
    """
    if connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


def edit_history(*, chat: Chat, seq: object) -> list[sql.EditEntry]:
    """The earlier texts of a message, oldest first (empty for a never-edited or deleted one)."""
    seq = as_id(seq)
    target = fetch(sql.TARGETS.one(chat=chat.id, seqs=[seq])) if seq is not None else None
    if target is None:
        raise MessageNotFound()
    return fetch(sql.EDIT_HISTORY.all(message=target.id))


def readable_upload(*, user_id: int, upload_id: object):
    """The upload (with its blob) if ``user_id`` may download it, else FileNotFound: its
    uploader, or a reader of a chat where a message that is not deleted carries it. The same
    answer for a missing upload and a foreign one."""
    upload_id = as_id(upload_id)
    if upload_id is None:
        raise FileNotFound()
    carried = Exists(
        MessageAttachment.objects.filter(
            upload_id=OuterRef("pk"),
            message__deleted_at__isnull=True,
            message__chat__in=readable_chats(user_id),
        )
    )
    upload = one(Upload.objects.select_related("blob").filter(Q(owner_id=user_id) | Q(carried), pk=upload_id))
    if upload is None:
        raise FileNotFound()
    return upload


def signed_upload(*, upload_id: object):
    """The upload a valid signed URL names (the signature is the access check), or FileNotFound."""
    upload_id = as_id(upload_id)
    upload = one(Upload.objects.select_related("blob").filter(pk=upload_id)) if upload_id else None
    if upload is None:
        raise FileNotFound()
    return upload
