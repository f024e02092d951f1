"""One implementation per use case, run by either of two executors.

A use case that both request threads (REST, admin, management commands) and the event loop
(sockets) run is written once, as a *plan*: a generator function that yields what it needs
done -- run a statement, count in the cache, emit an event -- and receives each answer::

    @use_case
    def mark_read(*, user_id, chat_id, up_to_seq):
        row = yield READ_UP_TO.one(chat=chat_id, user=user_id, seq=up_to_seq)
        if row is None:
            raise ChatNotFound()
        yield Emit(user_ids=[user_id], event={...})
        return row.last_read_seq

The plan decides everything; an executor only carries out the steps:

* ``mark_read(...)`` runs it synchronously (:func:`run_sync`) on Django's connection and
  cache; an :class:`Emit` is published after the surrounding transaction commits.
* ``await mark_read.run_async(...)`` runs it from the event loop (:func:`run_async`) on
  the async PostgreSQL pool (:mod:`runtime.async_db`) and the cache's Redis
  (:mod:`runtime.async_cache`); every statement commits on its own, and the events come
  back to the caller, which sends them when it has answered its own client.

A database error is thrown into the plan at the ``yield`` that caused it, so the plan's own
``try/except IntegrityError`` handles it the same way under both executors. Rows come back
decoded into the statement's named row type; nothing indexes a tuple.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import psycopg
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from ops import metrics

from . import async_cache, async_db, realtime

log = logging.getLogger(__name__)

R = TypeVar("R", bound=tuple)
T = TypeVar("T")

Plan = Generator["Step", Any, T]


# --- the steps a plan yields -----------------------------------------------------------------


class Statement(Generic[R]):
    """One SQL statement with ``%(name)s`` parameters and the named row type it returns.

    Rows are decoded by ``row.from_row(tuple)`` when the row type has it (a row with nested
    parts), else ``row._make``. Statements run prepared (``prepare=True``): PostgreSQL plans
    each once per connection.
    """

    def __init__(self, sql: str, row: type[R], *, name: str | None = None, group_commit: bool = False):
        self.sql = sql
        self.row = row
        # The label of messenger_db_statement_seconds.
        self.name = name or row.__name__
        # Run from the event loop outside a transaction, it may be committed together with other
        # such statements (runtime/async_db.py, fetch_grouped; settings.DB_GROUP_COMMIT).
        self.group_commit = group_commit

    def one(self, *, savepoint: bool = False, **params: Any) -> Fetch:
        """A step answered with the first row (or None)."""
        return Fetch(self, params, first=True, savepoint=savepoint)

    def all(self, **params: Any) -> Fetch:
        """A step answered with every row, as a list."""
        return Fetch(self, params, first=False)

    def decode(self, rows: list[tuple], first: bool):
        make = getattr(self.row, "from_row", self.row._make)
        if first:
            return make(rows[0]) if rows else None
        return [make(row) for row in rows]


@dataclass(frozen=True)
class Fetch:
    """Run a statement. ``savepoint``: inside a caller's transaction, run it in a savepoint so a
    constraint violation (thrown into the plan) leaves that transaction usable."""

    statement: Statement
    params: dict
    first: bool
    savepoint: bool = False


@dataclass(frozen=True)
class CountInWindow:
    """Add ``amount`` to the counter ``key`` (created at 0 with ``ttl`` seconds to live); answered with the new count."""

    key: str
    ttl: int
    amount: int = 1


@dataclass(frozen=True)
class AddKey:
    """Set ``key`` for ``ttl`` seconds unless it exists; answered with whether it was set."""

    key: str
    ttl: int


@dataclass(frozen=True)
class HasKey:
    """Answered with whether the cache holds ``key`` (values are never None)."""

    key: str


@dataclass(frozen=True)
class Emit:
    """Tell every socket of ``user_ids`` about a committed change (``skip_channel``: the socket that
    caused it, which got its own answer), and every socket in the layer groups ``groups``.
    ``latest``: a later event of its key supersedes it, so it may be coalesced (runtime.coalesce)."""

    user_ids: list[int]
    event: dict
    skip_channel: str | None = None
    groups: tuple[str, ...] = ()
    latest: realtime.Latest | None = None


@dataclass(frozen=True)
class Atomic:
    """Run the sub-plan ``plan`` in one database transaction; answered with its result.

    For a use case that needs several statements to see and change one consistent state (lock
    a chat, read the rows the lock protects, write). Its statements run on one connection; a
    raised exception rolls the transaction back and is thrown into the outer plan. Its events go
    out only if it commits. Keep cache steps out of it: they are not part of the transaction.
    """

    plan: Plan


@dataclass(frozen=True)
class AfterCommit:
    """Call ``func(*args)`` in a thread once the change is committed (blocking clean-up that must
    not happen if it rolls back, such as removing stored files). Answered with None at once;
    the call's own failure is logged, never thrown into the plan. Yield it outside ``Atomic``."""

    func: Callable[..., Any]
    args: tuple = ()


