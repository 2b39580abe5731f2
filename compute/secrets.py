"""Secrets of attached computes, encrypted at rest with MultiFernet.

Keys come from HANGAR_SECRET_KEYS, newest first: the newest encrypts, all decrypt, and
`manage.py rotate_secrets` re-encrypts every stored secret with the newest. Plaintext
never leaves this module except to the SSH connection that uses it.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """None of the configured keys decrypts this secret (a key was dropped too early)."""


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in settings.HANGAR_SECRET_KEYS])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode() if plaintext else ""


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "The stored secret cannot be decrypted with the configured HANGAR_SECRET_KEYS "
            "(was a key removed before `manage.py rotate_secrets` ran?). Enter it again."
        ) from None


def rotate(token: str) -> str:
    """The same secret under the newest key."""
    return _fernet().rotate(token.encode()).decode() if token else ""
