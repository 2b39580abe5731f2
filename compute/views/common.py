"""Small helpers the compute views share."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from compute.models import Compute
from workspace.access import AuthedRequest
from workspace.models import Notification
from workspace.redirects import local_target


def add_errors(form, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


def back(request: AuthedRequest, compute: Compute) -> HttpResponse:
    """Where a one-click action from the inbox returns; acting on a notification reads it."""
    note = request.POST.get("notification", "")
    if note.isdigit():
        Notification.objects.filter(user=request.user, pk=int(note)).update(read_at=timezone.now())
    return redirect(local_target(request, request.POST.get("next", ""), compute.get_absolute_url()))
