"""Which functions handle which event type: the ``@outbox.handler`` registry and its discovery."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.utils.module_loading import autodiscover_modules


@dataclass(frozen=True)
class Event:
    """What a handler receives: the recorded event, as ``outbox.record`` stored it."""

    id: int
    type: str
    payload: dict
    key: str | None
    created_at: datetime


@dataclass(frozen=True)
class Handler:
    name: str
    event_type: str
    fn: Callable[[Event], None]


_lock = threading.Lock()
_by_type: dict[str, list[Handler]] = {}


def handler(
    event_type: str, *, name: str | None = None
) -> Callable[[Callable[[Event], None]], Callable[[Event], None]]:
    """Register ``fn(event: Event) -> None`` for ``event_type``. Several handlers per type may be
    registered; each runs in its own transaction, at most once per event for good (its ``name``,
    default ``module.qualname``, is what the ProcessedEvent table remembers: renaming a handler
    makes it run again for events still in flight). Registering the same function again is a
    no-op; another function under a taken name is an error."""

    def register(fn: Callable[[Event], None]) -> Callable[[Event], None]:
        entry = Handler(name=name or f"{fn.__module__}.{fn.__qualname__}", event_type=event_type, fn=fn)
        with _lock:
            existing = _by_type.setdefault(event_type, [])
            for other in existing:
                if other.name == entry.name:
                    if other.fn is fn:
                        return fn
                    raise ValueError(f"outbox handler name {entry.name!r} is already registered for {event_type!r}")
            existing.append(entry)
        return fn

    return register


def handlers_for(event_type: str) -> list[Handler]:
    with _lock:
        return list(_by_type.get(event_type, ()))


def event_types() -> list[str]:
    with _lock:
        return sorted(_by_type)


def autodiscover() -> None:
    """Import every installed app's ``handlers`` module and each OUTBOX_EXTRA_HANDLERS module."""
    autodiscover_modules("handlers")
    for module in settings.OUTBOX_EXTRA_HANDLERS:
        importlib.import_module(module)
