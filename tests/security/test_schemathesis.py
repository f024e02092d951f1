"""Schemathesis against our OpenAPI schema, as an authenticated user, on a live production-mode server.

The server is ``python -m runtime.serve`` with ``DEBUG=false`` (JSON error pages, no browsable
API), so what is checked is what clients get in production. Schemathesis reads ``/api/schema/``
and runs its coverage, fuzzing and stateful phases against every operation with a real bearer
token. Checks: no 5xx, status codes, content types, headers and bodies conforming to the
schema, auth not ignored, unsupported methods refused, deleted resources gone.

Not checked, on purpose: ``positive_data_acceptance`` (business rules the schema cannot state
reject schema-valid input: weak passwords, a direct chat with yourself, ``after_seq`` together
with ``before_seq``) and ``ensure_resource_availability`` (a 404 for a missing *user* in ``POST /chats/{id}/members``
reads to it as the chat having vanished); for ``POST /api/uploads`` also
``negative_data_rejection`` (see the comment in the test: multipart cannot encode the negative
case it generates).

CI runs ``SCHEMATHESIS_EXAMPLES`` (default 25) cases per operation and phase with a fixed seed;
a longer run: ``SCHEMATHESIS_EXAMPLES=200 SCHEMATHESIS_SEED=7 ./test.sh tests/security/test_schemathesis.py``.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

# negative_data_rejection runs: string fields are strict (ops/fields.py), so input the schema
# calls invalid is refused.
CHECKS_EXCLUDED = "positive_data_acceptance,ensure_resource_availability"
UPLOADS = "/api/uploads"


@pytest.mark.timeout(1200)  # a bound against hangs; the subprocess has its own
def test_schemathesis_finds_no_server_error_and_no_schema_violation(start_server, tmp_path):
    env = {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
    }
    server = start_server("schemathesis", serve=True, **env)
    user = server.register("fuzzer")
    server.register("fuzzer_friend")
    token = server.login(user)["access"]

    examples = os.environ.get("SCHEMATHESIS_EXAMPLES", "25")
    seed = os.environ.get("SCHEMATHESIS_SEED", "1")

    def run(*selection: str, excluded: str) -> str:
        command = [
            str(Path(sys.executable).with_name("schemathesis")), "run", f"{server.base}/api/schema/",
            "--header", f"Authorization: Bearer {token}",
            "--checks", "all", "--exclude-checks", excluded, *selection,
            "--max-examples", examples, "--seed", seed,
            "--workers", "1", "--request-timeout", "30",
            "--generation-database", "none", "--no-color",
        ]  # fmt: skip
        result = subprocess.run(
            command, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=900,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        output = result.stdout + result.stderr
        summary = re.search(r"(\d+) generated, ([^\n]*)", output)
        print(f"\nschemathesis {' '.join(selection) or '(all)'}: {summary.group(0) if summary else output[-2000:]}")
        assert result.returncode == 0, output[-20000:]
        assert summary and "passed" in summary.group(2)
        return output

    run("--exclude-path", UPLOADS, excluded=CHECKS_EXCLUDED)
    # A multipart body cannot say "an empty array" for the optional part `voice` (it is sent as
    # no part at all, which is valid), so schemathesis' negative cases for it are valid requests:
    # POST /api/uploads runs every other check.
    run("--include-path", UPLOADS, excluded=f"{CHECKS_EXCLUDED},negative_data_rejection")
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
