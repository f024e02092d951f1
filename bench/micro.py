"""Service-level microbenchmark: send and read, as REST runs them and as a socket runs them.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/messenger_micro .venv/bin/python -m bench.micro [N]

Sequential calls, synchronous commit, events built but not sent: the cost of the write path
itself (plan, statements, round trips, commit), without sockets. ``sync`` is
``services.send_message(...)`` on Django's connection (REST); ``async`` is
``await services.send_message.run_async(...)`` on the async pool (the socket). Creates its two
users and their direct chat on first use; the database must be migrated.
"""

from __future__ import annotations

import asyncio
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

    from chats import services
    from runtime import realtime

    realtime.send_now = lambda outgoing: None  # build events, send none
    users = get_user_model().objects
    a, _ = users.get_or_create(username="micro_a", defaults={"email": "micro_a@example.com"})
    b, _ = users.get_or_create(username="micro_b", defaults={"email": "micro_b@example.com"})
    chat = services.open_direct_chat(user_id=a.id, other_user_id=b.id).chat

    def timed(call) -> float:
        started = time.perf_counter()
        for i in range(n):
            call(i)
        return (time.perf_counter() - started) / n * 1e6

    def sync_send(i):
        services.send_message(user_id=a.id, chat_id=chat.id, client_id=uuid.uuid4().hex, text="hello")

    def sync_read(i):
        services.mark_read(user_id=b.id, chat_id=chat.id, up_to_seq=base + i + 1)

    loop = asyncio.new_event_loop()

    def async_send(i):
        loop.run_until_complete(
            services.send_message.run_async(user_id=a.id, chat_id=chat.id, client_id=uuid.uuid4().hex, text="hello")
        )

    def async_read(i):
        loop.run_until_complete(services.mark_read.run_async(user_id=b.id, chat_id=chat.id, up_to_seq=base + i + 1))

    send = timed(sync_send)
    chat.refresh_from_db()
    base = chat.last_seq - n
    read = timed(sync_read)
    asend = timed(async_send)
    chat.refresh_from_db()
    base = chat.last_seq - n
    aread = timed(async_read)
    print(
        f"sync (REST):    send_message {send:.0f} us/call   mark_read {read:.0f} us/call\n"
        f"async (socket): send_message {asend:.0f} us/call   mark_read {aread:.0f} us/call   (n={n})"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
