"""What actions raise besides plain `ValidationError`."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class StateConflict(ValidationError):
    """The request is well formed but the object's state refuses it now ("is stopped;
    start it first"). Pages show it as any error; the API answers 409."""
