from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app uses: the audit trail, the access policy, API and page base classes."""

    name = "core"
    verbose_name = "Audit trail"