Step = Fetch | CountInWindow | AddKey | HasKey | Emit | Atomic | AfterCommit


# --- the executors -------------------------------------------------------------------------


def _drive(plan: Plan[T], execute: Callable[[Step], Any]) -> T:
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(answer)
        except StopIteration as stop:
            return stop.value
        answer, error = None, None
        try:
            answer = execute(step)
        except Exception as exc:  # noqa: BLE001 - handed to the plan, which re-raises what it does not handle
            error = exc


def run_sync(plan: Plan[T]) -> T:
    """Run a plan in this thread on Django's connection and cache. Events go out after commit."""
    return _drive(plan, _execute_sync)


def fetch(step: Fetch) -> Any:
    """Run one statement step in this thread (a read outside any plan: selectors)."""
    return _execute_sync(step)


def _execute_sync(step: Step) -> Any:
    if isinstance(step, Fetch):
        connection.ensure_connection()
        in_savepoint = (
            transaction.atomic() if step.savepoint and connection.in_atomic_block else contextlib.nullcontext()
        )
        # A plain psycopg cursor: server-side binding, so prepare=True prepares the statement once
        # per connection. (Django's own cursors bind client-side: the values would be part of the
        # query text and every call would prepare a new statement.)
        started = time.perf_counter()
        with in_savepoint, connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            cursor.execute(step.statement.sql, step.params, prepare=True)
            rows = cursor.fetchall() if cursor.description else []
        if connection.queries_logged:  # DEBUG or a test counting queries: seen like the ORM's
            elapsed = time.perf_counter() - started
            connection.queries_log.append({"sql": step.statement.sql, "time": f"{elapsed:.3f}"})
        return step.statement.decode(rows, step.first)
    if isinstance(step, Atomic):
        with transaction.atomic():
            return run_sync(step.plan)
    if isinstance(step, CountInWindow):
        cache.add(step.key, 0, timeout=step.ttl)
        try:
            return cache.incr(step.key, step.amount)
        except ValueError:  # expired between add and incr
            cache.set(step.key, step.amount, timeout=step.ttl)
            return step.amount
    if isinstance(step, AddKey):
        return cache.add(step.key, 1, timeout=step.ttl)
    if isinstance(step, HasKey):
        return cache.get(step.key) is not None
    if isinstance(step, Emit):
        realtime.publish_on_commit(
            user_ids=step.user_ids,
            event=step.event,
            skip_channel=step.skip_channel,
            groups=step.groups,
            latest=step.latest,
        )
        return None
    if isinstance(step, AfterCommit):
        transaction.on_commit(functools.partial(_call_logged, step.func, step.args))
        return None
    raise TypeError(f"not a plan step: {step!r}")


_BACKGROUND: set[asyncio.Future] = set()


def _call_logged(func: Callable[..., Any], args: tuple) -> None:
    try:
        func(*args)
    except Exception:
        log.exception("after_commit_failed", extra={"func": getattr(func, "__qualname__", repr(func))})


def _call_in_thread(func: Callable[..., Any], args: tuple) -> None:
    try:
        _call_logged(func, args)
    finally:
        connection.close()  # this executor thread's own Django connection


