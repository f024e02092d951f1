"""Writes on chats. Every state change is one function here, run in one transaction.

Both the REST views and the WebSocket consumer call these; neither touches domain
rows itself. Events are published only after commit (``events.publish_on_commit``).

Concurrency model: every write that changes a chat's sequence takes the chat's row lock
first (a send claims its seq in the very statement that takes it; see ``chats/sql.py``),
so seq order is commit order and there are no gaps, and a duplicate send waits for the
winner and then finds it. Reads move only the reader's own watermark, without the chat
lock; the read-by-everyone minimum is recomputed after commit.

``messages`` holds the hot paths (send, read, typing), ``chats`` the chat and member
changes, ``common`` what they share.
"""

from .chats import (
    DirectResult,
    add_member,
    create_group,
    open_direct_chat,
    remove_member,
    rename_group,
)
from .common import (
    CLIENT_ID_MAX,
    TITLE_MAX,
    ReadResult,
    SendResult,
    clean_client_id,
    clean_text,
    clean_title,
)
from .messages import (
    _send_message,
    check_send_rate,
    mark_read,
    notify_typing,
    send_message,
)

__all__ = [
    "CLIENT_ID_MAX",
    "TITLE_MAX",
    "DirectResult",
    "ReadResult",
    "SendResult",
    "_send_message",
    "add_member",
    "check_send_rate",
    "clean_client_id",
    "clean_text",
    "clean_title",
    "create_group",
    "mark_read",
    "notify_typing",
    "open_direct_chat",
    "remove_member",
    "rename_group",
    "send_message",
]
