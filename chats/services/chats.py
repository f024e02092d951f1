"""Chats and their members: direct chats, groups, renames, adds and removals.

Each change a user makes counts in their ``CHAT_CHANGE`` rate window (``limits``), refused
attempts included; a user's ``who_can_add_me`` setting decides who may put them in a group.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from runtime.plans import run_sync
from runtime.realtime import publish_on_commit

from .. import events, selectors, sql
from ..exceptions import ChatNotFound, Conflict, Forbidden, InvalidInput, NotFound, PrivacyRestricted
from ..models import Chat, Membership
from ..validation import as_id, clean_title
from . import limits
from .common import advance_read_all, append_system_message, lock_chat, lock_chat_as_operator

User = get_user_model()

# --- chats -------------------------------------------------------------------------


def _active_user(user_id: object) -> User:
    user_id = as_id(user_id)
    if user_id is None:
        raise NotFound("User not found.")
    user = User.objects.filter(id=user_id, is_active=True).first()
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
    reads = dict(
        Membership.objects.filter(chat_id=chat_id, user_id__in=user_ids).values_list("user_id", "last_read_seq")
    )
    for uid in user_ids:
        view = dataclasses.replace(base, last_read_seq=reads.get(uid, 0))
        publish_on_commit(user_ids=[uid], event=events.chat_created(view))


@dataclass(frozen=True)
class DirectResult:
    chat: Chat
    created: bool


def open_direct_chat(*, user_id: int, other_user_id: int) -> DirectResult:
    """The one direct chat between two users, created on first use (race-safe by a unique key)."""
    limits.check(limits.CHAT_CHANGE, user_id=user_id)
    if as_id(other_user_id) == user_id:
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
                [
                    Membership(chat=chat, user_id=uid, role=Membership.Role.MEMBER, joined_at=now)
                    for uid in (user_id, other.id)
                ]
            )
            _announce_chat(chat_id=chat.id, user_ids=[user_id, other.id])
    except IntegrityError:
        # Both users opened it at once; the other transaction won.
        return DirectResult(Chat.objects.get(direct_key=key), False)
    return DirectResult(chat, True)


@transaction.atomic
def create_group(*, user_id: int, title: str, member_ids: list[int]) -> Chat:
    """A group owned by its creator, with the given members and a first system message.

    Counts in the creator's CHAT_CHANGE window and, once the input is valid, in their daily
    GROUP_CREATE cap. Raises PrivacyRestricted when a member's ``who_can_add_me`` refuses it.
    """
    title = clean_title(title)
    limits.check(limits.CHAT_CHANGE, user_id=user_id)
    ids = [as_id(m) for m in member_ids] if isinstance(member_ids, list) else [None]
    if None in ids:
        raise InvalidInput({"member_ids": ["Must be a list of user ids."]})
    wanted = sorted(set(ids) - {user_id})
    if len(wanted) + 1 > settings.GROUP_MAX_MEMBERS:
        raise InvalidInput({"member_ids": [f"A group has at most {settings.GROUP_MAX_MEMBERS} members."]})
    found = set(User.objects.filter(id__in=wanted, is_active=True).values_list("id", flat=True))
    missing = [m for m in wanted if m not in found]
    if missing:
        raise InvalidInput({"member_ids": [f"Unknown or inactive users: {missing}."]})
    refusing = selectors.users_refusing_groups_from(actor_id=user_id, user_ids=wanted)
    if refusing:
        raise PrivacyRestricted(f"These users do not allow you to add them to groups: {refusing}.")
    limits.check(limits.GROUP_CREATE, user_id=user_id)
    creator = User.objects.get(id=user_id)
    now = timezone.now()
    chat = Chat.objects.create(
        kind=Chat.Kind.GROUP, title=title, created_by_id=user_id, created_at=now, last_activity_at=now
    )
    Membership.objects.bulk_create(
        [Membership(chat=chat, user_id=user_id, role=Membership.Role.OWNER, joined_at=now)]
        + [Membership(chat=chat, user_id=uid, role=Membership.Role.MEMBER, joined_at=now) for uid in wanted]
    )
    locked = lock_chat(chat_id=chat.id, user_id=user_id)
    all_ids = [user_id, *wanted]
    # No message.new: chat.created brings the chat, this message included, to every member.
    message = run_sync(
        append_system_message(
            chat=locked,
            actor_id=user_id,
            text=f"{creator.username} created the group «{title}»",
            recipients=None,
            read_all_seq=0,
        )
    )
    # Everyone starts having read the creation message, so nobody holds read-by-all back.
    Membership.objects.filter(chat_id=chat.id).update(last_read_seq=message.seq)
    Chat.objects.filter(id=chat.id).update(read_all_seq=message.seq)
    _announce_chat(chat_id=chat.id, user_ids=all_ids)
    chat.refresh_from_db()
    return chat


_MANAGERS = {Membership.Role.OWNER, Membership.Role.ADMIN}


def _require_group_manager(chat: sql.LockedChat) -> None:
    """Groups and channels have titles and members (a channel's members are its staff)."""
    if chat.kind == Chat.Kind.DIRECT:
        raise InvalidInput("Direct chats have no title or member management.")
    if chat.my_role not in _MANAGERS:
        raise Forbidden("Only the owner or admins can do this.")


@transaction.atomic
def rename_group(*, user_id: int, chat_id: int, title: str, as_operator: bool = False) -> Chat:
    """Retitle a group (owner/admin): a system message and ``chat.updated`` to every member.

    ``as_operator``: ``user_id`` is a staff user renaming from the admin, who needs no
    membership and is not rate limited; members see the same message and event.
    """
    title = clean_title(title)
    if as_operator:
        chat = lock_chat_as_operator(chat_id=chat_id)
        if chat.kind != Chat.Kind.GROUP:
            raise InvalidInput("Direct chats have no title or member management.")
    else:
        limits.check(limits.CHAT_CHANGE, user_id=user_id)
        chat = lock_chat(chat_id=chat_id, user_id=user_id)
        _require_group_manager(chat)
    current = Chat.objects.get(id=chat.id)
    if current.title != title:
        Chat.objects.filter(id=chat.id).update(title=title)
        actor = User.objects.only("username").get(id=user_id)
        recipients = selectors.member_ids(chat_id=chat.id)
        run_sync(
            append_system_message(
                chat=chat,
                actor_id=user_id,
                text=f"{actor.username} renamed the group to «{title}»",
                recipients=recipients,
                read_all_seq=chat.read_all_seq,
            )
        )
        publish_on_commit(user_ids=recipients, event=events.chat_updated(chat_id=chat.id, title=title))
        current.refresh_from_db()
    return current


@transaction.atomic
def add_member(*, actor_id: int, chat_id: int, user_id: int, role: str = Membership.Role.MEMBER) -> Membership:
    """Add a user to a group (owner/admin only; only the owner appoints admins), or an admin to
    a channel (its owner only), if their ``who_can_add_me`` allows it (else PrivacyRestricted)."""
    limits.check(limits.CHAT_CHANGE, user_id=actor_id)
    chat = lock_chat(chat_id=chat_id, user_id=actor_id)
    _require_group_manager(chat)
    if role not in (Membership.Role.MEMBER, Membership.Role.ADMIN):
        raise InvalidInput({"role": ["Must be 'member' or 'admin'."]})
    if chat.kind == Chat.Kind.CHANNEL and role != Membership.Role.ADMIN:
        raise InvalidInput({"role": ["A channel's members are its staff: add them as 'admin' (readers subscribe)."]})
    if role == Membership.Role.ADMIN and chat.my_role != Membership.Role.OWNER:
        raise Forbidden("Only the owner can appoint admins.")
    user = _active_user(user_id)
    recipients = selectors.member_ids(chat_id=chat.id)
    if user.id in recipients:
        raise Conflict({"user_id": ["Already a member."]})
    if selectors.users_refusing_groups_from(actor_id=actor_id, user_ids=[user.id]):
        raise PrivacyRestricted()
    if len(recipients) + 1 > settings.GROUP_MAX_MEMBERS:
        raise InvalidInput({"user_id": [f"A group has at most {settings.GROUP_MAX_MEMBERS} members."]})
    actor = User.objects.only("username").get(id=actor_id)
    membership = Membership.objects.create(chat_id=chat.id, user=user, role=role, last_read_seq=chat.last_seq + 1)
    recipients.append(user.id)
    message = run_sync(
        append_system_message(
            chat=chat,
            actor_id=actor_id,
            text=f"{actor.username} added {user.username}",
            recipients=None,
            read_all_seq=chat.read_all_seq,
        )
    )
    # The new member hears chat.created (the chat as it now is) before any message of it.
    _announce_chat(chat_id=chat.id, user_ids=[user.id])
    publish_on_commit(user_ids=recipients, event=events.message_new(message, read_all_seq=chat.read_all_seq))
    publish_on_commit(
        user_ids=[uid for uid in recipients if uid != user.id],
        event=events.member_added(chat_id=chat.id, user_id=user.id, role=role),
    )
    return membership


def remove_member(*, actor_id: int, chat_id: int, user_id: int) -> None:
    """Remove a member (owner/admin) or leave (anyone removes themself).

    An admin removes plain members only; the owner removes anyone. When the owner
    leaves, the longest-standing admin (else member) becomes owner.
    """
    limits.check(limits.CHAT_CHANGE, user_id=actor_id)
    _remove_and_advance(actor_id=actor_id, chat_id=chat_id, user_id=user_id)


def leave_all_groups(*, user_id: int) -> None:
    """The user leaves every group and channel staff they are in, as by ``remove_member`` of their own id (the
    same system message, events and owner succession), without counting in a rate window.

    For a user about to be deleted (``accounts.services.delete_user``): deactivated first, so
    nobody can add them anywhere meanwhile.
    """
    chat_ids = Membership.objects.filter(
        user_id=user_id, chat__kind__in=[Chat.Kind.GROUP, Chat.Kind.CHANNEL]
    ).values_list("chat_id", flat=True)
    for chat_id in list(chat_ids):
        try:
            _remove_and_advance(actor_id=user_id, chat_id=chat_id, user_id=user_id)
        except (ChatNotFound, NotFound):
            continue  # removed by someone else meanwhile


def _remove_and_advance(*, actor_id: int, chat_id: int, user_id: int) -> None:
    chat, remaining = _remove_member(actor_id=actor_id, chat_id=chat_id, user_id=user_id)
    if remaining:
        # The member who left may have held the read-by-everyone watermark back.
        run_sync(advance_read_all(chat_id=chat.id, current=chat.read_all_seq, member_ids=remaining))


@transaction.atomic
def _remove_member(*, actor_id: int, chat_id: int, user_id: int) -> tuple[sql.LockedChat, list[int]]:
    chat = lock_chat(chat_id=chat_id, user_id=actor_id)
    if chat.kind == Chat.Kind.DIRECT:
        raise InvalidInput("Members of a direct chat cannot be removed.")
    target_id = as_id(user_id)
    if target_id is None:
        raise NotFound("Member not found.")
    target = selectors.one(Membership.objects.select_related("user").filter(chat_id=chat.id, user_id=target_id))
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
        publish_on_commit(
            user_ids=remaining,
            event=events.member_updated(chat_id=chat.id, user_id=successor.user_id, role=Membership.Role.OWNER),
        )
    text = f"{actor.username} left" if leaving else f"{actor.username} removed {target.user.username}"
    run_sync(
        append_system_message(
            chat=chat, actor_id=actor_id, text=text, recipients=remaining, read_all_seq=chat.read_all_seq
        )
    )
    publish_on_commit(
        user_ids=[*remaining, target.user_id],
        event=events.member_removed(chat_id=chat.id, user_id=target.user_id),
    )
    return chat, remaining
