"""The API's docs page: django-ninja's own Swagger UI files, served by Hangar.

Ninja serves its bundled files only with "ninja" in INSTALLED_APPS (else it links a
CDN); installing the app loads pydantic into every process at start, the Celery worker's
three included (11 MB each, for nothing). Its static folder is found without importing it
(config/settings.py) and the page is this project's template of ninja's own markup."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from ninja import NinjaAPI
from ninja.openapi.docs import Swagger


class LocalSwagger(Swagger):
    def render_page(self, request: HttpRequest, api: NinjaAPI, **kwargs: Any) -> HttpResponse:
        self.settings["url"] = self.get_openapi_url(api, kwargs)
        context = {
            "swagger_settings": json.dumps(self.settings, indent=1),
            "api": api,
            # The page's requests carry the session's CSRF token (ninja's init script).
            "add_csrf": True,
        }
        return render(request, "api/swagger.html", context)
