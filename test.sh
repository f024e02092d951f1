#!/usr/bin/env bash
# Run the whole test suite: create .venv, install, run pytest (extra arguments pass through).
# Uses the PostgreSQL/Redis that DATABASE_URL/REDIS_URL name (CI sets them); for each one unset,
# an embedded server under .data/ (scripts/devservices.py; it keeps running for the next run).
# Every test runs, nothing is skipped: a missing or unreachable service is an error. One exception:
# RabbitMQ has no embedded form, so without one at TEST_BROKER_URL (default the machine's,
# amqp://guest:guest@127.0.0.1:5672/) the broker-transport tests of tests/outbox are skipped and
# say why -- unless REQUIRE_SERVICES=1 (.ci/run, which starts RabbitMQ), where they fail.
# Lint and format are checked first (ruff, rules in pyproject.toml); a finding fails the run.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh requirements-dev.txt
ruff check .
ruff format --check .
services=$(python scripts/devservices.py env postgres redis)  # export lines; fails loudly
eval "$services"
exec python -m pytest "$@"
