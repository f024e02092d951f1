"""Per-user rate limits: one fixed-window counter per user and limit, kept in the cache.

Every limit is counted the same way, by ``runtime.limits.count_in_window`` (the one counter of
every limit, per user or per address) in a plan: with Redis
the counter is shared by every process (REST and sockets alike); without it, by the one
process. Each attempt is counted once, refused ones included, and a refusal is the same
``RateLimited`` (code ``rate_limited``, ``retry_after`` = seconds to the window's end).

``SEND`` bounds messages (forwards included); ``MESSAGE_CHANGE`` edits, deletes, reaction
changes and pins; ``CHAT_CHANGE`` every other write that stores a message or fans
out an event (group creation, opening a direct chat, renames, member adds and removals,
leaving); ``GROUP_CREATE`` the groups a user creates per UTC day. A limit of 0 disables it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from ops import metrics
from runtime.limits import count_in_window
from runtime.plans import Plan, run_sync

from ..exceptions import RateLimited

DAY = 86_400


@dataclass(frozen=True)
class RateLimit:
    """``limit_setting`` actions per ``window_setting`` seconds (or ``window`` when fixed)."""

    name: str  # the cache key's and the metric label's part
    limit_setting: str
    detail: str  # "{limit}" and "{window}" are filled in
    window_setting: str | None = None
    window: int = DAY

    def limit(self) -> int:
        return getattr(settings, self.limit_setting)

    def seconds(self) -> int:
        return max(1, getattr(settings, self.window_setting) if self.window_setting else self.window)

    def refusal(self, retry_after: float) -> RateLimited:
        """The refusal of an attempt over the limit (``retry_after``: what :func:`over` answered)."""
        metrics.RATE_LIMITED.labels(limit=self.name).inc()
        return RateLimited(self.detail.format(limit=self.limit(), window=self.seconds()), retry_after=retry_after)


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


def over(rate: RateLimit, *, user_id: int, amount: int = 1) -> Plan[float | None]:
    """Count this attempt (``amount`` actions: a forward of N messages is N sends) in the user's
    current window of ``rate``: None while within the limit, else the seconds until the window
    ends. Counted once per call."""
    return (
        yield from count_in_window(rate.name, str(user_id), limit=rate.limit(), seconds=rate.seconds(), amount=amount)
    )


def check(rate: RateLimit, *, user_id: int) -> None:
    """Count this attempt (from a request thread) and raise RateLimited when it is over the limit."""
    wait = run_sync(over(rate, user_id=user_id))
    if wait is not None:
        raise rate.refusal(wait)
