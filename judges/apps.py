from django.apps import AppConfig


class JudgesConfig(AppConfig):
    name = "judges"
    verbose_name = "Judges"

    def ready(self) -> None:
        # The disagreement sampling strategy needs judgments, so this app adds it to traffic's registry.
        from . import sampling  # noqa: F401
