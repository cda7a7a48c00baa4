from django.apps import AppConfig


class CoreConfig(AppConfig):
    """What every app uses: the audit trail, the access policy, API and page base classes, API tokens."""

    name = "core"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from core import receivers  # it imports models, which load only once the app registry is ready

        receivers.connect(self)
