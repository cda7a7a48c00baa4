from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from registry import receivers  # it imports models, which load only once the app registry is ready

        receivers.connect(self)
