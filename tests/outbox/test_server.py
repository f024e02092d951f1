"""The inline relay of a server process: started by ``python -m runtime.serve`` on its first
call, not by commands or imports; the admin's read-only view of the outbox."""

from __future__ import annotations

import sys
import urllib.request

import pytest
from django.db import transaction
from django.test import Client

from outbox import record, server
from outbox.models import OutboxEvent
from tests.live import ServerProcess, child_env, test_database_url
from tests.outbox.conftest import effects, outbox_rows, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_server_process_runs_the_inline_relay_after_its_first_request(outbox_db, tmp_path):
    """No BROKER_URL: the production entry point delivers events itself (``./run.sh`` alone)."""
    env = child_env(
        DATABASE_URL=test_database_url(),
        BROKER_URL="",
        OUTBOX_SERVER_RELAY="true",
        OUTBOX_EXTRA_HANDLERS="tests.outbox.sample_handlers",
        OUTBOX_POLL_MS="500",
    )
    process = ServerProcess(
        tmp_path / "server.log",
        env,
        lambda port: [sys.executable, "-m", "runtime.serve", "-b", "127.0.0.1", "-p", str(port)],
    ).start()
    try:
        with transaction.atomic():
            event_id = record("test.effect", {})
        assert outbox_rows() == 1  # nothing runs before the server was called
        with urllib.request.urlopen(f"http://127.0.0.1:{process.port}/healthz", timeout=10) as response:
            assert response.status == 200
        wait_until(lambda: effects() == [(event_id, "sample.effect")], "the server's relay", processes=[process])
        wait_until(lambda: outbox_rows() == 0, "the row deleted", processes=[process])
    finally:
        process.stop()


def test_the_server_relay_does_not_start_with_a_broker_or_when_switched_off(settings):
    """With a broker the workers deliver; OUTBOX_SERVER_RELAY=false leaves it to run_worker."""
    settings.BROKER_URL, settings.OUTBOX_SERVER_RELAY = "amqp://guest:guest@127.0.0.1:5672/", True
    assert server.start_server_relay() is False
    settings.BROKER_URL, settings.OUTBOX_SERVER_RELAY = "", False
    assert server.start_server_relay() is False


def test_the_admin_lists_the_outbox_read_only_and_filters_dead_letters(outbox_db, make_user):
    user = make_user(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    with transaction.atomic():
        live = record("test.live", {})
        dead = record("test.dead", {})
    OutboxEvent.objects.filter(pk=dead).update(dead_at=OutboxEvent.objects.get(pk=dead).created_at)
    page = client.get("/admin/outbox/outboxevent/?state=dead").content.decode()
    assert f"/outboxevent/{dead}/change/" in page and f"/outboxevent/{live}/change/" not in page
    assert client.get(f"/admin/outbox/outboxevent/{live}/change/").status_code == 200
    assert client.post(f"/admin/outbox/outboxevent/{live}/delete/", {"post": "yes"}).status_code == 403
    assert OutboxEvent.objects.count() == 2
