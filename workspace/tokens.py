"""Personal access tokens: make one (shown once), find the one a request carries, revoke.

A token reads `hgr_<prefix>_<secret>`. The prefix (8 hex characters) finds the row; the
SHA-256 of the whole token is compared in constant time. Neither the token nor its
digest is ever logged: the prefix names it in lists and messages."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from workspace.models import AccessToken, Workspace

SCHEME = "hgr"
# A token's last use is written at most this often (a script calling in a loop must not
# write the row on every request).
LAST_USE_RESOLUTION = timedelta(minutes=1)
MAX_TOKENS_PER_USER = 50


@dataclass(frozen=True)
class NewToken:
    token: AccessToken
    secret: str  # the whole token, to show once


def digest_of(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# An error report (mail to ADMINS, the debug page) lists each frame's variables: these
# hold the whole token in clear.
@sensitive_variables("secret")
def create_token(
    user: User,
    *,
    name: str,
    expires_in_days: int | None,
    workspace: Workspace | None = None,
    read_only: bool = False,
    now: datetime | None = None,
) -> NewToken:
    now = now or timezone.now()
    name = " ".join(name.split())
    if not name:
        raise ValidationError({"name": "Name the token (what uses it, e.g. “laptop CLI”)."})
    if expires_in_days is not None and not 1 <= expires_in_days <= 366:
        raise ValidationError({"expires_in_days": "A token lasts 1 to 366 days, or never expires."})
    if workspace is not None and not workspace.memberships.filter(user=user).exists():
        raise ValidationError({"workspace": "You are not a member of that workspace."})
    with transaction.atomic():
        # The user's row, locked: two tabs at the limit make one token, not two.
        User.objects.select_for_update().filter(pk=user.pk).first()
        live = AccessToken.objects.filter(user=user, revoked_at__isnull=True)
        if live.count() >= MAX_TOKENS_PER_USER:
            raise ValidationError(
                f"You have {MAX_TOKENS_PER_USER} tokens; revoke one you no longer use first."
            )
        prefix = secrets.token_hex(4)
        secret = f"{SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
        token = AccessToken.objects.create(
            user=user,
            name=name[:80],
            prefix=prefix,
            digest=digest_of(secret),
            workspace=workspace,
            read_only=read_only,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
    return NewToken(token, secret)


@sensitive_variables("secret")
def token_for(secret: str, now: datetime | None = None) -> AccessToken | None:
    """The live token `secret` is, with its user, or None (unknown, revoked, expired, or
    its user deactivated)."""
    scheme, _, rest = secret.partition("_")
    prefix, _, _ = rest.partition("_")
    if scheme != SCHEME or len(prefix) != 8:
        return None
    token = (
        AccessToken.objects.select_related("user", "workspace")
        .filter(prefix=prefix, revoked_at__isnull=True)
        .first()
    )
    if token is None or not hmac.compare_digest(token.digest, digest_of(secret)):
        return None
    now = now or timezone.now()
    if (token.expires_at and token.expires_at <= now) or not token.user.is_active:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USE_RESOLUTION:
        AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def revoke_token(user: User, token_id: int, now: datetime | None = None) -> AccessToken:
    """Revoke one of the user's own tokens; effective on the next request."""
    token = AccessToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise ValidationError("This token does not exist.")
    if token.revoked_at is None:
        AccessToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now or timezone.now()
        )
        token.refresh_from_db()
    return token
