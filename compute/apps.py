from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ComputeConfig(AppConfig):
    name = "compute"
    verbose_name = "Compute"

    def ready(self) -> None:
        post_migrate.connect(sync_curated_environments, sender=self)


def sync_curated_environments(**_: object) -> None:
    """The site's curated environments (compute/curated_environments.toml) after every
    migrate: a fresh database has them, a changed entry gets its next version."""
    from compute.actions.environments import sync_curated

    sync_curated()
