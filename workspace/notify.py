"""Tell a user something: an inbox notification (the bell) and an email with the same links."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction

from workspace.models import Notification, Workspace

log = logging.getLogger(__name__)


def absolute(url: str) -> str:
    return settings.HANGAR_BASE_URL.rstrip("/") + url if url.startswith("/") else url


def notify(
    user: User,
    *,
    title: str,
    body: str = "",
    url: str = "",
    actions: list[dict] | None = None,
    workspace: Workspace | None = None,
    email: bool = True,
    email_on_commit: bool = False,
) -> Notification:
    """Create the inbox entry; email it too when the user has an address.

    `email_on_commit` holds the email until the surrounding transaction commits, so a
    rolled-back change never sends mail about something that did not happen.
    """
    notification = Notification.objects.create(
        user=user, workspace=workspace, title=title, body=body, url=url, actions=actions or []
    )
    if email and user.email:
        lines = [body, ""] if body else []
        for action in actions or []:
            lines.append(f"{action['label']}: {absolute(action.get('email_url') or action['url'])}")
        if url:
            lines.append(f"Open in Hangar: {absolute(url)}")
        address = user.email

        def send() -> None:
            try:
                send_mail(title, "\n".join(lines), None, [address])
            except OSError:
                # The inbox has it; a mail server being down must not stop the sweep.
                log.exception("could not email %s about %r", address, title)

        if email_on_commit:
            transaction.on_commit(send)
        else:
            send()
    return notification
