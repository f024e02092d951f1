"""Per-user rate limits: one fixed-window counter per user and limit, kept in the cache.

Every limit is a ``runtime.limits.RateLimit``, counted by ``runtime.limits.count_in_window``
(the one counter of every limit, per user or per address) in a plan: with Redis
the counter is shared by every process (REST and sockets alike); without it, by the one
process. Each attempt is counted once, refused ones included, and a refusal is the same
``RateLimited`` (code ``rate_limited``, ``retry_after`` = seconds to the window's end).

``SEND`` bounds messages (forwards included); ``MESSAGE_CHANGE`` edits, deletes, reaction
changes and pins; ``CHAT_CHANGE`` every other write that stores a message or fans
out an event (group creation, opening a direct chat, renames, member adds and removals,
leaving); ``GROUP_CREATE`` the groups a user creates per UTC day. A limit of 0 disables it.
"""

from __future__ import annotations

from runtime.limits import RateLimit, check, over

__all__ = ["CHAT_CHANGE", "GROUP_CREATE", "MESSAGE_CHANGE", "SEND", "RateLimit", "check", "over"]

SEND = RateLimit("send", "SEND_RATE_LIMIT", "At most {limit} messages per {window} s.", "SEND_RATE_WINDOW_SECONDS")
CHAT_CHANGE = RateLimit(
    "chat_change",
    "CHAT_CHANGE_RATE_LIMIT",
    "At most {limit} chat changes per {window} s.",
    "CHAT_CHANGE_RATE_WINDOW_SECONDS",
)
MESSAGE_CHANGE = RateLimit(
    "message_change",
    "MESSAGE_CHANGE_RATE_LIMIT",
    "At most {limit} message changes per {window} s.",
    "MESSAGE_CHANGE_RATE_WINDOW_SECONDS",
)
GROUP_CREATE = RateLimit("group_create", "GROUP_CREATE_DAILY_LIMIT", "At most {limit} new groups per day.")
