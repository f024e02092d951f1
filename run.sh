#!/usr/bin/env bash
# Start the server: create .venv, install, migrate, load demo data, serve HTTP + WebSocket
# with uvicorn (runtime.uvserve) on port 8000. Without DATABASE_URL: an embedded PostgreSQL under .data/pg
# (scripts/devservices.py; it keeps running after the server stops). Without REDIS_URL: the
# in-memory channel layer and cache (right for this single process).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh requirements-local.txt
services=$(python scripts/devservices.py env postgres)  # export lines; fails loudly
eval "$services"
python manage.py migrate --noinput
python manage.py collectstatic --noinput --verbosity 0
python manage.py seed_data
# runtime.uvserve is uvicorn with a bounded per-socket send buffer and query-free logs
# (python -m runtime.serve is the same on daphne).
exec python -m runtime.uvserve -b "${HOST:-127.0.0.1}" -p "${PORT:-8000}" --websocket-max-message-size 65536
