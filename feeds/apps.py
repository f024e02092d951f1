from django.apps import AppConfig


class FeedsConfig(AppConfig):
    name = "feeds"
    verbose_name = "Feeds (the read side of channels)"
    default_auto_field = "django.db.models.BigAutoField"
