"""Build the node images locally: Hangar never pulls from a registry."""

from __future__ import annotations

import time

import docker
from django.core.management.base import BaseCommand, CommandError

from compute.lib import images


class Command(BaseCommand):
    help = (
        "Build the default node image (Debian + Python 3 via mmdebstrap) or, with --tiny, "
        "a busybox-only image for tests, and import them into the local Docker engine."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--tiny", action="store_true", help="Build the busybox test image.")
        parser.add_argument("--tag", help="Image tag (default hangar/node:v2 or -tiny).")
        parser.add_argument(
            "--if-missing", action="store_true", help="Do nothing when the tag already exists."
        )

    def handle(self, *args, tiny: bool, tag: str | None, if_missing: bool, **options) -> None:
        tag = tag or (images.TINY_IMAGE if tiny else images.DEFAULT_IMAGE)
        try:
            client = docker.from_env(timeout=300)
            client.ping()
        except docker.errors.DockerException as exc:
            raise CommandError(f"No Docker engine answers: {exc}") from None
        if if_missing and images.image_exists(client, tag):
            self.stdout.write(f"{tag} is already built.")
            return
        started = time.monotonic()
        self.stdout.write(f"Building {tag} locally ({'busybox' if tiny else 'mmdebstrap'})…")
        try:
            image_id = (images.build_tiny if tiny else images.build_default)(client, tag)
        except images.ImageBuildError as exc:
            raise CommandError(str(exc)) from None
        elapsed = time.monotonic() - started
        self.stdout.write(self.style.SUCCESS(f"Built {tag} ({image_id[:19]}) in {elapsed:.1f} s."))
