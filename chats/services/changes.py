"""Messages that change: edit, delete for everyone, forward, reactions, pins. One implementation each.

Each is a plan (``runtime.plans``), run by REST synchronously and by the socket from the event
loop, like ``send_message``. Its writes run in one transaction (an ``Atomic`` step) that first
takes the chat's row lock on behalf of a member (``LOCK_CHAT``), then reads the messages it
names as the lock protects them, decides, and writes -- bumping ``Chat.version`` by exactly one
and stamping the changed messages with it (``chats/sql.py``). Every writer of a chat's messages
takes that lock first, so versions are gap-free and in commit order, like ``seq``, and a
concurrent delete and edit are serialized: the later one sees the tombstone.

A change that changes nothing -- the same text, a reaction already there or already gone, a
pin already pinned, a batch of tombstones -- bumps nothing and emits nothing; its result says
``changed=False``. Events go out after commit, to every socket of every member except
``skip_channel`` (the socket that asked, which gets its own reply). Message objects in events
are built for no reader in particular: their ``reactions[].me`` is false.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from attachments.services import remove_blobs
from runtime.plans import AfterCommit, Atomic, Emit, Plan, use_case

from .. import events, sql
from ..exceptions import (
    ChatNotFound,
    Conflict,
    EditWindowExpired,
    Forbidden,
    Gone,
    InvalidInput,
    MessageNotFound,
    TooManyPins,
    TooManyReactions,
)
from ..models import Chat, Membership, Message
from ..payloads import message_payload, reactions_payload
from ..sql import MessageView
from ..validation import (
    chat_id_or_404,
    clean_client_ids,
    clean_emoji,
    clean_message_seq,
    clean_seqs,
    clean_text,
)
from . import limits
from .common import advance_read_all, append_system_message

PINS_MAX = 100
REACTIONS_PER_USER = 3
REACTIONS_PER_MESSAGE = 20
PIN_EXCERPT = 50
MANAGERS = (Membership.Role.OWNER, Membership.Role.ADMIN)
# Chats whose owner and admins manage every message (delete others', pin); in a direct chat both
# members are equal.
MANAGED_KINDS = (Chat.Kind.GROUP, Chat.Kind.CHANNEL)


# --- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EditResult:
    message: MessageView  # as the editor sees it
    changed: bool
    read_all_seq: int

    def payload(self) -> dict:
        return message_payload(self.message, read_all_seq=self.read_all_seq)


@dataclass(frozen=True)
class DeleteResult:
    chat_id: int
    seqs: list[int]  # those that became tombstones now
    version: int
    changed: bool
    freed_blobs: tuple[int, ...] = ()  # stored files nothing references any more

    def payload(self) -> dict:
        return {"chat_id": self.chat_id, "seqs": self.seqs, "version": self.version, "changed": self.changed}


@dataclass(frozen=True)
class ReactionResult:
    chat_id: int
    seq: int
    reactions: list  # [[emoji, count], ...]
    mine: list[str]  # the caller's emoji on the message now
    user_id: int
    emoji: str
    added: bool
    version: int
    changed: bool

    def payload(self) -> dict:
        """As the caller sees it: ``me`` is theirs."""
        return {
            "chat_id": self.chat_id,
            "seq": self.seq,
            "reactions": reactions_payload(self.reactions, self.mine),
            "user_id": self.user_id,
            "emoji": self.emoji,
            "added": self.added,
            "version": self.version,
            "changed": self.changed,
        }


@dataclass(frozen=True)
class PinResult:
    chat_id: int
    pinned_seqs: list[int]
    version: int
    changed: bool

    def payload(self) -> dict:
        return {
            "chat_id": self.chat_id,
            "pinned_seqs": self.pinned_seqs,
            "version": self.version,
            "changed": self.changed,
        }


@dataclass(frozen=True)
class ForwardResult:
    chat_id: int
    messages: list[MessageView]  # in the order of the seqs asked for, as the caller sees them
    duplicate: bool  # every client_id was used before: nothing was stored
    read_all_seq: int

    def payload(self) -> dict:
        return {
            "chat_id": self.chat_id,
            "messages": [message_payload(m, read_all_seq=self.read_all_seq) for m in self.messages],
            "duplicate": self.duplicate,
        }


# --- shared steps ----------------------------------------------------------------------------


def _count_change(user_id: int) -> Plan[None]:
    wait = yield from limits.over(limits.MESSAGE_CHANGE, user_id=user_id)
    if wait is not None:
        raise limits.MESSAGE_CHANGE.refusal(wait)


def _lock(chat_id: int, user_id: int, *, to_react: bool = False) -> Plan[sql.LockedChat]:
    """The chat's row lock on behalf of a member (``to_react``: or of a channel's subscriber).
    Someone who may read the chat but not do this (a public channel's reader, a subscriber
    editing) is Forbidden; anyone else ChatNotFound."""
    statement = sql.LOCK_CHAT_TO_REACT if to_react else sql.LOCK_CHAT
    chat = yield statement.one(chat=chat_id, user=user_id)
    if chat is None:
        if (yield sql.CAN_READ.one(chat=chat_id, user=user_id)).value:
            raise Forbidden(
                "Subscribe to the channel to react." if to_react else "Only the channel's owner and admins can do this."
            )
        raise ChatNotFound()
    return chat


def _targets(chat_id: int, seqs: list[int]) -> Plan[list[sql.Target]]:
    """The messages ``seqs`` names, in that order, or MessageNotFound if one is missing."""
    rows = yield sql.TARGETS.all(chat=chat_id, seqs=seqs)
    by_seq = {row.seq: row for row in rows}
    if len(by_seq) != len(seqs):
        raise MessageNotFound()
    return [by_seq[seq] for seq in seqs]


def _members(chat_id: int) -> Plan[list[int]]:
    return (yield sql.MEMBER_IDS.one(chat=chat_id)).user_ids


def _for_everyone(view: MessageView) -> MessageView:
    """The view an event carries: no reader's own reactions."""
    return view._replace(my_reactions=[])


