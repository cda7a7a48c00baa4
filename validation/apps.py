from django.apps import AppConfig


class ValidationConfig(AppConfig):
    name = "validation"
    verbose_name = "Validation"

    def ready(self) -> None:
        from validation import receivers  # it imports models, which load only once the app registry is ready

        receivers.connect()
