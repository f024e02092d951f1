# The messenger app image: uvicorn (through runtime.uvserve) serving HTTP + WebSocket on port 8000.
# Configuration comes from the environment (see .env.example); with DEBUG=false the app
# refuses to start without SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL.

# --- build: the dependencies, in a virtualenv that the runtime stage copies whole ---------------
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
# Every dependency has a binary wheel, so no compiler is needed; if one ever does not, its
# build tools go in this stage and never reach the runtime image.
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime ------------------------------------------------------------------------------------
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN useradd --system --uid 10001 --no-create-home --home-dir /app app

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY . .

# Static files (admin, Swagger UI, the web client) are collected here and served by WhiteNoise.
# Build-time settings are the development defaults: no secret is needed to collect them.
RUN python manage.py collectstatic --noinput --verbosity 0

# Code and static files stay root-owned and read-only for the app user. With local attachment
# storage (ATTACHMENTS_STORAGE=local), files go to a volume mounted at /data/attachments, the one
# place the app user may write; Compose uses S3 (MinIO) instead.
RUN mkdir -p /data/attachments && chown app /data/attachments
ENV ATTACHMENTS_DIR=/data/attachments
VOLUME ["/data/attachments"]
USER app

EXPOSE 8000

# Liveness only (the process answers); Compose checks readiness (/readyz) itself. /healthz
# skips the host check and the HTTPS redirect, so this works whatever ALLOWED_HOSTS says.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# runtime.uvserve is uvicorn with a bounded per-socket send buffer (slow clients dropped), the
# 64 KiB frame cap, 431/413 JSON answers and query-free logs (runtime.serve is the same on
# daphne). -v 0 turns uvicorn's plain-text access log off: the app writes one JSON line per
# request and per socket open/close itself (ops/middleware.py, chats/consumers.py).
CMD ["python", "-m", "runtime.uvserve", "-b", "0.0.0.0", "-p", "8000", "-v", "0", "--websocket-max-message-size", "65536"]
