"""Chats and their members: direct chats, groups, renames, adds and removals."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import events, selectors
from ..exceptions import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
)
from ..models import Chat, Membership, Message
from ..payloads import chat_payload
from .common import (
    User,
    _advance_read_all,
    _append_message,
    _lock_chat,
    _LockedChat,
    _system_message,
    clean_title,
)

# --- chats -------------------------------------------------------------------------


def _active_user(user_id: object) -> User:
    if not selectors._valid_id(user_id):
        raise NotFound("User not found.")
    user = User.objects.filter(id=int(user_id), is_active=True).first()
    if user is None:
        raise NotFound("User not found.")
    return user


def _announce_chat(*, chat_id: int, user_ids: list[int]) -> None:
    """Send ``chat.created`` to each user, with the chat as that user sees it (their read state).

    The chat is loaded once; only the watermark differs between users.
    """
    if not user_ids:
        return
    base = selectors.chat_view(user_id=user_ids[0], chat_id=chat_id)
    reads = dict(Membership.objects.filter(chat_id=chat_id, user_id__in=user_ids).values_list("user_id", "last_read_seq"))
    for uid in user_ids:
        view = dataclasses.replace(base, last_read_seq=reads.get(uid, 0))
        events.publish_on_commit(user_ids=[uid], event={"type": "chat.created", "chat": chat_payload(view)})


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
