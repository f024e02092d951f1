"""``manage.py seed_data``: a small demo data set, idempotent (run it twice, nothing doubles).

Everything goes through the services, so seeded chats look exactly like real ones.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from chats import services
from chats.models import Chat, Membership

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


class Command(BaseCommand):
    help = "Create demo users (printed with their password), a direct chat, a group and a few messages."

    def handle(self, *args, **options):
        users = {name: self._user(name) for name in DEMO_USERS}
        direct = services.open_direct_chat(user_id=users["alice"].id, other_user_id=users["bob"].id).chat
        group = self._group(users)
        for chat, script, prefix in ((direct, DIRECT_SCRIPT, "seed-direct"), (group, GROUP_SCRIPT, "seed-group")):
            for n, (author, text) in enumerate(script, start=1):
                # client_id makes a second run a duplicate send, which stores nothing.
                services._send_message(
                    user_id=users[author].id, chat_id=chat.id, client_id=f"{prefix}-{n}", text=text, skip_channel=None
                )
        self.stdout.write(self.style.SUCCESS("Demo data ready. Log in with any of these:"))
        for name in DEMO_USERS:
            self.stdout.write(f"  username={name}  password={DEMO_PASSWORD}")

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
        services.add_member(actor_id=users["alice"].id, chat_id=chat.id, user_id=users["dave"].id, role=Membership.Role.ADMIN)
        return chat
