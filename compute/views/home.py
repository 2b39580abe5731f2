"""The home page (`/`): what is the signed-in user's and what is running, across every
workspace they are a member of. Live: the sections are one fragment htmx polls."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from compute.selectors import home_for
from workspace.views.htmx import render_htmx

POLL_SECONDS = 3


def home(request: HttpRequest) -> HttpResponse:
    if not isinstance(request.user, User) or not request.user.is_authenticated:
        return redirect("login")
    return render_htmx(
        request,
        "compute/home.html",
        {"nav": "home", "home": home_for(request.user, timezone.now()), "poll": POLL_SECONDS},
        partial="home-live",
    )
