"""Django settings for the Channels floor: Channels + channels-redis and nothing else."""

import os

SECRET_KEY = "bench-floor-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
DATABASES = {}
USE_TZ = True
ASGI_APPLICATION = "bench.servers.floor_asgi.application"
_BACKENDS = {
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "core": "channels_redis.core.RedisChannelLayer",
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _BACKENDS[os.environ.get("FLOOR_LAYER", "pubsub")],
        "CONFIG": {
            "hosts": [os.environ["REDIS_URL"]],
            "prefix": os.environ.get("CHANNEL_PREFIX", "bench-floor"),
        },
    }
}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
