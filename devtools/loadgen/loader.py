"""Writes a :class:`~devtools.loadgen.plan.LoadPlan` into the default database, skipping what exists.

Two phases, each resumable: users in batches of ``USER_BATCH`` (one transaction each),
then chats in batches of about ``CHAT_BATCH_MESSAGES`` messages, each batch one
transaction holding its chats' rows, memberships and messages. A crash loses at most
the batch in flight; the next run finds everything else and continues.

Rows are what the services would have left after sends only: message ``version`` = ``seq`` and
the chat's ``version`` = ``last_seq`` (each send bumps the change counter by one), so
``/changes`` and version checks are right on loaded data. The other columns of messages that
change are left to their database defaults -- not edited, not deleted, no reply or forward,
no reactions (``'[]'``), no pins (``'{}'``) -- so nothing here writes Reaction or MessageEdit rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from django.db import connection, transaction

from . import plan as shape
from .plan import LoadPlan
from .sinks import Clock, PostgresSink, Progress, Tick, no_tick

USER_BATCH = 100_000
CHAT_BATCH_MESSAGES = 500_000
CHAT_BATCH_CHATS = 20_000

USER_COLUMNS = (
    "id", "password", "last_login", "is_superuser", "username", "first_name", "last_name",
    "is_staff", "is_active", "date_joined", "email",
)  # fmt: skip
CHAT_COLUMNS = (
    "id", "kind", "title", "created_by_id", "created_at", "last_seq", "read_all_seq", "last_activity_at", "direct_key",
    "version",
)  # fmt: skip
MEMBERSHIP_COLUMNS = ("chat_id", "user_id", "role", "joined_at", "last_read_seq")
MESSAGE_COLUMNS = ("chat_id", "seq", "sender_id", "kind", "text", "client_id", "created_at", "version")
TABLES = ("accounts_user", "chats_chat", "chats_membership", "chats_message")


@dataclass
class LoadReport:
    """What one run created (all zero on a repeat) and how long each phase took, in seconds."""

    users: int = 0
    chats: int = 0
    memberships: int = 0
    messages: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _PlannedChat:
    number: int  # position in the plan
    id: int  # primary key
    member_ids: list[int]  # creator first
    messages: int
    watermarks: list[int]  # per member, same order


class Loader:
    """Loads one plan; :meth:`run` is the entry point and may be called on a partly loaded database."""

    def __init__(self, plan: LoadPlan, *, password_hash: str, progress_stream: IO[str]) -> None:
        self.plan = plan
        self.password_hash = password_hash
        self.stream = progress_stream
        self.sink = PostgresSink()
        self.clock = Clock()
        self.user_ids: list[int] = []  # by user index, filled by the users phase

    def run(self) -> LoadReport:
        report = LoadReport()
        started = phase = time.monotonic()

        def lap(name: str) -> None:
            nonlocal phase
            now = time.monotonic()
            report.seconds[name] = now - phase
            phase = now

        report.users = self._load_users()
        lap("users")
        report.chats, report.memberships, report.messages = self._load_chats()
        lap("chats, memberships, messages")
        lap(self.sink.optimize(TABLES))
        report.seconds["total"] = time.monotonic() - started
        return report

    # --- users ---------------------------------------------------------------------------

    def _existing_users(self) -> dict[int, int]:
        """Load users of this plan already present: user index -> id."""
        found: dict[int, int] = {}
        with connection.cursor() as cursor:
            cursor.execute(
                r"SELECT id, username FROM accounts_user WHERE username LIKE %s ESCAPE '\'",
                [shape.USERNAME_PREFIX.replace("_", "\\_") + "%"],
            )
            for user_id, name in cursor.fetchall():
                index = shape.user_index(name)
                if index is not None and index < self.plan.users:
                    found[index] = user_id
        return found

    def _load_users(self) -> int:
        found = self._existing_users()
        missing = [i for i in range(self.plan.users) if i not in found]
        progress = Progress(self.stream, "users", len(missing))
        joined = self.clock(0)
        for start in range(0, len(missing), USER_BATCH):
            batch = missing[start : start + USER_BATCH]
            with transaction.atomic():
                ids = self.sink.allocate_ids("accounts_user", len(batch))
                rows = (
                    (
                        uid,
                        self.password_hash,
                        None,
                        False,
                        name,
                        "",
                        "",
                        False,
                        True,
                        joined,
                        f"{name}@{shape.EMAIL_DOMAIN}",
                    )
                    for uid, name in zip(ids, map(shape.username, batch), strict=True)
                )
                self.sink.insert("accounts_user", USER_COLUMNS, rows, progress.advance)
            found.update(zip(batch, ids, strict=True))
        progress.close()
        self.user_ids = [found[i] for i in range(self.plan.users)]
        return len(missing)

    # --- chats ---------------------------------------------------------------------------

    def _direct_key(self, chat: int) -> str:
        low, high = sorted(self.user_ids[i] for i in self.plan.member_indices(chat))
        return f"{low}:{high}"

    def _existing_chats(self) -> set[int]:
        """Plan numbers of the chats already in the database: groups by title and owner, directs by key."""
        plan = self.plan
        by_key = {self._direct_key(c): c for c in range(plan.groups, plan.chats)}
        present: set[int] = set()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT title, created_by_id FROM chats_chat WHERE kind = 'group' AND title LIKE %s",
                [shape.GROUP_TITLE_PREFIX + "%"],
            )
            for title, owner_id in cursor.fetchall():
                chat = plan.group_number(title)
                if chat is not None and owner_id == self.user_ids[plan.owner_index(chat)]:
                    present.add(chat)
            cursor.execute("SELECT direct_key FROM chats_chat WHERE direct_key IS NOT NULL")
            present.update(by_key[key] for (key,) in cursor.fetchall() if key in by_key)
        return present

    def _load_chats(self) -> tuple[int, int, int]:
        plan = self.plan
        present = self._existing_chats()
        todo = [c for c in range(plan.chats) if c not in present]
        progress = Progress(self.stream, "messages", sum(plan.message_count(c) for c in todo))
        chats = memberships = messages = 0
        batch: list[int] = []
        batch_messages = 0
        for position, chat in enumerate(todo, start=1):
            batch.append(chat)
            batch_messages += plan.message_count(chat)
            if batch_messages >= CHAT_BATCH_MESSAGES or len(batch) >= CHAT_BATCH_CHATS or position == len(todo):
                written_memberships, written_messages = self._write_chats(batch, progress.advance)
                chats += len(batch)
                memberships += written_memberships
                messages += written_messages
                batch, batch_messages = [], 0
        progress.close()
        return chats, memberships, messages

    @transaction.atomic
    def _write_chats(self, numbers: list[int], tick: Tick) -> tuple[int, int]:
        """Write whole chats -- row, memberships, messages -- in one transaction; returns (memberships, messages)."""
        plan = self.plan
        chats = []
        for number, chat_id in zip(numbers, self.sink.allocate_ids("chats_chat", len(numbers)), strict=True):
            member_ids = [self.user_ids[i] for i in plan.member_indices(number)]
            count = plan.message_count(number)
            marks = shape.watermarks(number, count, len(member_ids))
            chats.append(_PlannedChat(number, chat_id, member_ids, count, marks))
        self.sink.insert("chats_chat", CHAT_COLUMNS, map(self._chat_row, chats), no_tick)
        memberships = self.sink.insert("chats_membership", MEMBERSHIP_COLUMNS, self._membership_rows(chats), no_tick)
        messages = self.sink.insert("chats_message", MESSAGE_COLUMNS, self._message_rows(chats), tick)
        return memberships, messages

    def _chat_row(self, chat: _PlannedChat) -> tuple:
        created = self.plan.created_second(chat.number)
        if self.plan.is_group(chat.number):
            kind, key = "group", None
        else:
            low, high = sorted(chat.member_ids)
            kind, key = "direct", f"{low}:{high}"
        return (
            chat.id, kind, self.plan.title(chat.number), chat.member_ids[0], self.clock(created),
            chat.messages, min(chat.watermarks), self.clock(created + chat.messages), key,
            chat.messages,  # version: one per send
        )  # fmt: skip

    def _membership_rows(self, chats: list[_PlannedChat]) -> Iterator[tuple]:
        for chat in chats:
            joined = self.clock(self.plan.created_second(chat.number))
            group = self.plan.is_group(chat.number)
            for position, (user_id, mark) in enumerate(zip(chat.member_ids, chat.watermarks, strict=True)):
                role = "owner" if group and position == 0 else "member"
                yield (chat.id, user_id, role, joined, mark)

    def _message_rows(self, chats: list[_PlannedChat]) -> Iterator[tuple]:
        clock, sender_position, text = self.clock, shape.sender_position, shape.message_text
        for chat in chats:
            number, chat_id, member_ids, size = chat.number, chat.id, chat.member_ids, len(chat.member_ids)
            created = self.plan.created_second(number)
            prefix = shape.client_id_prefix(number)
            for seq in range(1, chat.messages + 1):
                sender = member_ids[sender_position(number, seq, size)]
                # version = seq: the chat's change counter after this message's send.
                yield (chat_id, seq, sender, "text", text(number, seq), prefix + str(seq), clock(created + seq), seq)
