"""Refuses uploads over HANGAR_CODE_LIMIT_MB (HANGAR_MODEL_LIMIT_MB for a registered
model's) while the request is parsed, not after.

Django's own handlers would otherwise take the whole file (into memory, then a temporary
file) before any form sees its size. This handler runs first (FILE_UPLOAD_HANDLERS): a body
declared larger than the limit is refused before its file is read; a file that grows past
the limit while streaming is dropped at that chunk. The rest of the body is drained, never
kept, so the page can answer with a form error instead of a reset connection.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload
from django.http import HttpRequest
from django.urls import Resolver404, resolve

MAX_NAME_CHARS = 200  # Job.code_name, and well within one file name on disk
# Files in one request (Django's DATA_UPLOAD_MAX_NUMBER_FILES is off: past it Django answers
# a bare 400, where this handler lets the form say why). More go in a zip of a folder.
MAX_FILES = 100
# Form fields besides the file: the command and environment are small, and a script
# together with an upload is refused anyway.
FIELDS_ALLOWANCE = 1024 * 1024


# URLs whose upload is a model or batch scoring inputs, not job code (the URL is resolved
# before the CSRF check parses the body, so the handler knows which cap applies). The API's
# uploads share their URL with a list, whose name the resolver gives.
MODEL_UPLOAD_VIEWS = frozenset(
    {"inference:model-create", "api:list_models", "inference:batch-create", "api:list_batch_jobs"}
)


def limit_mb_for(request: HttpRequest | None) -> int:
    match = getattr(request, "resolver_match", None)
    if match is None and request is not None:
        # Parsed before the URL was resolved (the API's NUL guard reads forms first).
        try:
            match = resolve(request.path_info)
        except Resolver404:
            match = None
    posting = request is not None and request.method == "POST"
    if posting and match is not None and match.view_name in MODEL_UPLOAD_VIEWS:
        return int(settings.HANGAR_MODEL_LIMIT_MB)
    return int(settings.HANGAR_CODE_LIMIT_MB)


class LimitUploadHandler(FileUploadHandler):
    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit_mb = limit_mb_for(request)
        self.limit = self.limit_mb * 1024 * 1024
        self.body_length = 0
        self.files = 0
        self.refused = ""

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: bytes,  # type: ignore[override]  # the stubs say str; Django passes bytes
        encoding: str | None = None,
    ) -> None:
        self.body_length = content_length

    def new_file(self, field_name: str, file_name: str, *args: Any, **kwargs: Any) -> None:
        self.files += 1
        if self.files > MAX_FILES:
            self._refuse(f"More than {MAX_FILES} files in one upload: upload a zip of a folder.")
            raise StopUpload(connection_reset=False)  # the rest is drained, never kept
        if self.body_length > self.limit + FIELDS_ALLOWANCE:
            self._refuse(f"The upload is larger than {self.limit_mb} MiB.")
            raise StopUpload(connection_reset=False)  # not a byte of it is taken
        if len(file_name) > MAX_NAME_CHARS:
            self._refuse(f"The file name is longer than {MAX_NAME_CHARS} characters.")
            raise SkipFile
        super().new_file(field_name, file_name, *args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.limit:
            self._refuse(f"The upload is larger than {self.limit_mb} MiB.")
            raise SkipFile
        return raw_data  # the next handler keeps it

    def file_complete(self, file_size: int) -> None:
        return None

    def _refuse(self, message: str) -> None:
        self.refused = message


def refused_upload(request: HttpRequest) -> str:
    """Why an upload of this request was dropped while parsing, or ""."""
    if request.method != "POST":
        return ""
    request.POST  # noqa: B018  (parses the body, so the handlers have run)
    for handler in request.upload_handlers:
        if isinstance(handler, LimitUploadHandler) and handler.refused:
            return handler.refused
    return ""
