#!/usr/bin/env bash
# Run the whole test suite: create .venv, install, run pytest (extra arguments pass through).
# Uses PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set (CI sets them and REQUIRE_SERVICES=1).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh requirements-dev.txt
exec python -m pytest "$@"
