"""Writes on chats. Every state change is one function here, run in one transaction.

Both the REST views and the WebSocket consumer call these; neither touches domain rows
itself. Events go out only after commit.

``messages`` holds the message paths (send, read, typing) as plans (``runtime.plans``): one
implementation that request threads run synchronously and sockets run from the event loop.
``chats`` holds the chat and member changes (REST only, ORM in one transaction each), and
``changes`` the messages that change (edit, delete, forward, reactions, pins; plans too),
``channels`` broadcast channels (create, subscribe, like), and
``common`` what they share: the chat lock, read-by-everyone and system messages.

Concurrency model: every write that changes a chat's sequence takes the chat's row lock
first (a send claims its seq in the very statement that takes it; see ``chats/sql.py``), so
seq order is commit order and there are no gaps, and a duplicate send waits for the winner
and then finds it. Reads move only the reader's own watermark, without the chat lock; the
read-by-everyone minimum is recomputed after commit.
"""

from .changes import (
    DeleteResult,
    EditResult,
    ForwardResult,
    PinResult,
    ReactionResult,
    delete_messages,
    edit_message,
    forward_messages,
    set_pin,
    set_reaction,
)
from .channels import (
    LikeResult,
    SubscriptionResult,
    create_channel,
    like_post,
    subscribe,
    unsubscribe,
    watch_access,
)
from .chats import (
    DirectResult,
    add_member,
    create_group,
    leave_all_groups,
    open_direct_chat,
    remove_member,
    rename_group,
)
from .common import ReadResult, SendResult
from .messages import mark_read, notify_typing, send_message

__all__ = [
    "DeleteResult",
    "DirectResult",
    "EditResult",
    "ForwardResult",
    "LikeResult",
    "PinResult",
    "ReactionResult",
    "ReadResult",
    "SendResult",
    "SubscriptionResult",
    "add_member",
    "create_channel",
    "create_group",
    "delete_messages",
    "edit_message",
    "forward_messages",
    "leave_all_groups",
    "like_post",
    "mark_read",
    "notify_typing",
    "open_direct_chat",
    "remove_member",
    "rename_group",
    "send_message",
    "set_pin",
    "set_reaction",
    "subscribe",
    "unsubscribe",
    "watch_access",
]