# --- edit ----------------------------------------------------------------------------------


@use_case
def edit_message(
    *, user_id: int, chat_id: int, seq: int, text: str, skip_channel: str | None = None
) -> Plan[EditResult]:
    """Replace the text of the caller's own text message; the old text goes to the edit history.

    Only within EDIT_WINDOW_HOURS of sending (0: always), not for forwarded or system messages.
    The same text changes nothing. ``message.edited`` to every other socket of every member.
    Raises ChatNotFound, MessageNotFound, Gone (deleted), Forbidden, EditWindowExpired,
    InvalidInput, RateLimited.
    """
    chat_id = chat_id_or_404(chat_id)
    seq = clean_message_seq(seq)
    text = clean_text(text)
    yield from _count_change(user_id)
    return (yield Atomic(_edit(user_id=user_id, chat_id=chat_id, seq=seq, text=text, skip_channel=skip_channel)))


def _edit(*, user_id: int, chat_id: int, seq: int, text: str, skip_channel: str | None) -> Plan[EditResult]:
    chat = yield from _lock(chat_id, user_id)
    (target,) = yield from _targets(chat.id, [seq])
    if target.deleted:
        raise Gone()
    if target.kind != Message.Kind.TEXT or target.sender_id != user_id:
        raise Forbidden("Only the sender can edit a message.")
    if target.forwarded:
        raise Forbidden("A forwarded message cannot be edited.")
    hours = settings.EDIT_WINDOW_HOURS
    now = timezone.now()
    if hours > 0 and now - target.created_at > dt.timedelta(hours=hours):
        raise EditWindowExpired(f"Messages can be edited for {hours} hours after sending.")
    changed = text != target.text
    if changed:
        yield sql.EDIT.one(chat=chat.id, message=target.id, old_text=target.text, text=text, now=now)
    (view,) = yield sql.MESSAGES_BY_SEQS.all(chat=chat.id, seqs=[seq], reader=user_id)
    if changed:
        members = yield from _members(chat.id)
        yield Emit(
            members,
            events.message_edited(_for_everyone(view), read_all_seq=chat.read_all_seq),
            skip_channel,
            events.watchers(chat.id),
        )
    return EditResult(message=view, changed=changed, read_all_seq=chat.read_all_seq)


