"""Streamed file downloads of the pages and the API alike."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import StreamingHttpResponse


def csv_download(chunks: Iterable[str], filename: str) -> StreamingHttpResponse:
    """`filename` must need no quoting (callers build it from names their rules allow)."""
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
