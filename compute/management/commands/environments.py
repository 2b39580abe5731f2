"""`manage.py environments`: the curated environments synced, and builds asked for."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compute.actions.environments import queue_build, sync_curated
from compute.enqueue import prune_environment_images
from compute.models import Environment


class Command(BaseCommand):
    help = (
        "sync: write the curated environments (compute/curated_environments.toml) to the "
        "database. build NAME: queue the build of a curated environment's latest version "
        "(a worker builds it; nothing happens when it is built or being built). prune: "
        "remove every environment image no live node or unfinished job uses (a worker does). "
        "adopt NAME --image TAG: a curated environment whose packages are exactly those of an "
        "image Docker has (make run's node image for python-minimal) takes it as its own: "
        "tagged, and marked built by a worker in a second, with no build."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["sync", "build", "prune", "adopt"])
        parser.add_argument("name", nargs="?", help="The curated environment (build, adopt).")
        parser.add_argument("--image", help="adopt: the Docker image it takes.")

    def handle(
        self, *args: object, action: str, name: str | None, image: str | None, **options: object
    ) -> None:
        if action == "prune":
            prune_environment_images(None)
            self.stdout.write("A worker removes the unused environment images (see its log).")
            return
        synced = sync_curated()
        if action == "sync":
            for environment in synced:
                self.stdout.write(f"{environment}: {environment.image.get_state_display()}")
            return
        latest = (
            Environment.objects.filter(workspace=None, name=name)
            .select_related("image")
            .order_by("-version")
            .first()
        )
        if latest is None:
            known = ", ".join(sorted({e.name for e in synced}))
            raise CommandError(f"No curated environment {name!r}; the site has: {known}.")
        if action == "adopt":
            self.adopt(latest, image or "")
        elif queue_build(latest.image):
            self.stdout.write(f"{latest}: build queued ({latest.image.tag}).")
        else:
            self.stdout.write(f"{latest}: {latest.image.get_state_display().lower()}.")

    def adopt(self, environment: Environment, source: str) -> None:
        """Tag `source` as the environment's image and queue its build: the worker finds the
        tag there and adopts it (compute/controllers/environments.py), as after a crash."""
        import docker

        if environment.debian_packages.strip() or environment.pip_requirements.strip():
            raise CommandError(
                f"{environment} adds packages to Debian and Python: no prebuilt image is "
                "known to hold them. Build it instead."
            )
        if environment.image.is_ready:
            self.stdout.write(f"{environment}: built.")
            return
        client = docker.from_env(timeout=60)
        try:
            client.images.get(source).tag(environment.image.tag)
        except docker.errors.ImageNotFound:
            raise CommandError(f"Docker has no image {source!r} to adopt.") from None
        queue_build(environment.image)
        self.stdout.write(f"{environment}: takes {source} as {environment.image.tag}.")
