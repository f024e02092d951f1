"""Bench data, built through Django inside a subprocess: ``python -m bench.setup_django``.

``prepare`` (on the bench database): migrate, create users ``bench000001..`` and the
chats the scenarios use (1:1 pairs via ``services.open_direct_chat``, groups via
``services.create_group``), give the read-ack group and the history chat their messages
with one ``INSERT ... SELECT generate_series`` each (once; later runs reuse them; each takes
the next version of the chat's change counter, as a send would), and
mint an access token per user; for S7 the reaction groups (``ensure_reaction_groups``), for S8
the history chat's changes, made once through the services (``ensure_history_changes``).
``history`` (on any database, e.g. ``messenger_load``):
find the chat with the most messages and mint a token for one of its members.
Both print one JSON object on stdout. Idempotent: run it twice and nothing doubles.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messenger.settings")

import django

django.setup()

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from chats import services
from chats.models import Chat, Membership, Message, Reaction

User = get_user_model()
PREFIX = "bench"


def log(text: str) -> None:
    print(f"[setup] {text}", file=sys.stderr, flush=True)


def ensure_users(n: int) -> list[int]:
    names = [f"{PREFIX}{i:06d}" for i in range(1, n + 1)]
    have = set(User.objects.filter(username__in=names).values_list("username", flat=True))
    missing = [name for name in names if name not in have]
    if missing:
        log(f"creating {len(missing)} users")
        User.objects.bulk_create(
            [
                User(
                    username=name,
                    email=f"{name}@bench.invalid",
                    password="!bench-unusable",
                )
                for name in missing
            ],
            batch_size=2000,
        )
    by_name = dict(User.objects.filter(username__in=names).values_list("username", "id"))
    return [by_name[name] for name in names]


def ensure_group(*, title: str, user_ids: list[int]) -> Chat:
    chat = Chat.objects.filter(kind=Chat.Kind.GROUP, title=title, created_by_id=user_ids[0]).first()
    if chat is None:
        log(f"creating group {title!r} of {len(user_ids)} members")
        chat = services.create_group(user_id=user_ids[0], title=title, member_ids=user_ids[1:])
    return chat


def fill_messages(*, chat: Chat, sender_id: int, upto_seq: int, analyze: bool = True, quiet: bool = False) -> int:
    """Give ``chat`` messages up to ``upto_seq`` (one INSERT ... SELECT), once; ``analyze``: then
    ANALYZE chats_message (after a big fill)."""
    chat.refresh_from_db()
    if chat.last_seq >= upto_seq:
        return chat.last_seq
    start = chat.last_seq + 1
    if not quiet:
        log(f"inserting messages {start}..{upto_seq} into chat {chat.id}")
    t0 = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cur:
        # Under the chat's row lock, as a send: each message takes the next version (the chat's
        # change counter), so /changes and version checks hold on bench data too. The other
        # columns of messages that change keep their defaults (no reactions: '[]').
        cur.execute("SELECT last_seq, version FROM chats_chat WHERE id = %s FOR UPDATE", [chat.id])
        last_seq, version = cur.fetchone()
        start, offset = last_seq + 1, version - last_seq
        cur.execute(
            """
            INSERT INTO chats_message (chat_id, seq, sender_id, kind, text, client_id, created_at, version)
            SELECT %(chat)s, g, %(sender)s, 'text', 'bench history message number ' || g, NULL,
                   now() - make_interval(secs => %(upto)s - g), %(offset)s + g
            FROM generate_series(%(start)s, %(upto)s) AS g
            """,
            {"chat": chat.id, "sender": sender_id, "start": start, "upto": upto_seq, "offset": offset},
        )
        cur.execute(
            "UPDATE chats_chat SET last_seq = %s, version = %s, last_activity_at = now() WHERE id = %s",
            [upto_seq, offset + upto_seq, chat.id],
        )
        cur.execute(
            "UPDATE chats_membership SET last_read_seq = %s WHERE chat_id = %s",
            [upto_seq, chat.id],
        )
        cur.execute("UPDATE chats_chat SET read_all_seq = %s WHERE id = %s", [upto_seq, chat.id])
    if analyze:
        with connection.cursor() as cur:
            cur.execute("ANALYZE chats_message")
    if not quiet:
        log(f"inserted in {time.perf_counter() - t0:.1f} s")
    return upto_seq


def ensure_reaction_groups(*, user_ids: list[int], chats: int, members: int, messages: int) -> list[dict]:
    """S7: ``chats`` groups of ``members`` consecutive ``user_ids`` (through ``services.create_group``),
    each with ``messages`` text messages after its creation message (seq 2..messages + 1), once."""
    groups = [user_ids[k * members : (k + 1) * members] for k in range(chats)]
    if len(groups[-1]) < members:
        raise SystemExit(f"S7 needs {chats * members} users, has {len(user_ids)}")
    titles = [f"{PREFIX}-react-{members}-{group[0]}" for group in groups]
    existing = {
        (chat.title, chat.created_by_id): chat
        for chat in Chat.objects.filter(
            kind=Chat.Kind.GROUP, title__in=titles, created_by_id__in=[g[0] for g in groups]
        )
    }
    if len(existing) < chats:
        log(f"creating {chats - len(existing)} groups of {members} with {messages} messages each")
    out = []
    for title, group in zip(titles, groups, strict=True):
        chat = existing.get((title, group[0]))
        if chat is None:
            chat = services.create_group(user_id=group[0], title=title, member_ids=group[1:])
        if chat.last_seq < messages + 1:
            fill_messages(chat=chat, sender_id=group[0], upto_seq=messages + 1, analyze=False, quiet=True)
        out.append({"chat_id": chat.id, "members": group})
    return out


def history_change_plan(*, reactions: int, edits: int, stride: int) -> tuple[list[int], list[tuple[str, int]]]:
    """S8's changes, in order: a reaction on every ``stride``-th message from seq 2, and after
    every ``reactions // edits`` of them an edit of the first of those (changed twice: its reaction,
    then its text). Returns (the reacted seqs, [("react" | "edit", seq), ...])."""
    if reactions % edits:
        raise ValueError("reactions must be a multiple of edits")
    every = reactions // edits
    seqs = [2 + k * stride for k in range(reactions)]
    steps: list[tuple[str, int]] = []
    for k, seq in enumerate(seqs):
        steps.append(("react", seq))
        if (k + 1) % every == 0:
            steps.append(("edit", seqs[k + 1 - every]))
    return seqs, steps


S8_EMOJI = "👍"


def ensure_history_changes(
    *,
    chat: Chat,
    reactor_id: int,
    editor_id: int,
    reactions: int,
    edits: int,
    stride: int = 100,
    batch_groups: int = 100,
) -> dict:
    """S8: make the history chat's ``reactions + edits`` changes once, through the services
    (``set_reaction`` by ``reactor_id``, ``edit_message`` by the messages' sender ``editor_id``),
    each bumping the chat's version by one and stamping its message, as over the socket.

    They are committed ``batch_groups`` groups (``reactions // edits`` reactions and their edit)
    at a time -- one transaction for all of them would make every update of the chat row walk
    the chain of its earlier versions in that transaction -- so an interrupted setup leaves a
    prefix of whole batches, and the next run goes on from there (the reactor's reaction count
    says how far). Returns the version before them, the chat's version, the changed seqs and the
    edited ones; ``error`` when the chat's changes are not exactly these."""
    seqs, steps = history_change_plan(reactions=reactions, edits=edits, stride=stride)
    edited = [seq for kind, seq in steps if kind == "edit"]
    every = reactions // edits
    chat.refresh_from_db()
    if chat.last_seq < seqs[-1]:
        return {"error": f"history chat {chat.id} has {chat.last_seq} messages, needs {seqs[-1]}"}
    have = Reaction.objects.filter(message__chat_id=chat.id, user_id=reactor_id, emoji=S8_EMOJI).count()
    if have % every or have > reactions:
        return {"error": f"history chat {chat.id} has {have} {S8_EMOJI} reactions of user {reactor_id}: not a batch"}
    done = have // every * (every + 1)
    if done < len(steps):
        log(f"making {len(steps) - done} of {len(steps)} changes to chat {chat.id} through the services")
        t0 = time.perf_counter()
        size = batch_groups * (every + 1)
        with override_settings(EDIT_WINDOW_HOURS=0, MESSAGE_CHANGE_RATE_LIMIT=0):
            for start in range(done, len(steps), size):
                with transaction.atomic():
                    for kind, seq in steps[start : start + size]:
                        if kind == "react":
                            services.set_reaction(
                                user_id=reactor_id, chat_id=chat.id, seq=seq, emoji=S8_EMOJI, add=True
                            )
                        else:
                            services.edit_message(
                                user_id=editor_id,
                                chat_id=chat.id,
                                seq=seq,
                                text=f"bench history message number {seq}, edited",
                            )
        log(f"changed in {time.perf_counter() - t0:.1f} s")
        chat.refresh_from_db()
    before = chat.version - len(steps)
    changed = list(
        Message.objects.filter(chat_id=chat.id, version__gt=before).order_by("seq").values_list("seq", flat=True)
    )
    out = {
        "chat_id": chat.id,
        "user_id": reactor_id,
        "version_before": before,
        "version": chat.version,
        "seqs": seqs,
        "edited_seqs": sorted(edited),
        "database": connection.settings_dict["NAME"],
    }
    if changed != seqs:
        out["error"] = (
            f"chat {chat.id}: {len(changed)} messages changed after version {before}, expected the {len(seqs)} "
            "S8 made (the chat changed since?)"
        )
    return out


def token(user_id: int) -> str:
    return tokens_for([user_id])[str(user_id)]


def tokens_for(user_ids: list[int]) -> dict[str, str]:
    """Real access tokens (``AccessToken.for_user``), signed with the server's SECRET_KEY."""
    users = User.objects.in_bulk(user_ids)
    return {str(uid): str(AccessToken.for_user(users[uid])) for uid in user_ids}


def prepare(spec: dict) -> dict:
    t0 = time.perf_counter()
    call_command("migrate", interactive=False, verbosity=0)
    users = ensure_users(spec["users"])
    pairs = []
    for k in range(spec["pairs"]):
        a, b = users[2 * k], users[2 * k + 1]
        pairs.append([a, b, services.open_direct_chat(user_id=a, other_user_id=b).chat.id])
    groups = {}
    for name, size in spec["groups"].items():
        chat = ensure_group(title=f"{PREFIX}-{name}-{size}", user_ids=users[:size])
        groups[name] = {"chat_id": chat.id, "members": users[:size]}
    s5 = spec.get("read_group")
    if s5:
        chat = ensure_group(title=f"{PREFIX}-reads-{s5['size']}", user_ids=users[: s5["size"]])
        last_seq = fill_messages(chat=chat, sender_id=users[0], upto_seq=s5["messages"])
        groups["reads"] = {
            "chat_id": chat.id,
            "members": users[: s5["size"]],
            "last_seq": last_seq,
        }
    s7 = spec.get("reactions")
    reaction_groups = None
    if s7:
        reaction_groups = ensure_reaction_groups(
            user_ids=users[-s7["chats"] * s7["members"] :],
            chats=s7["chats"],
            members=s7["members"],
            messages=s7["messages"],
        )
    history = changes = None
    if spec.get("history_messages"):
        chat = ensure_group(title=f"{PREFIX}-history", user_ids=users[:2])
        last_seq = fill_messages(chat=chat, sender_id=users[0], upto_seq=spec["history_messages"] + 1)
        history = {
            "chat_id": chat.id,
            "user_id": users[1],
            "last_seq": last_seq,
            "token": token(users[1]),
            "database": connection.settings_dict["NAME"],
        }
        s8 = spec.get("changes")
        if s8:
            changes = ensure_history_changes(
                chat=chat, reactor_id=users[1], editor_id=users[0], reactions=s8["reactions"], edits=s8["edits"]
            )
            changes["token"] = history["token"]
    tokens = tokens_for(users)
    log(f"prepared in {time.perf_counter() - t0:.1f} s")
    return {
        "users": users,
        "pairs": pairs,
        "groups": groups,
        "history": history,
        "reaction_groups": reaction_groups,
        "changes": changes,
        "tokens": tokens,
    }


def history(min_messages: int) -> dict:
    """The chat with the most messages in this database, if it has at least ``min_messages``."""
    with connection.cursor() as cur:
        cur.execute("SELECT id, last_seq FROM chats_chat ORDER BY last_seq DESC LIMIT 1")
        row = cur.fetchone()
    if row is None or row[1] < min_messages:
        return {}
    chat_id, last_seq = row
    member = (
        Membership.objects.filter(chat_id=chat_id, user__is_active=True)
        .order_by("id")
        .values_list("user_id", flat=True)
        .first()
    )
    if member is None:
        return {}
    with connection.cursor() as cur:
        # Trust but verify: the deepest page the scenario asks for must really be there.
        cur.execute(
            "SELECT count(*) FROM chats_message WHERE chat_id = %s AND seq BETWEEN %s AND %s",
            [chat_id, min_messages - 10_000, min_messages],
        )
        if cur.fetchone()[0] < 10_001:
            return {}
    return {
        "chat_id": chat_id,
        "user_id": member,
        "last_seq": last_seq,
        "token": token(member),
        "database": connection.settings_dict["NAME"],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["prepare", "history"])
    parser.add_argument("--spec", default="{}")
    parser.add_argument("--min-messages", type=int, default=1_000_000)
    args = parser.parse_args()
    result = prepare(json.loads(args.spec)) if args.command == "prepare" else history(args.min_messages)
    json.dump(result, sys.stdout)
