"""Service-level microbenchmark: ``services.send_message`` and ``services.mark_read`` in a loop.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/messenger_micro .venv/bin/python -m bench.micro [N]

Sequential calls on one connection, synchronous commit, events collected but not sent: the
cost of the write path itself (statements, round trips, commit), without sockets. Creates its
two users and their direct chat on first use; the database must be migrated.
"""

from __future__ import annotations

import os
import sys
import time
import uuid


def main(n: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "messenger.settings")
    os.environ.setdefault("SEND_RATE_LIMIT", "0")
    os.environ.setdefault("CHAT_CHANGE_RATE_LIMIT", "0")
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from chats import events, services

    users = get_user_model().objects
    a, _ = users.get_or_create(username="micro_a", defaults={"email": "micro_a@example.com"})
    b, _ = users.get_or_create(username="micro_b", defaults={"email": "micro_b@example.com"})
    chat = services.open_direct_chat(user_id=a.id, other_user_id=b.id).chat
    with events.collect():
        started = time.perf_counter()
        for _ in range(n):
            services.send_message(user_id=a.id, chat_id=chat.id, client_id=uuid.uuid4().hex, text="hello")
        send = (time.perf_counter() - started) / n
        chat.refresh_from_db()
        started = time.perf_counter()
        for i in range(n):
            services.mark_read(user_id=b.id, chat_id=chat.id, up_to_seq=chat.last_seq - n + i + 1)
        read = (time.perf_counter() - started) / n
    print(f"send_message: {send * 1e6:.0f} us/call   mark_read: {read * 1e6:.0f} us/call   (n={n})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