# --- delete --------------------------------------------------------------------------------


@use_case
def delete_messages(
    *, user_id: int, chat_id: int, seqs: list[int], skip_channel: str | None = None
) -> Plan[DeleteResult]:
    """Delete messages for everyone: each becomes a tombstone (text, reactions and edit history
    erased, out of the pins; ``seq`` stays). All or nothing: the caller's own messages, or any
    non-system message for a group's owner or admin. Tombstones are skipped; one version for the
    batch; ``message.deleted`` to every other socket of every member.
    Raises ChatNotFound, MessageNotFound, Forbidden, InvalidInput, RateLimited.
    """
    chat_id = chat_id_or_404(chat_id)
    seqs = clean_seqs(seqs)
    yield from _count_change(user_id)
    result = yield Atomic(_delete(user_id=user_id, chat_id=chat_id, seqs=seqs, skip_channel=skip_channel))
    if result.freed_blobs:
        yield AfterCommit(remove_blobs, (list(result.freed_blobs),))
    return result


def _delete(*, user_id: int, chat_id: int, seqs: list[int], skip_channel: str | None) -> Plan[DeleteResult]:
    chat = yield from _lock(chat_id, user_id)
    targets = yield from _targets(chat.id, seqs)
    manager = chat.kind in MANAGED_KINDS and chat.my_role in MANAGERS
    for target in targets:
        if target.kind == Message.Kind.SYSTEM:
            raise Forbidden(f"Message {target.seq} is a system message; those cannot be deleted.")
        if target.sender_id != user_id and not manager:
            raise Forbidden(
                f"Message {target.seq} is not yours; only the owner or admins of a group or channel delete others'."
            )
    live = sorted((t for t in targets if not t.deleted), key=lambda t: t.seq)
    if not live:
        return DeleteResult(chat.id, [], chat.version, changed=False)
    gone = [t.seq for t in live]
    row = yield sql.DELETE.one(chat=chat.id, ids=[t.id for t in live], seqs=gone, now=timezone.now())
    freed: tuple[int, ...] = ()
    if row.released_uploads:  # their files: uploads no other message carries go, with their blobs
        released = yield sql.RELEASE_UPLOADS.all(uploads=row.released_uploads)
        freed = tuple(blob.blob_id for blob in released if blob.refs == 0)
    members = yield from _members(chat.id)
    yield Emit(
        members,
        events.message_deleted(chat_id=chat.id, seqs=gone, version=row.version),
        skip_channel,
        events.watchers(chat.id),
    )
    return DeleteResult(chat.id, gone, row.version, changed=True, freed_blobs=freed)


# --- reactions -------------------------------------------------------------------------------


@use_case
def set_reaction(
    *, user_id: int, chat_id: int, seq: int, emoji: str, add: bool, skip_channel: str | None = None
) -> Plan[ReactionResult]:
    """Add or remove the caller's ``emoji`` on a message. Idempotent: adding what is there or
    removing what is not changes nothing. At most REACTIONS_PER_USER distinct emoji per person
    and REACTIONS_PER_MESSAGE per message. Counts are recounted from the unique
    ``(message, user, emoji)`` rows under the chat lock, so they are exact under any concurrency.
    ``message.reactions`` to every other socket of every member.
    Raises ChatNotFound, MessageNotFound, Gone, Forbidden (system message), TooManyReactions,
    InvalidInput (not exactly one emoji), RateLimited.
    """
    chat_id = chat_id_or_404(chat_id)
    seq = clean_message_seq(seq)
    emoji = clean_emoji(emoji)
    yield from _count_change(user_id)
    return (
        yield Atomic(_react(user_id=user_id, chat_id=chat_id, seq=seq, emoji=emoji, add=add, skip_channel=skip_channel))
    )


