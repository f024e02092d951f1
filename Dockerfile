# The messenger app image: daphne serving HTTP + WebSocket on port 8000.
# Configuration comes from the environment (see .env.example); with DEBUG=false the
# app refuses to start without SECRET_KEY, ALLOWED_HOSTS and DATABASE_URL.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code changes do not reinstall them (all have binary wheels).
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# Build-time settings are the development defaults (no secrets needed to collect static).
# The collected files in /app/staticfiles are for a reverse proxy: daphne does not serve /static/.
RUN python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --no-create-home --home-dir /app app \
    && chown -R app:app /app/staticfiles

USER app

EXPOSE 8000

# The health check lives in docker-compose.yml, which knows ALLOWED_HOSTS.
# The frame cap matches run.sh (the consumer refuses frames over 64 KiB anyway).
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "--websocket-max-message-size", "65536", "messenger.asgi:application"]
