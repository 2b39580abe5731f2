"""Tell a user something: an inbox notification (the bell) and an email with the same links."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import send_mail

from workspace.models import Notification, Workspace

log = logging.getLogger(__name__)


def absolute(url: str) -> str:
    return settings.HANGAR_BASE_URL.rstrip("/") + url if url.startswith("/") else url


def notify(
    user: AbstractBaseUser,
    *,
    title: str,
    body: str = "",
    url: str = "",
    actions: list[dict] | None = None,
    workspace: Workspace | None = None,
    email: bool = True,
) -> Notification:
    notification = Notification.objects.create(
        user=user, workspace=workspace, title=title, body=body, url=url, actions=actions or []
    )
    if email and user.email:
        lines = [body, ""] if body else []
        for action in actions or []:
            lines.append(f"{action['label']}: {absolute(action.get('email_url') or action['url'])}")
        if url:
            lines.append(f"Open in Hangar: {absolute(url)}")
        try:
            send_mail(title, "\n".join(lines), None, [user.email])
        except OSError:
            # The inbox has it; a mail server being down must not stop the sweep.
            log.exception("could not email %s about %r", user.email, title)
    return notification
