"""Production settings pass ``manage.py check --deploy`` with no warning, and refuse to start without secrets."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from .live import ROOT

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(64),
    "ALLOWED_HOSTS": "example.com",
    "DATABASE_URL": "postgres://messenger@db.example.com:5432/messenger",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL")}
    base.update(DJANGO_SETTINGS_MODULE="messenger.settings", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        check=False,
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_production_settings():
    """``check --deploy --fail-level WARNING`` passes, with nothing silenced."""
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_catches_a_weak_setting():
    """The check above can fail: a short SECRET_KEY is reported (security.W009)."""
    result = manage("check", "--deploy", "--fail-level", "WARNING", **{**PRODUCTION, "SECRET_KEY": "too-short"})
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def test_production_refuses_to_start_without_its_secrets():
    """DEBUG=false without SECRET_KEY, ALLOWED_HOSTS or DATABASE_URL is a configuration error."""
    for missing in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"):
        env = {k: v for k, v in PRODUCTION.items() if k != missing}
        result = manage("check", **env)
        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr and missing in result.stderr
