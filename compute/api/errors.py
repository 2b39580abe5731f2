"""Every API error as `{"detail": "...", "errors": {"field": ["..."]}}` (errors only for
bad input), with the status a client can act on: 401, 403, 404, 409, 422, 429."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, Throttled
from ninja.errors import ValidationError as SchemaError

from compute.actions.errors import StateConflict

GENERAL = "__all__"
log = logging.getLogger(__name__)


def install(api: NinjaAPI) -> None:
    def reply(request: HttpRequest, status: int, detail: str, **extra: Any) -> HttpResponse:
        return api.create_response(request, {"detail": detail, **extra}, status=status)

    @api.exception_handler(Exception)
    def server_error(request: HttpRequest, exc: Exception) -> HttpResponse:
        # A script reads JSON, never the HTML error page; the traceback goes to the log.
        log.error("API error on %s %s", request.method, request.path, exc_info=exc)
        return reply(request, 500, "Server error: the request failed on Hangar's side.")

    @api.exception_handler(Http404)
    def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
        # The page's wording is for pages; an API says what was not found, and never
        # whether it exists elsewhere.
        return reply(request, 404, "Not found.")

    @api.exception_handler(PermissionDenied)
    def refused(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
        return reply(request, 403, str(exc) or "You may not do this.")

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        return reply(
            request,
            401,
            "Authentication required: send `Authorization: Bearer <token>` (a token from "
            "your profile's API tokens page) or sign in.",
        )

    @api.exception_handler(Throttled)
    def throttled(request: HttpRequest, exc: Throttled) -> HttpResponse:
        wait = max(1, int(exc.wait or 1))
        response = reply(request, 429, f"Too many requests: try again in {wait} s.")
        response["Retry-After"] = str(wait)
        return response

    @api.exception_handler(HttpError)
    def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return reply(request, exc.status_code, str(exc))

    @api.exception_handler(StateConflict)
    def conflict(request: HttpRequest, exc: StateConflict) -> HttpResponse:
        return reply(request, 409, first_message(exc))

    @api.exception_handler(DjangoValidationError)
    def invalid(request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
        return reply(request, 422, first_message(exc), errors=field_errors(exc))

    @api.exception_handler(SchemaError)
    def malformed(request: HttpRequest, exc: SchemaError) -> HttpResponse:
        errors: dict[str, list[str]] = {}
        for error in exc.errors:
            if "loc" not in error:  # ninja's own checks: {"cursor": "Invalid Cursor"}
                for field, message in error.items():
                    errors.setdefault(str(field), []).append(str(message))
                continue
            # ("body", "payload", "name") → "name"; ("query", "limit") → "limit"
            where = [str(part) for part in error["loc"] if part not in ("body", "payload")]
            field = where[-1] if where else GENERAL
            errors.setdefault(field, []).append(str(error.get("msg", "Invalid value.")))
        return reply(request, 422, "Invalid input.", errors=errors)


def field_errors(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {
            field: [message for error in errors for message in error.messages]
            for field, errors in exc.error_dict.items()
        }
    return {GENERAL: list(exc.messages)}


def first_message(exc: DjangoValidationError) -> str:
    messages = exc.messages
    return messages[0] if messages else "Invalid input."


def form_invalid(form: Any) -> DjangoValidationError:
    """A bound Django form's errors as the API's 422 (the pages' own messages)."""
    return DjangoValidationError({field: list(errors) for field, errors in form.errors.items()})
