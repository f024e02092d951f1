from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Development-only app: installed when the package is present (see the package docstring)."""

    name = "devtools"
    verbose_name = "Development tools"