def _react(
    *, user_id: int, chat_id: int, seq: int, emoji: str, add: bool, skip_channel: str | None
) -> Plan[ReactionResult]:
    chat = yield from _lock(chat_id, user_id, to_react=True)
    (target,) = yield from _targets(chat.id, [seq])
    if target.deleted:
        raise Gone()
    if target.kind == Message.Kind.SYSTEM:
        raise Forbidden("System messages take no reactions.")
    mine = (yield sql.MY_REACTIONS.one(message=target.id, user=user_id)).emoji

    def unchanged() -> ReactionResult:
        return ReactionResult(chat.id, seq, target.reactions, mine, user_id, emoji, add, chat.version, changed=False)

    if add:
        if emoji in mine:
            return unchanged()
        if len(mine) >= REACTIONS_PER_USER:
            raise TooManyReactions(f"At most {REACTIONS_PER_USER} different reactions per person on a message.")
        present = {item[0] for item in target.reactions}
        if emoji not in present and len(present) >= REACTIONS_PER_MESSAGE:
            raise TooManyReactions(f"At most {REACTIONS_PER_MESSAGE} different reactions on a message.")
        row = yield sql.REACTION_ADD.one(chat=chat.id, message=target.id, user=user_id, emoji=emoji, now=timezone.now())
    else:
        if emoji not in mine:
            return unchanged()
        row = yield sql.REACTION_REMOVE.one(chat=chat.id, message=target.id, user=user_id, emoji=emoji)
    if row is None:  # the unique row said otherwise (cannot happen under the lock; nothing changed)
        return unchanged()
    mine = [*mine, emoji] if add else [e for e in mine if e != emoji]
    members = yield from _members(chat.id)
    event = events.message_reactions(
        chat_id=chat.id,
        seq=seq,
        reactions=row.reactions,
        user_id=user_id,
        emoji=emoji,
        added=add,
        version=row.version,
    )
    yield Emit(members, event, skip_channel, events.watchers(chat.id))
    return ReactionResult(chat.id, seq, row.reactions, mine, user_id, emoji, add, row.version, changed=True)


# --- pins ----------------------------------------------------------------------------------


@use_case
def set_pin(*, user_id: int, chat_id: int, seq: int, pinned: bool, skip_channel: str | None = None) -> Plan[PinResult]:
    """Pin (newest first) or unpin a message. In a group only its owner and admins; in a direct
    chat both members. Pinning also appends a system message ("alice pinned «…»"); unpinning
    does not. ``chat.pins`` to every other socket of every member, the system message's
    ``message.new`` to all of them.
    Raises ChatNotFound, MessageNotFound, Gone, Forbidden, TooManyPins, RateLimited.
    """
    chat_id = chat_id_or_404(chat_id)
    seq = clean_message_seq(seq)
    if not isinstance(pinned, bool):
        raise InvalidInput({"pinned": ["Must be true or false."]})
    yield from _count_change(user_id)
    result, chat = yield Atomic(
        _pin(user_id=user_id, chat_id=chat_id, seq=seq, pinned=pinned, skip_channel=skip_channel)
    )
    if result.changed and pinned:
        # The system message moved the pinner's watermark: read-by-everyone may follow.
        yield from advance_read_all(chat_id=chat.id, current=chat.read_all_seq)
    return result


