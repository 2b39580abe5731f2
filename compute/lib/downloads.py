"""Streamed file downloads of the pages and the API alike."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import StreamingHttpResponse

# What a spreadsheet takes for the start of a formula in a CSV cell.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: object) -> object:
    """A CSV cell of text from elsewhere (a hostile input file's name, a job's output):
    one a spreadsheet would run as a formula starts with an apostrophe, so it shows as
    the text it is (OWASP's advice). Numbers and anything not text stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_download(chunks: Iterable[str], filename: str) -> StreamingHttpResponse:
    """`filename` must need no quoting (callers build it from names their rules allow)."""
    response = StreamingHttpResponse(chunks, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
