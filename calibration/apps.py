from django.apps import AppConfig


class CalibrationConfig(AppConfig):
    name = "calibration"
    verbose_name = "Calibration"

    def ready(self) -> None:
        # The disagreement sampling strategy reads judgments and human consensus, so this app adds
        # it to traffic's strategy registry.
        from . import sampling  # noqa: F401
