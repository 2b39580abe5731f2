"""Small helpers the compute views share."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from compute.models import Compute
from workspace.models import Notification


def add_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


def back(request: HttpRequest, compute: Compute) -> HttpResponse:
    """Where a one-click action from the inbox returns; acting on a notification reads it."""
    note = request.POST.get("notification", "")
    if note.isdigit():
        Notification.objects.filter(user=request.user, pk=int(note)).update(read_at=timezone.now())
    target = request.POST.get("next") or ""
    return redirect(target if target.startswith("/") and not target.startswith("//") else compute)
