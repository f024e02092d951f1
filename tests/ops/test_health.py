"""``/healthz`` and ``/readyz``: what they check, what they answer, and that nothing stops a probe."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from ops import health


@pytest.mark.django_db
def test_healthz_is_ok_without_touching_the_database(django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_every_check(settings):
    """Database reachable, no unapplied migration, Redis reachable (when configured)."""
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["checks"]["redis"] == ("ok" if settings.REDIS_URL else "not configured")


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(settings):
    """A closed port stands in for a Redis that is down."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"].startswith("error: ")
    assert body["checks"]["database"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_with_unapplied_migrations(monkeypatch):
    monkeypatch.setattr(MigrationExecutor, "migration_plan", lambda self, targets: [("chats", "0099_future")])
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "1 unapplied"


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_is_unreachable(monkeypatch):
    """The database check fails; the migrations check is skipped rather than failing twice."""

    def unreachable():
        raise OperationalError('connection to server at "db.internal" failed: password authentication failed')

    monkeypatch.setattr(health, "_check_database", unreachable)
    response = Client().get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "error: OperationalError"
    assert checks["migrations"] == "skipped"
    assert b"db.internal" not in response.content  # the error's text (hosts, users) stays in the server


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_pass_host_check_and_https_redirect_in_production(settings, path):
    """A container health check calls http://127.0.0.1:8000/... knowing neither ALLOWED_HOSTS nor
    TLS: the probes answer anyway, while every other path still gets the host check."""
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get(path, HTTP_HOST="127.0.0.1:8000").status_code == 200
    assert client.get("/api/users/me", HTTP_HOST="127.0.0.1:8000").status_code == 400
    assert client.get("/api/users/me", HTTP_HOST="chat.example.com").status_code == 301


@pytest.mark.django_db(transaction=True)
async def test_probes_over_the_asgi_stack():
    """Through messenger.asgi (daphne's entry point), both probes answer."""
    from channels.testing import HttpCommunicator

    from messenger.asgi import application

    for path, status in (("/healthz", 200), ("/readyz", 200)):
        response = await HttpCommunicator(application, "GET", path).get_response(timeout=10)
        assert response["status"] == status, response
        assert b"x-request-id" in {name.lower() for name, _ in response["headers"]}
