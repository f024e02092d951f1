"""``/healthz`` (the process answers) and ``/readyz`` (it can serve: database, migrations, Redis).

Both are answered by :class:`HealthCheckMiddleware`, placed before ``SecurityMiddleware`` and
``CommonMiddleware``: a container health check calls ``http://127.0.0.1:8000/healthz`` and
knows neither ``ALLOWED_HOSTS`` nor whether TLS is terminated in front, so these two paths skip
the host check and the HTTPS redirect. That is safe because they reveal nothing but "ok" and the
names of failing checks (never an error message, which could carry a host or a user name).
No authentication, no session, no database access for ``/healthz``.
"""

from __future__ import annotations

import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from ops.middleware import HybridMiddleware

logger = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 2.0


def healthz() -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def _check_migrations() -> str:
    executor = MigrationExecutor(connection)
    unapplied = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return "ok" if not unapplied else f"{len(unapplied)} unapplied"


def _check_redis() -> str:
    import redis

    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _run(name: str, check) -> str:
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the type is enough
        logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
        return f"error: {type(exc).__name__}"


def readiness() -> tuple[bool, dict[str, str]]:
    """Each check's outcome; ready when every one is ``ok`` (or Redis is not configured)."""
    checks = {"database": _run("database", _check_database)}
    checks["migrations"] = _run("migrations", _check_migrations) if checks["database"] == "ok" else "skipped"
    checks["redis"] = _run("redis", _check_redis) if settings.REDIS_URL else "not configured"
    ready = all(value in ("ok", "not configured") for value in checks.values())
    return ready, checks


def readyz() -> JsonResponse:
    ready, checks = readiness()
    if ready:
        return JsonResponse({"status": "ready", "checks": checks})
    return JsonResponse({"status": "unavailable", "checks": checks}, status=503)


class HealthCheckMiddleware(HybridMiddleware):
    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self._acall(request)
        if request.path == "/healthz":
            return healthz()
        if request.path == "/readyz":
            return readyz()
        return self.get_response(request)

    async def _acall(self, request: HttpRequest):
        if request.path == "/healthz":
            return healthz()
        if request.path == "/readyz":
            return await sync_to_async(readyz)()
        return await self.get_response(request)
