from django.apps import AppConfig


class SageConfig(AppConfig):
    name = "sage"
    verbose_name = "SAGE system"