def _pin(
    *, user_id: int, chat_id: int, seq: int, pinned: bool, skip_channel: str | None
) -> Plan[tuple[PinResult, sql.LockedChat]]:
    chat = yield from _lock(chat_id, user_id)
    if chat.kind in MANAGED_KINDS and chat.my_role not in MANAGERS:
        raise Forbidden("Only the owner or an admin can pin messages here.")
    (target,) = yield from _targets(chat.id, [seq])
    if target.deleted:
        raise Gone()
    if target.kind == Message.Kind.SYSTEM:
        raise Forbidden("System messages cannot be pinned.")
    if (seq in chat.pinned_seqs) == pinned:
        return PinResult(chat.id, list(chat.pinned_seqs), chat.version, changed=False), chat
    if pinned and len(chat.pinned_seqs) >= PINS_MAX:
        raise TooManyPins(f"At most {PINS_MAX} pinned messages per chat; unpin one first.")
    row = yield sql.PIN.one(chat=chat.id, message=target.id, seq=seq, pinned=pinned)
    members = yield from _members(chat.id)
    yield Emit(
        members,
        events.chat_pins(chat_id=chat.id, pinned_seqs=row.pinned_seqs, version=row.version),
        skip_channel,
        events.watchers(chat.id),
    )
    result = PinResult(chat.id, row.pinned_seqs, row.version, changed=True)
    if pinned:
        actor = yield sql.USERNAME.one(user=user_id)
        excerpt = target.text if len(target.text) <= PIN_EXCERPT else target.text[:PIN_EXCERPT].rstrip() + "…"
        yield from append_system_message(
            chat=chat,
            actor_id=user_id,
            text=f"{actor.username} pinned «{excerpt}»",
            recipients=members,
            read_all_seq=chat.read_all_seq,
        )
    return result, chat


# --- forward -------------------------------------------------------------------------------


@use_case
def forward_messages(
    *,
    user_id: int,
    from_chat_id: int,
    seqs: list[int],
    to_chat_id: int,
    client_ids: list[str],
    skip_channel: str | None = None,
) -> Plan[ForwardResult]:
    """Copy messages of one chat into another as new messages of the caller (new seqs, text
    copied, ``forwarded_from`` naming the first origin), one ``client_id`` each: a retried
    forward stores nothing twice. The caller must be a member of both chats. Counts
    ``len(seqs)`` sends in the send rate limit. ``message.new`` per stored message to every
    other socket of every member of the target.
    Raises ChatNotFound, MessageNotFound, Gone (a deleted source), InvalidInput (a system
    message, bad fields), Conflict (a client_id used in another chat), Forbidden (a direct chat
    with a deactivated user), RateLimited.
    """
    from_chat_id = chat_id_or_404(from_chat_id)
    to_chat_id = chat_id_or_404(to_chat_id)
    seqs = clean_seqs(seqs)
    client_ids = clean_client_ids(client_ids, count=len(seqs))
    wait = yield from limits.over(limits.SEND, user_id=user_id, amount=len(seqs))
    params = {
        "user_id": user_id,
        "from_chat_id": from_chat_id,
        "seqs": seqs,
        "to_chat_id": to_chat_id,
        "client_ids": client_ids,
        "skip_channel": skip_channel,
        "over_limit": wait is not None,
    }
    try:
        result = yield Atomic(_forward(**params))
    except IntegrityError:
        # A parallel forward with these keys committed while this one waited for the chat lock:
        # this transaction rolled back whole. Once more: now it finds the originals.
        result = yield Atomic(_forward(**params))
    if result is None:
        raise limits.SEND.refusal(wait)
    if not result.duplicate:
        yield from advance_read_all(chat_id=to_chat_id, current=result.read_all_seq)
    return result


