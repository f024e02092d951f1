"""``manage.py seed_data``: a small demo data set, or a bulk load data set for benchmarks.

Without options: the demo -- four users, a direct chat, a group and a few messages, with
replies, edits, reactions, a forward, a pin and a photo, all made through the services so they
look exactly like real ones (versions, edit history, reaction counts, system messages). Idempotent
and deterministic: every step is one the services make a no-op on a repeat (a send or forward
by its ``client_id``, the same edit, a reaction or pin already there). Works everywhere, the
production image included.

With ``--users N --chats M --messages K`` (plus the optional shape options): the load
data set of :mod:`devtools.loadgen` -- deterministic, idempotent and resumable, written
with ``COPY`` into PostgreSQL. The loader is a development tool: where the ``devtools``
app is not installed (the production image leaves it out) these options end in a
``CommandError`` saying so, before anything is written. The million-scale run used for
the benchmarks, from a checkout::

    DATABASE_URL=postgres://... manage.py seed_data --users 1000000 --chats 100000 \
        --messages 10000000 --group-size 1000 --big-chat-messages 1000000
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from types import ModuleType

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from attachments.services import Spooled, create_upload
from chats import services
from chats.exceptions import EditWindowExpired
from chats.models import Chat, Membership, Message

DEMO_PASSWORD = "messenger-demo-1"
DEMO_USERS = ["alice", "bob", "carol", "dave"]
GROUP_TITLE = "Demo group"

DIRECT_SCRIPT = [
    ("alice", "Hi Bob! This is a direct chat."),
    ("bob", "Hi Alice, messages arrive over the WebSocket in real time."),
    ("alice", "And they are stored in the database first."),
]
GROUP_SCRIPT = [
    ("alice", "Welcome to the demo group."),
    ("carol", "Hello everyone!"),
    ("bob", "Read receipts tell the sender when all of us have read."),
]
# What changes after the scripts, by the client_id of the message concerned.
REPLIES = [  # (chat, client_id, author, client_id answered, text)
    ("direct", "seed-direct-reply-1", "bob", "seed-direct-1", "Replies quote the message they answer."),
    ("group", "seed-group-reply-1", "carol", "seed-group-1", "Thanks, Alice!"),
]
EDITS = [  # (chat, client_id, new text): by the message's sender; the old text goes to the edit history
    ("direct", "seed-direct-3", "And they are stored in the database first, then sent."),
    ("group", "seed-group-3", "Read receipts tell the sender when all of us have read it."),
]
REACTIONS = [  # (chat, client_id, user, emoji)
    ("direct", "seed-direct-2", "alice", "👍"),
    ("group", "seed-group-1", "bob", "🎉"),
    ("group", "seed-group-1", "carol", "👍"),
    ("group", "seed-group-1", "dave", "👍"),
    ("group", "seed-group-reply-1", "alice", "😄"),
]
FORWARD = ("alice", "direct", "seed-direct-2", "group", "seed-forward-1")  # (user, from, client_id, to, new client_id)
PIN = ("alice", "group", "seed-group-1")  # (user, chat, client_id)
PHOTO = (
    "carol",
    "group",
    "seed-photo-1",
    "sunset.png",
    "A photo from the trip",
)  # (user, chat, client_id, name, caption)


LOAD_OPTIONS = ("users", "chats", "messages", "group_size", "groups", "big_chat_messages")
NO_LOADER = (
    "The bulk loader (--users/--chats/--messages/--group-size/--groups/--big-chat-messages) is a development "
    "tool, devtools.loadgen, and the devtools app is not installed here (the production image leaves it out). "
    "Run it from a checkout of the project; without options seed_data creates the demo data."
)


def bulk_loader() -> ModuleType:
    """The bulk loader, imported only when the ``devtools`` app is installed (see :mod:`devtools`)."""
    if not apps.is_installed("devtools"):
        raise CommandError(NO_LOADER)
    from devtools import loadgen as module

    return module


class Command(BaseCommand):
    help = (
        "Without options: create demo users (printed with their password), a direct chat, a group and a few "
        "messages with replies, edits, reactions, a forward and a pin. With --users/--chats/--messages: bulk-load a benchmark data set with COPY (development tool: "
        "needs the devtools app, which the production image leaves out)."
    )

    def add_arguments(self, parser):
        load = parser.add_argument_group(
            "load mode (all three of --users, --chats, --messages; needs the devtools app, not in the production image)"
        )
        load.add_argument("--users", type=int, help="Load users load_0000001..load_<N>, sharing one password.")
        load.add_argument("--chats", type=int, help="Chats in total: the groups first, direct chats for the rest.")
        load.add_argument("--messages", type=int, help="Messages in total over all chats.")
        load.add_argument(
            "--group-size", type=int, default=None, help="Members per group (default 1000, capped at --users)."
        )
        load.add_argument("--groups", type=int, help="Number of groups (default: enough for every user to be in one).")
        load.add_argument(
            "--big-chat-messages", type=int, help="Messages in chat 1, a group (default: a tenth of --messages)."
        )

        feed = parser.add_argument_group(
            "feed mode (--feed; needs the devtools app): channels, subscriptions, posts and the feed's read model"
        )
        feed.add_argument("--feed", action="store_true", help="Load the feed data set (the sizes below).")
        feed.add_argument("--feed-users", type=int, default=1_000_000)
        feed.add_argument("--feed-channels", type=int, default=10_000)
        feed.add_argument("--feed-posts", type=int, default=5_000_000)
        feed.add_argument("--feed-subscriptions", type=int, default=20_000_000)

    def handle(self, *args, **options):
        if options.get("feed"):
            self._load_feed(options)
        elif any(options.get(name) is not None for name in LOAD_OPTIONS):
            self._load(options)
        else:
            self._demo()

    def _load(self, options) -> None:
        loadgen = bulk_loader()
        missing = [f"--{name}" for name in ("users", "chats", "messages") if options.get(name) is None]
        if missing:
            raise CommandError(f"Load mode needs {', '.join(missing)} as well.")
        try:
            plan = loadgen.LoadPlan.build(
                users=options["users"],
                chats=options["chats"],
                messages=options["messages"],
                group_size=options["group_size"] or 1000,
                groups=options["groups"],
                big_chat_messages=options["big_chat_messages"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # One hash for every load user: hashing a million passwords would take hours.
        password_hash = make_password(loadgen.LOAD_PASSWORD)
        self.stdout.write(
            f"Loading into PostgreSQL: {plan.users:,} users, {plan.groups:,} groups of {plan.group_size:,}, "
            f"{plan.directs:,} direct chats, {plan.messages:,} messages ({plan.big_chat_messages:,} in chat 1)."
        )
        self.stdout.flush()
        loader = loadgen.Loader(plan, password_hash=password_hash, progress_stream=self.stderr)
        report = loader.run()
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {report.users:,} users, {report.chats:,} chats, {report.memberships:,} memberships, "
                f"{report.messages:,} messages (existing ones were kept)."
            )
        )
        for phase, seconds in report.seconds.items():
            self.stdout.write(f"  {phase:<30} {seconds:8.1f} s")
        first, last = loadgen.username(0), loadgen.username(plan.users - 1)
        self.stdout.write(f"Load users {first}..{last}  password={loadgen.LOAD_PASSWORD}")
        if report.users:
            self.stdout.write(f"  (the one hash shared by the {report.users:,} users created now: {password_hash})")

    def _load_feed(self, options) -> None:
        loadgen = bulk_loader()
        try:
            plan = loadgen.FeedPlan.build(
                users=options["feed_users"],
                channels=options["feed_channels"],
                posts=options["feed_posts"],
                subscriptions=options["feed_subscriptions"],
                fanout_max=settings.FEED_FANOUT_MAX,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        large = sum(plan.large(c) for c in range(plan.channels))
        self.stdout.write(
            f"Loading the feed set: {plan.users:,} users, {plan.channels:,} channels ({large:,} over FEED_FANOUT_MAX="
            f"{plan.fanout_max:,}; the biggest {plan.subscribers(0):,} subscribers), {plan.posts:,} posts, "
            f"about {plan.subscriptions:,} subscriptions."
        )
        self.stdout.flush()
        started = time.monotonic()
        user_ids = loadgen.load_users(
            plan.users, password_hash=make_password(loadgen.LOAD_PASSWORD), stream=self.stderr
        )
        self.stdout.write(f"  {'users':<42} {time.monotonic() - started:8.1f} s")
        report = loadgen.FeedLoader(plan, user_ids=user_ids, progress_stream=self.stderr).run()
        self.stdout.write(
            self.style.SUCCESS(
                f"Created {report.channels:,} channels, {report.subscriptions:,} subscriptions, {report.posts:,} posts, "
                f"{report.feed_rows:,} feed rows (existing channels were kept)."
            )
        )
        for phase, seconds in report.seconds.items():
            self.stdout.write(f"  {phase:<42} {seconds:8.1f} s")

    def _demo(self) -> None:
        users = {name: self._user(name) for name in DEMO_USERS}
        direct = services.open_direct_chat(user_id=users["alice"].id, other_user_id=users["bob"].id).chat
        group = self._group(users)
        for chat, script, prefix in ((direct, DIRECT_SCRIPT, "seed-direct"), (group, GROUP_SCRIPT, "seed-group")):
            for n, (author, text) in enumerate(script, start=1):
                # client_id makes a second run a duplicate send, which stores nothing.
                services.send_message(user_id=users[author].id, chat_id=chat.id, client_id=f"{prefix}-{n}", text=text)
        self._changes(users, {"direct": direct, "group": group})
        self.stdout.write(self.style.SUCCESS("Demo data ready. Log in with any of these:"))
        for name in DEMO_USERS:
            self.stdout.write(f"  username={name}  password={DEMO_PASSWORD}")

    def _changes(self, users, chats: dict[str, Chat]) -> None:
        """Replies, edits, reactions, a forward and a pin, each a no-op when already made."""

        def seq(chat: str, client_id: str) -> int:
            return Message.objects.values_list("seq", flat=True).get(chat=chats[chat], client_id=client_id)

        for chat, client_id, author, answered, text in REPLIES:
            services.send_message(
                user_id=users[author].id,
                chat_id=chats[chat].id,
                client_id=client_id,
                text=text,
                reply_to_seq=seq(chat, answered),
            )
        for chat, client_id, text in EDITS:
            message = Message.objects.get(chat=chats[chat], client_id=client_id)
            try:
                services.edit_message(user_id=message.sender_id, chat_id=message.chat_id, seq=message.seq, text=text)
            except EditWindowExpired:
                pass  # demo data from before the edit window: left as it is
        for chat, client_id, name, emoji in REACTIONS:
            services.set_reaction(
                user_id=users[name].id, chat_id=chats[chat].id, seq=seq(chat, client_id), emoji=emoji, add=True
            )
        name, source, client_id, target, new_client_id = FORWARD
        services.forward_messages(
            user_id=users[name].id,
            from_chat_id=chats[source].id,
            seqs=[seq(source, client_id)],
            to_chat_id=chats[target].id,
            client_ids=[new_client_id],
        )
        name, chat, client_id = PIN
        services.set_pin(user_id=users[name].id, chat_id=chats[chat].id, seq=seq(chat, client_id), pinned=True)
        self._photo(users, chats)

    def _photo(self, users, chats: dict[str, Chat]) -> None:
        """A photo message, uploaded and sent as the API would (once: the upload only when the
        message is not there yet, so a repeat stores no second upload)."""
        name, chat, client_id, filename, caption = PHOTO
        if Message.objects.filter(sender=users[name], client_id=client_id).exists():
            return
        from PIL import Image

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / filename
            # A sunset gradient, drawn rather than shipped: 640x360, a few KiB as PNG.
            image = Image.linear_gradient("L").resize((640, 360)).rotate(90, expand=False)
            Image.merge(
                "RGB",
                (
                    image.point(lambda v: 255 - v // 4),
                    image.point(lambda v: 90 + v // 3),
                    image.point(lambda v: v // 2),
                ),
            ).save(path)
            data = path.read_bytes()
            upload = create_upload(
                owner_id=users[name].id,
                spooled=Spooled(path=path, name=filename, size=len(data), sha256=hashlib.sha256(data).hexdigest()),
            )
        services.send_message(
            user_id=users[name].id,
            chat_id=chats[chat].id,
            client_id=client_id,
            text=caption,
            attachment_ids=[upload.id],
        )

    def _user(self, name: str):
        User = get_user_model()
        user = User.objects.filter(username__iexact=name).first()
        if user is None:
            user = User.objects.create_user(username=name, email=f"{name}@example.com", password=DEMO_PASSWORD)
        return user

    @transaction.atomic
    def _group(self, users) -> Chat:
        existing = Chat.objects.filter(kind=Chat.Kind.GROUP, title=GROUP_TITLE, created_by=users["alice"]).first()
        if existing is not None:
            return existing
        chat = services.create_group(
            user_id=users["alice"].id, title=GROUP_TITLE, member_ids=[users["bob"].id, users["carol"].id]
        )
        services.add_member(
            actor_id=users["alice"].id, chat_id=chat.id, user_id=users["dave"].id, role=Membership.Role.ADMIN
        )
        return chat
