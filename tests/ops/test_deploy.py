"""Production settings pass Django's deployment checklist (``manage.py check --deploy``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "t8Kq2vX9-LmP4wRz7_NcB1yHf6JdS3gA0eU5oIkVbQ-x7Wm2Zr4Yp",  # >= 50 characters, >= 5 distinct
    "ALLOWED_HOSTS": "chat.example.com",
    "DATABASE_URL": "postgres://messenger:messenger@127.0.0.1:5432/messenger",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def check_deploy(**overrides: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "TEST_DATABASE_NAME", "SECURE_SSL_REDIRECT")}
    env.update(PRODUCTION, DJANGO_SETTINGS_MODULE="messenger.settings", **overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_production_settings_pass_check_deploy():
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_checklist_is_live():
    """Turning off the HTTPS redirect (as local Compose does) is reported: the check really runs."""
    result = check_deploy(SECURE_SSL_REDIRECT="false")
    assert result.returncode != 0
    assert "security.W008" in result.stdout + result.stderr
