"""Settings for messenger: one module, driven by environment variables.

The database is PostgreSQL, always: ``DATABASE_URL`` names it (./run.sh and ./test.sh
start an embedded one when it is unset, see scripts/devservices.py). Without ``REDIS_URL``
the channel layer and cache are in-memory (one process). With ``DEBUG=false`` the process
refuses to start without ``SECRET_KEY``, ``ALLOWED_HOSTS`` and ``DATABASE_URL``.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
DATABASE_URL = os.environ.get("DATABASE_URL", "")
REDIS_URL = os.environ.get("REDIS_URL", "")

if not DEBUG:
    missing = [name for name in ("SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL") if not os.environ.get(name)]
    if missing:
        raise ImproperlyConfigured(
            "Production settings (DEBUG=false) need these environment variables: " + ", ".join(missing)
        )
if not SECRET_KEY:
    # Development only: a fixed, obviously insecure key.
    SECRET_KEY = "dev-insecure-secret-key-change-me-0123456789-abcdefghijklmnopqrstuvwxyz"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
# Origins (scheme://host[:port]) whose unsafe requests pass Django's CSRF origin check besides the
# request's own host, e.g. the public https origin when a TLS proxy in front rewrites the scheme.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Addresses or CIDR networks of reverse proxies whose X-Forwarded-For is believed (ops/client_ip.py):
# the client is the right-most address in it that is not one of these. Empty: the connecting address.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {_proxy!r} is not an address or CIDR network") from None

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "attachments",
    "chats",
    "feeds",
    "webclient",
    # Generic infrastructure: the transactional outbox, its relay, the worker and handlers.
    "outbox",
]
# Development tools (the bench data loader, devtools/__init__.py): present in a checkout,
# left out of the production image by .dockerignore, installed exactly when present.
if (BASE_DIR / "devtools" / "__init__.py").is_file():
    INSTALLED_APPS.append("devtools")

MIDDLEWARE = [
    # First: request id, one log line and the HTTP metrics per request (ops/middleware.py).
    "ops.middleware.RequestLogMiddleware",
    # /healthz and /readyz, before the host check and the HTTPS redirect (ops/health.py).
    "ops.health.HealthCheckMiddleware",
    # X-Forwarded-Proto only from TRUSTED_PROXIES, before anything asks request.is_secure().
    "ops.middleware.ProxyHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # daphne serves no static files; WhiteNoise serves Swagger UI's, the admin's and the client's.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "messenger.urls"
ASGI_APPLICATION = "messenger.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------
# PostgreSQL only. Persistent connections: each database thread keeps its connection (and its
# prepared statements); health checks replace one that died (database restart) before use.
if DATABASE_URL:
    DATABASES = {
        "default": dj_database_url.parse(
            DATABASE_URL, conn_max_age=env_int("CONN_MAX_AGE", 300), conn_health_checks=True
        )
    }
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        scheme = DATABASE_URL.split(":", 1)[0]
        raise ImproperlyConfigured(f"DATABASE_URL must name a PostgreSQL database (postgres://...), not {scheme}:")
    # Plan statements (runtime/plans.py) run prepared: PostgreSQL plans each once per connection.
    # Django turns psycopg's preparing off (None) for transaction-mode poolers; its own cursors bind
    # client-side and are never prepared either way, so this only affects our statements. A pooler
    # in front must therefore run in session mode.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5
elif sys.argv[1:2] == ["collectstatic"]:
    # The one command that needs no database (the image build runs it): Django's dummy backend.
    DATABASES = {"default": {"ENGINE": "django.db.backends.dummy"}}
else:
    raise ImproperlyConfigured(
        "DATABASE_URL is not set. messenger runs on PostgreSQL only: ./run.sh and ./test.sh start an "
        "embedded one when it is unset (scripts/devservices.py), or set DATABASE_URL=postgres://user@host:5432/db"
    )

if os.environ.get("TEST_DATABASE_NAME"):
    # Lets parallel test runs on one PostgreSQL server use separate test databases.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}

# --- Channel layer and cache ----------------------------------------------------
# The channel layer's Redis shards (default: REDIS_URL alone); keys and channels spread over them
# by a stable hash, so every process must list the same URLs in the same order.
CHANNEL_LAYER_REDIS_URLS = env_list("CHANNEL_LAYER_REDIS_URLS", [REDIS_URL] if REDIS_URL else [])
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis' pub/sub layer, one publish per event and target process (see runtime/layers.py).
            "BACKEND": "runtime.layers.FanoutChannelLayer",
            "CONFIG": {
                "hosts": CHANNEL_LAYER_REDIS_URLS,
                "prefix": os.environ.get("CHANNEL_PREFIX", "messenger"),
                # off: every process subscribes one fan-out channel and parses every event.
                "routing": env_bool("CHANNEL_LAYER_ROUTING", True),
                "heartbeat_interval": env_float("CHANNEL_LAYER_HEARTBEAT_SECONDS", 5.0),
                "process_ttl": env_float("CHANNEL_LAYER_PROCESS_TTL_SECONDS", 15.0),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "runtime.cache.ReusingRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_PREFIX", "messenger"),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Outbox, broker and worker (outbox/, docs/ARCHITECTURE.md "Commands, events and the outbox")
# Unset: the embedded default, "inline": each server process (and run_worker) runs the handlers
# from the outbox table itself. amqp://...: RabbitMQ through dramatiq; run_worker publishes the
# outbox to it and consumes it.
BROKER_URL = os.environ.get("BROKER_URL", "").strip()
if BROKER_URL and not BROKER_URL.startswith(("amqp://", "amqps://")):
    raise ImproperlyConfigured("BROKER_URL must be an amqp:// or amqps:// URL (RabbitMQ), or unset.")
# Prefix of the RabbitMQ queue names ("<prefix>.outbox", its .DQ and .XQ): deployments (and test
# runs) sharing one RabbitMQ need different ones.
BROKER_QUEUE_PREFIX = os.environ.get("BROKER_QUEUE_PREFIX", "messenger").strip() or "messenger"
# A failing handler is retried this many times (so runs at most 1 + this), with exponential
# backoff from MIN to MAX milliseconds (jittered), then parked as a dead letter.
OUTBOX_MAX_RETRIES = env_int("OUTBOX_MAX_RETRIES", 5)
OUTBOX_MIN_BACKOFF_MS = env_int("OUTBOX_MIN_BACKOFF_MS", 1000)
OUTBOX_MAX_BACKOFF_MS = env_int("OUTBOX_MAX_BACKOFF_MS", 300_000)
# Rows one relay claims per transaction, and how long it waits for a NOTIFY before polling anyway.
OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 100)
OUTBOX_POLL_MS = env_int("OUTBOX_POLL_MS", 1000)
# Days the (handler, event) marks are kept that make a second delivery a no-op: longer than any
# dead letter waits for a replay (RabbitMQ keeps them 7 days; dead inline rows keep theirs).
OUTBOX_PROCESSED_RETENTION_DAYS = env_int("OUTBOX_PROCESSED_RETENTION_DAYS", 30)
# Inline transport only: whether server processes (python -m runtime.serve, daphne) run the relay.
OUTBOX_SERVER_RELAY = env_bool("OUTBOX_SERVER_RELAY", True)
# Modules imported for their @outbox.handler registrations besides every app's handlers module
# (tests name their sample handlers here, so worker subprocesses register them too).
OUTBOX_EXTRA_HANDLERS = env_list("OUTBOX_EXTRA_HANDLERS", [])
# run_worker: handler threads, and the port of its Prometheus metrics (0: none).
WORKER_THREADS = env_int("WORKER_THREADS", 4)
WORKER_METRICS_PORT = env_int("WORKER_METRICS_PORT", 9100)
if min(OUTBOX_MAX_RETRIES, OUTBOX_MIN_BACKOFF_MS, OUTBOX_BATCH_SIZE - 1, OUTBOX_POLL_MS - 1, WORKER_THREADS - 1) < 0:
    raise ImproperlyConfigured("OUTBOX_* and WORKER_THREADS must be positive (OUTBOX_MAX_RETRIES may be 0).")
if OUTBOX_MAX_BACKOFF_MS < OUTBOX_MIN_BACKOFF_MS:
    raise ImproperlyConfigured("OUTBOX_MAX_BACKOFF_MS must be at least OUTBOX_MIN_BACKOFF_MS.")

# --- Auth -----------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if env_bool("FAST_PASSWORD_HASHER", False):
    # Tests and load seeding only: PBKDF2 at full strength costs ~0.3 s per hash.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

ACCESS_TOKEN_MINUTES = env_int("ACCESS_TOKEN_MINUTES", 15)
REFRESH_TOKEN_DAYS = env_int("REFRESH_TOKEN_DAYS", 7)

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(minutes=ACCESS_TOKEN_MINUTES),
    "REFRESH_TOKEN_LIFETIME": timedelta(days=REFRESH_TOKEN_DAYS),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "SIGNING_KEY": SECRET_KEY,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.SessionJWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Client JSON in and out (ops/jsonio.py): nesting depth, lone surrogates and the upload
    # limit checked by the parser the socket frames use too; a renderer that encodes any string.
    "DEFAULT_RENDERER_CLASSES": ["ops.jsonio.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["ops.jsonio.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ops.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "messenger API",
    "DESCRIPTION": "REST half of the messenger contract. The WebSocket half is in docs/PROTOCOL.md.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChatKindEnum": "chats.models.Chat.Kind",
        "MessageKindEnum": "chats.models.Message.Kind",
        "MemberRoleEnum": "chats.models.Membership.Role",
        "WhoCanAddMeEnum": "accounts.models.User.WhoCanAddMe",
        "AttachmentKindEnum": "attachments.serializers.KINDS",
        "NewChatKindEnum": ["direct", "group"],
    },
}

# --- Messenger limits --------------------------------------------------------------
MESSAGE_MAX_LENGTH = 4096
GROUP_MAX_MEMBERS = env_int("GROUP_MAX_MEMBERS", 10_000)
# Per-user message sends per window, shared across processes through the cache (Redis).
SEND_RATE_LIMIT = env_int("SEND_RATE_LIMIT", 50)
SEND_RATE_WINDOW_SECONDS = env_int("SEND_RATE_WINDOW_SECONDS", 1)
# Per-user chat changes (group creation, direct chats, renames, member adds and removals) per
# window, and groups created per user per UTC day; shared the same way (chats/services/limits.py).
CHAT_CHANGE_RATE_LIMIT = env_int("CHAT_CHANGE_RATE_LIMIT", 30)
CHAT_CHANGE_RATE_WINDOW_SECONDS = env_int("CHAT_CHANGE_RATE_WINDOW_SECONDS", 60)
GROUP_CREATE_DAILY_LIMIT = env_int("GROUP_CREATE_DAILY_LIMIT", 50)
TYPING_THROTTLE_SECONDS = 3
# chat.read_all of a chat goes out at most once per this many milliseconds per process: the first
# advance at once, later ones within the window as one event with the latest value at its end
# (runtime/coalesce.py, docs/PROTOCOL.md §4). 0: every advance is sent.
READ_ALL_COALESCE_MS = env_int("READ_ALL_COALESCE_MS", 100)
if READ_ALL_COALESCE_MS < 0:
    raise ImproperlyConfigured("READ_ALL_COALESCE_MS must be 0 (off) or a positive number of milliseconds.")
# Messages that change (chats/services/changes.py): the sender may edit for this long (0: forever);
# per-user edits, deletes, reaction changes and pins per window, shared like the send limit.
EDIT_WINDOW_HOURS = env_int("EDIT_WINDOW_HOURS", 48)
MESSAGE_CHANGE_RATE_LIMIT = env_int("MESSAGE_CHANGE_RATE_LIMIT", 120)
MESSAGE_CHANGE_RATE_WINDOW_SECONDS = env_int("MESSAGE_CHANGE_RATE_WINDOW_SECONDS", 60)
# Async PostgreSQL connections per process (runtime/async_db.py) on which sockets run their
# commands and handshakes from the event loop.
DB_POOL_SIZE = env_int("DB_POOL_SIZE", 8)
# Group commit of socket sends (runtime/async_db.py, fetch_grouped): sends that arrive while
# earlier ones are being written go to PostgreSQL together, one transaction and one commit.
DB_GROUP_COMMIT = env_bool("DB_GROUP_COMMIT", True)
# Long-lived threads running HTTP requests per process, each keeping its database connection
# (runtime/http.py); more concurrent requests wait for one.
HTTP_THREADS = env_int("HTTP_THREADS", 8)
# Cyclic GC of the server process (runtime/gctune.py, applied by runtime.serve): freeze what
# is loaded at startup, and collect less often than CPython's 700,10,10.
GC_FREEZE = env_bool("GC_FREEZE", True)
try:
    GC_THRESHOLDS = tuple(int(n) for n in env_list("GC_THRESHOLDS", ["700", "10", "100"]))
except ValueError:
    GC_THRESHOLDS = ()
if len(GC_THRESHOLDS) != 3 or min(GC_THRESHOLDS) < 1:
    raise ImproperlyConfigured("GC_THRESHOLDS must be three positive integers, e.g. 700,10,100")
# Login, refresh and registration attempts per client address ("N/sec|min|hour|day"); empty disables.
AUTH_THROTTLE_RATE = os.environ.get("AUTH_THROTTLE_RATE", "30/min")
# Failed logins per account (accounts/throttles.py), shared across processes: after
# LOGIN_BACKOFF_AFTER failures of one (username, address) pair each further failure doubles its
# wait (1 s, 2 s, ... at most LOGIN_BACKOFF_MAX_SECONDS); and at most LOGIN_ACCOUNT_FAILURES per
# LOGIN_ACCOUNT_WINDOW_SECONDS per username from addresses that never logged in to it. 0 disables.
LOGIN_BACKOFF_AFTER = env_int("LOGIN_BACKOFF_AFTER", 5)
LOGIN_BACKOFF_MAX_SECONDS = env_int("LOGIN_BACKOFF_MAX_SECONDS", 60)
LOGIN_ACCOUNT_FAILURES = env_int("LOGIN_ACCOUNT_FAILURES", 20)
LOGIN_ACCOUNT_WINDOW_SECONDS = env_int("LOGIN_ACCOUNT_WINDOW_SECONDS", 900)
# A rotated refresh token presented again revokes its session (accounts/tokens.py), unless within
# this many seconds of its rotation: parallel refreshes of one token by the same client.
REFRESH_REUSE_GRACE_SECONDS = 5
# Single sign-on with an external OpenID Connect provider (accounts/oidc.py). Enabled when issuer,
# client id and client secret are all set; the provider is found by discovery at
# <OIDC_ISSUER>/.well-known/openid-configuration. OIDC_REDIRECT_URI overrides the callback URL the
# provider is told (default: this request's own origin + /api/auth/sso/callback).
OIDC_ISSUER = os.environ.get("OIDC_ISSUER", "").strip()
OIDC_CLIENT_ID = os.environ.get("OIDC_CLIENT_ID", "").strip()
OIDC_CLIENT_SECRET = os.environ.get("OIDC_CLIENT_SECRET", "").strip()
OIDC_PROVIDER_NAME = os.environ.get("OIDC_PROVIDER_NAME", "").strip() or "SSO"
OIDC_SCOPES = os.environ.get("OIDC_SCOPES", "").strip() or "openid email profile"
OIDC_REDIRECT_URI = os.environ.get("OIDC_REDIRECT_URI", "").strip()
if any((OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET)) and not all(
    (OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET)
):
    raise ImproperlyConfigured("SSO needs all of OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or none).")
if OIDC_ISSUER and "openid" not in OIDC_SCOPES.split():
    raise ImproperlyConfigured("OIDC_SCOPES must include openid.")
# The one-time code the SSO callback hands the web client lives this long (seconds).
SSO_LOGIN_CODE_SECONDS = 60
# WebSocket handshakes per user and per client address per window, across processes; 0 disables.
SOCKET_CONNECTS_PER_USER = env_int("SOCKET_CONNECTS_PER_USER", 30)
SOCKET_CONNECTS_PER_ADDRESS = env_int("SOCKET_CONNECTS_PER_ADDRESS", 300)
SOCKET_CONNECT_WINDOW_SECONDS = env_int("SOCKET_CONNECT_WINDOW_SECONDS", 60)

# --- Operations ------------------------------------------------------------------------
# /metrics is open with DEBUG; otherwise it needs "Authorization: Bearer $METRICS_TOKEN" or a
# client address (ops/client_ip.py; addresses or CIDR networks) in METRICS_ALLOWED_IPS.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
# "json" (one JSON object per line) or "console" (aligned key=value lines); see ops/logs.py.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip().lower() or ("console" if DEBUG else "json")

# --- i18n, static -------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Development serves straight from the apps' static folders; production from collectstatic.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Attachments (attachments/, docs/PROTOCOL.md "Files") ---------------------------------------
# Where blobs live: "local" (the filesystem under ATTACHMENTS_DIR, the embedded default) or "s3"
# (any S3-compatible store through django-storages, configured by the AWS_* variables below).
ATTACHMENTS_STORAGE = os.environ.get("ATTACHMENTS_STORAGE", "local").strip().lower()
if ATTACHMENTS_STORAGE not in ("local", "s3"):
    raise ImproperlyConfigured("ATTACHMENTS_STORAGE must be 'local' or 's3'.")
ATTACHMENTS_DIR = Path(os.environ.get("ATTACHMENTS_DIR") or BASE_DIR / ".data" / "attachments")
_attachments_storage = (
    {
        "BACKEND": "attachments.storage.PublicS3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("AWS_STORAGE_BUCKET_NAME", "messenger-attachments"),
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            # Where browsers reach the store, if not where the app does (Compose: through nginx).
            "public_endpoint_url": os.environ.get("AWS_S3_PUBLIC_ENDPOINT_URL") or None,
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "access_key": os.environ.get("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,
            "querystring_auth": True,
            "querystring_expire": env_int("FILE_URL_MAX_AGE_SECONDS", 3600),
            "file_overwrite": False,
            "default_acl": None,
        },
    }
    if ATTACHMENTS_STORAGE == "s3"
    else {"BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": ATTACHMENTS_DIR}}
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "attachments": _attachments_storage,
}
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
UPLOAD_QUOTA_BYTES = env_int("UPLOAD_QUOTA_BYTES", 2 * 1024**3)  # per user; 0 = none
UPLOAD_RATE_LIMIT = env_int("UPLOAD_RATE_LIMIT", 30)
UPLOAD_RATE_WINDOW_SECONDS = env_int("UPLOAD_RATE_WINDOW_SECONDS", 60)
UPLOAD_UNATTACHED_HOURS = env_int("UPLOAD_UNATTACHED_HOURS", 24)
FILE_URL_MAX_AGE_SECONDS = max(60, env_int("FILE_URL_MAX_AGE_SECONDS", 3600))
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 50_000_000)
ATTACHMENTS_PER_MESSAGE = 10

# A REST command's Idempotency-Key is remembered this long (chats.idempotency).
IDEMPOTENCY_KEY_HOURS = env_int("IDEMPOTENCY_KEY_HOURS", 24)

# --- Feeds (feeds/: the read side of channels) ---------------------------------------------------
# Channels with at most this many subscribers fan out on write (a user_feed row per subscriber
# and post); bigger ones are merged into their subscribers' feeds at read time.
FEED_FANOUT_MAX = env_int("FEED_FANOUT_MAX", 10_000)
# How long a cached first feed page or a large channel's latest posts may live (handlers drop
# them when they change; this bounds a lost drop).
FEED_CACHE_SECONDS = env_int("FEED_CACHE_SECONDS", 60)
# A channel's subscribers' sockets hear channel.post at most once per this many seconds.
CHANNEL_NOTIFY_SECONDS = env_int("CHANNEL_NOTIFY_SECONDS", 5)
# The popular posts: the most liked posts of public channels over this many hours, ranked again
# by the worker at most once per POPULAR_REFRESH_SECONDS.
POPULAR_HOURS = env_int("POPULAR_HOURS", 24)
POPULAR_REFRESH_SECONDS = env_int("POPULAR_REFRESH_SECONDS", 5)
# A request body past this many bytes is spooled to disk by Django's ASGI handler (0 would mean
# never); the upload view's handler writes the file part to disk from its first byte.
FILE_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
FILE_UPLOAD_TEMP_DIR = os.environ.get("FILE_UPLOAD_TEMP_DIR") or None

# --- Logging --------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"structured": {"()": "ops.logs.build_formatter", "style": LOG_FORMAT}},
    # Tokens never reach a log line; the filter is the net under third-party lines (see ops/logsafe.py).
    "filters": {
        "redact_secrets": {"()": "ops.logsafe.RedactSecrets"},
        "request_id": {"()": "ops.logs.RequestIdFilter"},
        "client_refusals": {"()": "ops.logs.ClientRefusalFilter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "structured",
            "filters": ["redact_secrets", "request_id", "client_refusals"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's default config gives "django" its own console handler; everything goes
        # through the root handler instead, so no line is printed twice.
        "django": {"handlers": [], "propagate": True},
        # Its SQL parameters include stored refresh tokens; redacted on the record itself.
        "django.db.backends": {"filters": ["redact_secrets"]},
        # pika logs every connection step at INFO; its warnings and errors are what matter.
        "pika": {"level": "WARNING"},
    },
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # Scrapers reach each replica directly over the internal network, without TLS.
    SECURE_REDIRECT_EXEMPT = [r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
