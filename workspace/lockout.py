"""What a locked-out sign-in sees: the login page again, with the reason (django-axes calls
this as AXES_LOCKOUT_CALLABLE instead of answering with its bare lockout text)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def lockout_message() -> str:
    minutes = settings.HANGAR_LOGIN_COOLOFF_MINUTES
    return (
        "Too many failed sign-ins for this account from this address. Try again in "
        f"{minutes} minute{'s' if minutes != 1 else ''} or ask an admin to unlock it."
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The login page with the lockout message; 429 and Retry-After for scripts.

    Whatever the original response said (even a successful login's redirect, which axes
    prevents anyway) is dropped: a locked-out attempt learns nothing about the password."""
    username = (credentials or {}).get("username") or request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": str(username)[:150]})
    response = render(
        request,
        "registration/login.html",
        {
            "form": form,
            "locked_out": lockout_message(),
            "next": request.POST.get("next") or request.GET.get("next", ""),
        },
        status=429,
    )
    response["Retry-After"] = str(settings.HANGAR_LOGIN_COOLOFF_MINUTES * 60)
    return response