def _forward(
    *,
    user_id: int,
    from_chat_id: int,
    seqs: list[int],
    to_chat_id: int,
    client_ids: list[str],
    skip_channel: str | None,
    over_limit: bool,
) -> Plan[ForwardResult | None]:
    chat = yield from _lock(to_chat_id, user_id)
    if not (yield sql.CAN_READ.one(chat=from_chat_id, user=user_id)).value:
        raise ChatNotFound()
    uses = yield sql.KEY_USES.all(user=user_id, keys=client_ids)
    if any(use.chat_id != chat.id for use in uses):
        raise Conflict({"client_ids": ["Already used for a message in another chat."]})
    used = {use.client_id: use for use in uses}
    if len(used) == len(client_ids):  # a repeat: the messages as stored, in the order asked
        views = yield sql.MESSAGES_BY_SEQS.all(chat=chat.id, seqs=[u.seq for u in uses], reader=user_id)
        by_seq = {view.seq: view for view in views}
        return ForwardResult(chat.id, [by_seq[used[key].seq] for key in client_ids], True, chat.read_all_seq)
    if over_limit:
        return None
    if (yield sql.PEER_INACTIVE.one(chat=chat.id)).value:
        raise Forbidden("The other user's account is deactivated.")
    sources = yield from _targets(from_chat_id, seqs)
    for source in sources:
        if source.deleted:
            raise Gone(f"Message {source.seq} was deleted.")
        if source.kind == Message.Kind.SYSTEM:
            raise InvalidInput({"seqs": [f"Message {source.seq} is a system message; those cannot be forwarded."]})
    new = [(key, source) for key, source in zip(client_ids, sources, strict=True) if key not in used]
    stored = yield sql.FORWARD.all(
        chat=chat.id,
        user=user_id,
        count=len(new),
        client_ids=[key for key, _ in new],
        texts=[s.text for _, s in new],
        origin_chats=[s.origin_chat_id for _, s in new],
        origin_seqs=[s.origin_seq for _, s in new],
        origin_senders=[s.origin_sender_id for _, s in new],
        origin_names=[s.origin_sender_username for _, s in new],
        origin_times=[s.origin_created_at for _, s in new],
        attachments=[json.dumps(s.attachments) for _, s in new],
    )
    new_seqs = {row.seq for row in stored}
    all_seqs = [used[key].seq if key in used else None for key in client_ids]
    fresh = iter(sorted(new_seqs))
    all_seqs = [seq if seq is not None else next(fresh) for seq in all_seqs]
    views = yield sql.MESSAGES_BY_SEQS.all(chat=chat.id, seqs=all_seqs, reader=user_id)
    by_seq = {view.seq: view for view in views}

    # Whether a reader sees the origin's chat and seq depends on their membership of it.
    splits: dict[int | None, sql.MembersSplit] = {}
    for seq in sorted(new_seqs):
        view = by_seq[seq]
        origin = view.forwarded_from.chat_id if view.forwarded_from is not None else None
        if origin not in splits:
            if origin is None:
                splits[origin] = sql.MembersSplit(None, (yield from _members(chat.id)))
            else:
                splits[origin] = yield sql.MEMBERS_SPLIT.one(chat=chat.id, other=origin)
        split = splits[origin]
        for readers, visible in ((split.also, True), (split.not_also, False)):
            if readers:
                shown = _for_everyone(view)
                if shown.forwarded_from is not None:
                    shown = shown._replace(forwarded_from=shown.forwarded_from._replace(visible=visible))
                yield Emit(readers, events.message_new(shown, read_all_seq=chat.read_all_seq), skip_channel)
        # A channel's watchers, once, without the origin (what they may see of it, REST tells).
        hidden = _for_everyone(view)
        if hidden.forwarded_from is not None:
            hidden = hidden._replace(forwarded_from=hidden.forwarded_from._replace(visible=False))
        yield Emit(
            [], events.message_new(hidden, read_all_seq=chat.read_all_seq), skip_channel, events.watchers(chat.id)
        )
    return ForwardResult(chat.id, [by_seq[seq] for seq in all_seqs], False, chat.read_all_seq)
