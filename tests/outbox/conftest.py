"""Fixtures of the outbox tests: the sample tables, a RabbitMQ of this test's own (queue names),
worker subprocesses, and polling helpers.

RabbitMQ is the one at ``TEST_BROKER_URL`` (default ``amqp://guest:guest@127.0.0.1:5672/``;
``.ci/run`` starts the machine's when it is down). Unreachable, the tests that need it fail with
``REQUIRE_SERVICES=1`` (CI) and are skipped, saying why, otherwise (./test.sh on a machine
without RabbitMQ). Each test uses queues of its own (``BROKER_QUEUE_PREFIX``), deleted after it.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import pytest
from django.db import connection

from outbox import transport
from tests.conftest import RUN_PREFIX
from tests.live import ServerProcess, child_env, test_database_url
from tests.outbox import sample_handlers  # noqa: F401  (registers the sample handlers here too)
from tests.outbox.sample_handlers import ATTEMPTS, EFFECTS, FLAGS, TABLES_SQL

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("TEST_BROKER_URL") or "amqp://guest:guest@127.0.0.1:5672/"
DEADLINE = 90.0  # seconds any wait may take on a loaded machine; waits poll, they never sleep fixed


def broker_reachable() -> str | None:
    try:
        pika.BlockingConnection(pika.URLParameters(BROKER_URL)).close()
    except Exception as exc:
        return f"RabbitMQ at TEST_BROKER_URL={BROKER_URL} is unreachable: {exc!r}"
    return None


@pytest.fixture(scope="session")
def rabbitmq() -> str:
    problem = broker_reachable()
    if problem:
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(problem + " (REQUIRE_SERVICES=1)", pytrace=False)
        pytest.skip(problem + "; start it (rabbitmq-server -detached) or set TEST_BROKER_URL")
    return BROKER_URL


@pytest.fixture(scope="session")
def sample_tables(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(TABLES_SQL)


@pytest.fixture
def outbox_db(transactional_db, sample_tables):
    """The test database with empty sample tables (Django's own are flushed by pytest-django)."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {EFFECTS}, {ATTEMPTS}, {FLAGS}")
    yield


@pytest.fixture
def queue_prefix(settings):
    """Queue names of this test alone; the queues are deleted afterwards."""
    prefix = f"{RUN_PREFIX}-{uuid.uuid4().hex[:8]}"
    settings.BROKER_QUEUE_PREFIX = prefix
    transport.close()
    yield prefix
    transport.close()
    try:
        conn = pika.BlockingConnection(pika.URLParameters(BROKER_URL))
    except Exception:
        return
    try:
        channel = conn.channel()
        for suffix in ("", ".DQ", ".XQ"):
            channel.queue_delete(f"{prefix}.outbox{suffix}")
    finally:
        conn.close()


@pytest.fixture(params=["inline", "broker"])
def transport_name(request) -> str:
    if request.param == "broker":
        request.getfixturevalue("rabbitmq")
    return request.param


class Workers:
    """``start(...)`` -> a ``run_worker`` subprocess on this test's database and queues."""

    def __init__(self, tmp_path: Path, prefix: str, transport: str):
        self.tmp_path = tmp_path
        self.prefix = prefix
        self.transport = transport
        self.started: list[ServerProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        env = child_env(
            DATABASE_URL=test_database_url(),
            BROKER_URL=BROKER_URL if self.transport == "broker" else "",
            BROKER_QUEUE_PREFIX=self.prefix,
            OUTBOX_EXTRA_HANDLERS="tests.outbox.sample_handlers",
            OUTBOX_MAX_RETRIES="5",
            OUTBOX_MIN_BACKOFF_MS="100",
            OUTBOX_MAX_BACKOFF_MS="5000",
            OUTBOX_POLL_MS="500",
            LOG_LEVEL="INFO",
        )
        env.update(extra)
        return env

    def start(self, *, threads: int = 4, **extra: str) -> ServerProcess:
        n = len(self.started) + 1
        process = ServerProcess(
            self.tmp_path / f"worker{n}.log",
            self.env(**extra),
            lambda port: [
                sys.executable,
                "manage.py",
                "run_worker",
                "--threads",
                str(threads),
                "--metrics-port",
                str(port),
            ],
            ready=lambda port: _log_says(self.tmp_path / f"worker{n}.log", "worker ready"),
        )
        self.started.append(process)
        return process.start()

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


def _log_says(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


@pytest.fixture
def workers(outbox_db, queue_prefix, transport_name, tmp_path):
    pool = Workers(tmp_path, queue_prefix, transport_name)
    yield pool
    pool.stop_all()


def kill(process: ServerProcess) -> None:
    process.proc.send_signal(signal.SIGKILL)
    process.proc.wait(timeout=30)


def metrics(process: ServerProcess) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.port}/metrics", timeout=5) as response:
        return response.read().decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample of ``name`` with exactly these labels (0 if absent)."""
    label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name) + (r"\{" + re.escape(label_text) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_until(predicate, what: str, deadline: float = DEADLINE, processes: list | None = None):
    """Poll ``predicate`` until it returns something truthy; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            logs = "\n".join(p.log()[-4000:] for p in processes or [])
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.05)


def sql(query: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, list(params))
        return cursor.fetchall() if cursor.description else []


def effects(handler: str | None = None) -> list[tuple[int, str]]:
    """(event id, handler) of every committed effect, in order."""
    if handler is None:
        return [tuple(r) for r in sql(f"SELECT event_id, handler FROM {EFFECTS} ORDER BY id")]
    return [tuple(r) for r in sql(f"SELECT event_id, handler FROM {EFFECTS} WHERE handler = %s ORDER BY id", [handler])]


def attempt_times(event_id: int, handler: str) -> list:
    return [
        r[0]
        for r in sql(f"SELECT at FROM {ATTEMPTS} WHERE event_id = %s AND handler = %s ORDER BY id", [event_id, handler])
    ]


def set_flag(name: str) -> None:
    sql(f"INSERT INTO {FLAGS} (name) VALUES (%s) ON CONFLICT DO NOTHING", [name])


def outbox_rows() -> int:
    return sql("SELECT count(*) FROM outbox_outboxevent")[0][0]
