"""Handlers the outbox tests register: by import in the test process, and in worker
subprocesses through ``OUTBOX_EXTRA_HANDLERS=tests.outbox.sample_handlers`` (the setting exists
for this; production code registers in its apps' ``handlers`` modules).

They write to three tables the tests create in the test database (``conftest.sample_tables``):

* ``outbox_test_effect`` -- one row per handler run *that committed* (no unique constraint: a
  duplicate effect would show as a second row);
* ``outbox_test_attempt`` -- one row per call, written on a separate autocommit connection, so
  attempts that failed and rolled back are still counted (with the database's clock);
* ``outbox_test_flag`` -- names the tests set to change a handler's behaviour ("fixed").
"""

from __future__ import annotations

import os
import threading
import time

import psycopg
from django.db import connection

from outbox import Event, handler
from outbox.relay import listener_params

EFFECTS = "outbox_test_effect"
ATTEMPTS = "outbox_test_attempt"
FLAGS = "outbox_test_flag"
TABLES_SQL = f"""
CREATE TABLE IF NOT EXISTS {EFFECTS} (
    id bigserial PRIMARY KEY, event_id bigint NOT NULL, handler text NOT NULL, pid int NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS {ATTEMPTS} (
    id bigserial PRIMARY KEY, event_id bigint NOT NULL, handler text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS {FLAGS} (name text PRIMARY KEY);
"""

_local = threading.local()


def _log_attempt(event: Event, name: str) -> int:
    """Count this call outside the handler's transaction; returns the calls so far, this one included."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(autocommit=True, **listener_params())
    conn.execute(f"INSERT INTO {ATTEMPTS} (event_id, handler) VALUES (%s, %s)", (event.id, name))
    return conn.execute(
        f"SELECT count(*) FROM {ATTEMPTS} WHERE event_id = %s AND handler = %s", (event.id, name)
    ).fetchone()[0]


def _effect(event: Event, name: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EFFECTS} (event_id, handler, pid) VALUES (%s, %s, %s)", [event.id, name, os.getpid()]
        )


def _flag(name: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {FLAGS} WHERE name = %s", [name])
        return cursor.fetchone() is not None


@handler("test.effect", name="sample.effect")
def effect(event: Event) -> None:
    _log_attempt(event, "sample.effect")
    _effect(event, "sample.effect")


@handler("test.pair", name="sample.pair.first")
def pair_first(event: Event) -> None:
    _log_attempt(event, "sample.pair.first")
    _effect(event, "sample.pair.first")


@handler("test.pair", name="sample.pair.second")
def pair_second(event: Event) -> None:
    """Fails on its first call: the first handler of the pair must not run again."""
    calls = _log_attempt(event, "sample.pair.second")
    _effect(event, "sample.pair.second")  # written, then rolled back on the failing call
    if calls == 1:
        raise RuntimeError("second handler fails once")


@handler("test.flaky", name="sample.flaky")
def flaky(event: Event) -> None:
    """Fails ``payload["fail_times"]`` times, then succeeds."""
    calls = _log_attempt(event, "sample.flaky")
    _effect(event, "sample.flaky")
    if calls <= event.payload["fail_times"]:
        raise RuntimeError(f"flaky failure {calls}")


@handler("test.broken", name="sample.broken")
def broken(event: Event) -> None:
    """Fails until the flag "fixed" is set."""
    _log_attempt(event, "sample.broken")
    if not _flag("fixed"):
        raise RuntimeError("broken until fixed")
    _effect(event, "sample.broken")


@handler("test.slow", name="sample.slow")
def slow(event: Event) -> None:
    """Takes ``payload["sleep_ms"]`` inside its transaction (kill and stop tests)."""
    if event.payload.get("log"):
        _log_attempt(event, "sample.slow")
    time.sleep(event.payload.get("sleep_ms", 0) / 1000)
    _effect(event, "sample.slow")
