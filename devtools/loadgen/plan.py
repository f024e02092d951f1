"""The shape of the load data set: who is in which chat, who sent what, who read how far.

Pure functions of the plan's numbers, no database access, so a rerun plans exactly the
same rows and tests can check the layout without loading anything.

Layout: user ``i`` (0-based) is ``load_<i+1, 7 digits>``. Chats ``0 .. groups-1`` are
groups: member ``j`` of group ``g`` is user ``(g * group_size + j) mod users`` and
member 0 is the owner. The other chats are direct: direct ``d`` pairs user
``d mod users`` with user ``(d mod users + 1 + d // users) mod users``, so no pair repeats.
Chat 0 holds ``big_chat_messages`` messages, the rest are spread evenly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

USERNAME_PREFIX = "load_"
EMAIL_DOMAIN = "load.example.com"
GROUP_TITLE_PREFIX = "Load group "
LOAD_PASSWORD = "messenger-load-1"
# Timestamps are seconds after a fixed epoch: chat c is created at c * CHAT_SPACING_SECONDS,
# its message s one second per seq later.
CHAT_SPACING_SECONDS = 10

TEXTS = (
    "Hello!",
    "How is it going?",
    "See you at the standup.",
    "Sounds good to me.",
    "Can you review my change?",
    "Lunch at noon?",
    "Done, thanks.",
)


def username(index: int) -> str:
    """Username of load user ``index`` (0-based): ``load_0000001`` for index 0."""
    return f"{USERNAME_PREFIX}{index + 1:07d}"


def user_index(name: str) -> int | None:
    """Inverse of :func:`username`; ``None`` for any other name."""
    digits = name[len(USERNAME_PREFIX) :]
    if not name.startswith(USERNAME_PREFIX) or not digits.isdigit() or int(digits) < 1:
        return None
    index = int(digits) - 1
    return index if username(index) == name else None


@dataclass(frozen=True)
class LoadPlan:
    """How many users, chats and messages, and the shape of the chats."""

    users: int
    chats: int
    messages: int
    groups: int
    group_size: int
    big_chat_messages: int

    @classmethod
    def build(
        cls,
        *,
        users: int,
        chats: int,
        messages: int,
        group_size: int = 1000,
        groups: int | None = None,
        big_chat_messages: int | None = None,
    ) -> LoadPlan:
        """Validate the numbers and fill in defaults; raises ``ValueError`` with a readable reason.

        ``group_size`` is capped at ``users``; ``groups`` defaults to enough groups to give
        every user one (capped at ``chats``); ``big_chat_messages`` defaults to a tenth of
        the messages (all of them when there is a single chat).
        """
        if users < 2:
            raise ValueError("--users must be at least 2.")
        if chats < 1:
            raise ValueError("--chats must be at least 1.")
        if messages < 0:
            raise ValueError("--messages must not be negative.")
        if group_size < 2:
            raise ValueError("--group-size must be at least 2.")
        group_size = min(group_size, users)
        if groups is None:
            groups = min(chats, math.ceil(users / group_size))
        if not 0 <= groups <= chats:
            raise ValueError("--groups must lie between 0 and --chats.")
        max_directs = users * ((users - 1) // 2)
        if chats - groups > max_directs:
            raise ValueError(f"{users} users allow at most {max_directs} distinct direct chats.")
        if big_chat_messages is None:
            big_chat_messages = messages if chats == 1 else messages // 10
        if not 0 <= big_chat_messages <= messages:
            raise ValueError("--big-chat-messages must lie between 0 and --messages.")
        if chats == 1 and big_chat_messages != messages:
            raise ValueError("With a single chat, --big-chat-messages must equal --messages.")
        return cls(users, chats, messages, groups, group_size, big_chat_messages)

    @property
    def directs(self) -> int:
        return self.chats - self.groups

    def is_group(self, chat: int) -> bool:
        return chat < self.groups

    def title(self, chat: int) -> str:
        return f"{GROUP_TITLE_PREFIX}{chat + 1}" if self.is_group(chat) else ""

    def group_number(self, title: str) -> int | None:
        """Inverse of :meth:`title` for groups of this plan; ``None`` for any other title."""
        digits = title[len(GROUP_TITLE_PREFIX) :]
        if not title.startswith(GROUP_TITLE_PREFIX) or not digits.isdigit():
            return None
        chat = int(digits) - 1
        return chat if 0 <= chat < self.groups and self.title(chat) == title else None

    def owner_index(self, chat: int) -> int:
        """The creator, first in :meth:`member_indices`: a group's owner, a direct chat's first user."""
        if self.is_group(chat):
            return chat * self.group_size % self.users
        return (chat - self.groups) % self.users

    def member_indices(self, chat: int) -> list[int]:
        """User indices of the chat's members, creator first."""
        if self.is_group(chat):
            start = chat * self.group_size
            return [(start + j) % self.users for j in range(self.group_size)]
        direct = chat - self.groups
        first = direct % self.users
        return [first, (first + 1 + direct // self.users) % self.users]

    def message_count(self, chat: int) -> int:
        """Messages in ``chat``; the counts over all chats sum to ``messages``."""
        if chat == 0:
            return self.big_chat_messages
        rest, others = self.messages - self.big_chat_messages, self.chats - 1
        return rest // others + (1 if chat - 1 < rest % others else 0)

    @staticmethod
    def created_second(chat: int) -> int:
        """When the chat was created (and its members joined), in seconds after the epoch."""
        return chat * CHAT_SPACING_SECONDS


def sender_position(chat: int, seq: int, members: int) -> int:
    """Which member (position in ``member_indices``) sends message ``seq`` of ``chat``."""
    return (seq * 7 + chat + (seq >> 3)) % members


def message_text(chat: int, seq: int) -> str:
    return f"{TEXTS[(seq + chat) % len(TEXTS)]} ({seq})"


def client_id_prefix(chat: int) -> str:
    """Message ``s`` of ``chat`` has client id ``client_id_prefix(chat) + str(s)``."""
    return f"load-{chat + 1}-"


def last_sent_seqs(chat: int, count: int, members: int) -> list[int]:
    """Per member position, the seq of their newest message in the chat (0 if none)."""
    last = [0] * members
    unseen = members
    seq = count
    while seq > 0 and unseen:
        position = sender_position(chat, seq, members)
        if not last[position]:
            last[position] = seq
            unseen -= 1
        seq -= 1
    return last


def watermarks(chat: int, count: int, members: int) -> list[int]:
    """Read watermarks per member position: three in four are caught up, the rest lag a little.

    Never below the member's own newest message (sending marks read), never above ``count``.
    """
    own = last_sent_seqs(chat, count, members)
    marks = []
    for position in range(members):
        mixed = ((chat + 1) * 2654435761 + position * 40503) & 0xFFFFFF
        lag = 0 if mixed % 4 else 1 + (mixed >> 2) % max(1, min(count, 200))
        marks.append(max(own[position], count - min(lag, count)))
    return marks
