from django.apps import AppConfig


class InferenceConfig(AppConfig):
    """Deploying trained models: registered models, endpoints and their deployments (the
    source document's inference targets). A Django app inside `compute`, with its layers."""

    name = "compute.inference"
    label = "inference"
    verbose_name = "Inference"
    default_auto_field = "django.db.models.BigAutoField"