async def run_async(plan: Plan[T]) -> tuple[T, list[realtime.Outgoing]]:
    """Run a plan from the event loop; return its result and the events it emitted, to send
    with :func:`runtime.realtime.send_events`. Every statement commits on its own."""
    events: list[realtime.Outgoing] = []
    return await _drive_async(plan, events, None), events


async def _drive_async(plan: Plan[T], events: list[realtime.Outgoing], tx: async_db.Transaction | None) -> T:
    answer: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(answer)
        except StopIteration as stop:
            return stop.value
        answer, error = None, None
        try:
            answer = await _execute_async(step, events, tx)
        except Exception as exc:  # noqa: BLE001 - handed to the plan, as in _drive
            error = exc


async def _execute_async(step: Step, events: list[realtime.Outgoing], tx: async_db.Transaction | None = None) -> Any:
    if isinstance(step, Fetch):
        started = time.perf_counter()
        if tx is not None:
            rows = await tx.fetch(step.statement.sql, step.params, savepoint=step.savepoint)
        elif step.statement.group_commit and settings.DB_GROUP_COMMIT:
            rows = await async_db.fetch_grouped(step.statement.sql, step.params)
        else:
            rows = await async_db.fetch(step.statement.sql, step.params)
        metrics.DB_STATEMENT_SECONDS.labels(statement=step.statement.name).observe(time.perf_counter() - started)
        return step.statement.decode(rows, step.first)
    if isinstance(step, Atomic):
        if tx is not None:  # nested: part of the enclosing transaction
            return await _drive_async(step.plan, events, tx)
        inner: list[realtime.Outgoing] = []
        async with async_db.transaction() as new_tx:
            result = await _drive_async(step.plan, inner, new_tx)
        events.extend(inner)  # committed
        return result
    if isinstance(step, Emit):
        outgoing = realtime.committed(
            user_ids=step.user_ids,
            event=step.event,
            skip_channel=step.skip_channel,
            groups=step.groups,
            latest=step.latest,
        )
        if outgoing is not None:
            events.append(outgoing)
        return None
    if isinstance(step, AfterCommit):
        if tx is not None:
            raise TypeError("AfterCommit inside Atomic: yield it after the Atomic step")
        future = asyncio.get_running_loop().run_in_executor(None, _call_in_thread, step.func, step.args)
        _BACKGROUND.add(future)
        future.add_done_callback(_BACKGROUND.discard)
        return None
    redis = async_cache.client()
    if redis is None:  # in-process cache: no I/O, the sync executor's code
        return _execute_sync(step)
    if isinstance(step, CountInWindow):
        key = async_cache.key(step.key)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(key, 0, ex=step.ttl, nx=True)
            pipe.incrby(key, step.amount)
            _, count = await pipe.execute()
        return count
    if isinstance(step, AddKey):
        return bool(await redis.set(async_cache.key(step.key), 1, ex=step.ttl, nx=True))
    if isinstance(step, HasKey):
        return bool(await redis.exists(async_cache.key(step.key)))
    raise TypeError(f"not a plan step: {step!r}")


# --- use cases -------------------------------------------------------------------------------


class UseCase(Generic[T]):
    """A plan function, callable like a plain service (synchronously, :func:`run_sync`) and
    awaitable from the event loop through :meth:`run_async`. ``.plan`` is the generator
    function itself, for composing plans with ``yield from``."""

    def __init__(self, plan: Callable[..., Plan[T]]):
        self.plan = plan
        functools.update_wrapper(self, plan)

    def __call__(self, *args: Any, **kwargs: Any) -> T:
        return run_sync(self.plan(*args, **kwargs))

    async def run_async(self, *args: Any, **kwargs: Any) -> tuple[T, list[realtime.Outgoing]]:
        return await run_async(self.plan(*args, **kwargs))

    def __repr__(self) -> str:
        return f"<use case {self.plan.__module__}.{self.plan.__qualname__}>"


def use_case(plan: Callable[..., Plan[T]]) -> UseCase[T]:
    return UseCase(plan)
