"""Tell a user something: an inbox notification (the bell) and an email with the same links."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMessage, get_connection
from django.db import transaction

from workspace.models import Notification, Workspace

log = logging.getLogger(__name__)


def absolute(url: str) -> str:
    return settings.HANGAR_BASE_URL.rstrip("/") + url if url.startswith("/") else url


@dataclass
class Notice:
    """One notification to write (`notify_many`), with what its email needs.

    `email_on_commit` holds the email until the surrounding transaction commits, so a
    rolled-back change never sends mail about something that did not happen."""

    user: User
    title: str
    body: str = ""
    url: str = ""
    actions: list[dict] = field(default_factory=list)
    workspace: Workspace | None = None
    email: bool = True
    email_on_commit: bool = False


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
    """Create the inbox entry; email it too when the user has an address."""
    notice = Notice(
        user=user,
        title=title,
        body=body,
        url=url,
        actions=actions or [],
        workspace=workspace,
        email=email,
        email_on_commit=email_on_commit,
    )
    return notify_many([notice])[0]


def notify_many(notices: Sequence[Notice]) -> list[Notification]:
    """What `notify` does, for many notices at once: one INSERT (`write_notifications`),
    then the emails (`email`)."""
    created = write_notifications(notices)
    email(notices)
    return created


def write_notifications(notices: Sequence[Notice]) -> list[Notification]:
    """The inbox entries of all the notices in one INSERT (none: no query), no email.
    For a caller that writes them with its change and emails once that has committed."""
    if not notices:
        return []
    return Notification.objects.bulk_create(
        Notification(
            user=notice.user,
            workspace=notice.workspace,
            title=notice.title,
            body=notice.body,
            url=notice.url,
            actions=notice.actions,
        )
        for notice in notices
    )


def email(notices: Sequence[Notice]) -> None:
    """Email each notice whose user has an address: now, or when the surrounding
    transaction commits for those that ask (one connection for each batch)."""
    emailed = [notice for notice in notices if notice.email and notice.user.email]
    now = [email_of(notice) for notice in emailed if not notice.email_on_commit]
    later = [email_of(notice) for notice in emailed if notice.email_on_commit]
    send_all(now)
    if later:
        transaction.on_commit(lambda: send_all(later))


def email_stored(notification_ids: Sequence[int]) -> int:
    """Email the inbox entries `notification_ids` (in that order) to those of their users
    with an address: for a caller that wrote many and left their emails to a task (the
    idle sweep: 300 emails took a quarter of a busy sweep here, and a mail server's round
    trips would take seconds of its one-second period). Returns how many were sent."""
    stored = Notification.objects.select_related("user").in_bulk(notification_ids)
    messages = [
        email_of(notification)
        for pk in notification_ids
        if (notification := stored.get(pk)) is not None and notification.user.email
    ]
    send_all(messages)
    return len(messages)


def email_of(notice: Notice | Notification) -> EmailMessage:
    lines = [notice.body, ""] if notice.body else []
    for action in notice.actions:
        lines.append(f"{action['label']}: {absolute(action.get('email_url') or action['url'])}")
    if notice.url:
        lines.append(f"Open in Hangar: {absolute(notice.url)}")
    return EmailMessage(notice.title, "\n".join(lines), None, [notice.user.email])


def send_all(messages: list[EmailMessage]) -> None:
    """Send each message on one connection. The inbox has them all: a mail server that is
    down, or refuses one message, must not stop the sweep or the other messages."""
    if not messages:
        return
    try:
        with get_connection() as connection:
            for message in messages:
                try:
                    connection.send_messages([message])
                except OSError:
                    log.exception("could not email %s about %r", message.to, message.subject)
    except OSError:
        log.exception("could not reach the mail server for %d email(s)", len(messages))
