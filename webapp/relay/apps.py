from django.apps import AppConfig


class RelayConfig(AppConfig):
    name = "webapp.relay"
    label = "relay"
    verbose_name = "Veilpost relay"
    default_auto_field = "django.db.models.BigAutoField"
