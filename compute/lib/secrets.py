"""Secrets (attached computes' credentials, secret environment variables), encrypted at
rest with MultiFernet.

Keys come from HANGAR_SECRET_KEYS, newest first: the newest encrypts, all decrypt, and
`manage.py rotate_secrets` re-encrypts every stored secret with the newest. Plaintext
never leaves this module except to what uses it: the SSH connection, and the process
environment a worker builds when it launches a job or a node.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.views.decorators.debug import sensitive_variables


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


# Secret environment variables (of a job, of an instance): stored as {NAME: token}, so the
# names stay readable for the pages while each value is encrypted on its own. Only the
# worker that launches the process calls `decrypt_variables`.


@sensitive_variables()
def encrypt_variables(variables: dict[str, str] | None) -> dict[str, str]:
    return {
        name: _fernet().encrypt(value.encode()).decode()
        for name, value in (variables or {}).items()
    }


@sensitive_variables()
def decrypt_variables(stored: dict[str, str] | None) -> dict[str, str]:
    """Raises SecretUnreadable (naming the variable, never its value) if a key is missing."""
    plain = {}
    for name, token in (stored or {}).items():
        try:
            plain[name] = _fernet().decrypt(str(token).encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(
                f"The secret variable {name} cannot be decrypted with the configured "
                "HANGAR_SECRET_KEYS (was a key removed before `manage.py rotate_secrets` ran?)."
            ) from None
    return plain


def rotate_variables(stored: dict[str, str] | None) -> dict[str, str]:
    return {name: rotate(str(token)) for name, token in (stored or {}).items()}
