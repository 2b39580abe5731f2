"""Re-encrypt every stored secret with the newest key of HANGAR_SECRET_KEYS."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from compute.inference.models import Endpoint
from compute.lib import secrets
from compute.models import Attachment, Compute, Job


class Command(BaseCommand):
    help = (
        "Re-encrypt stored secrets (credentials of attached computes, secret variables of "
        "jobs and instances, endpoint keys) with the newest HANGAR_SECRET_KEYS key. Put the "
        "new key first, keep the old ones after it, run this, then drop the old keys."
    )

    def handle(self, *args, **options) -> None:
        rotated = 0
        with transaction.atomic():
            for attachment in Attachment.objects.select_for_update().exclude(secret=""):
                try:
                    attachment.secret = secrets.rotate(attachment.secret)
                except Exception:  # InvalidToken: no configured key opens it
                    raise CommandError(
                        f"The secret of {attachment.compute} cannot be decrypted with any "
                        "configured key; nothing was changed."
                    ) from None
                attachment.save(update_fields=["secret"])
                rotated += 1
            for model in (Compute, Job):
                rows = model.objects.select_for_update().exclude(secret_environment={})
                for row in rows.only("pk", "name", "secret_environment"):
                    try:
                        stored = secrets.rotate_variables(row.secret_environment)
                    except Exception:  # InvalidToken; the message names no value
                        raise CommandError(
                            f"A secret variable of {model._meta.verbose_name} {row.name} "
                            f"(#{row.pk}) cannot be decrypted with any configured key; "
                            "nothing was changed."
                        ) from None
                    model.objects.filter(pk=row.pk).update(secret_environment=stored)
                    rotated += len(stored)
            for endpoint in Endpoint.objects.select_for_update().only(
                "pk", "name", "primary_key", "secondary_key"
            ):
                try:
                    keys = {
                        "primary_key": secrets.rotate(endpoint.primary_key),
                        "secondary_key": secrets.rotate(endpoint.secondary_key),
                    }
                except Exception:  # InvalidToken
                    raise CommandError(
                        f"A key of endpoint {endpoint.name} (#{endpoint.pk}) cannot be "
                        "decrypted with any configured key; nothing was changed."
                    ) from None
                Endpoint.objects.filter(pk=endpoint.pk).update(**keys)
                rotated += 2
        self.stdout.write(f"Rotated {rotated} secret(s) to the newest key.")
