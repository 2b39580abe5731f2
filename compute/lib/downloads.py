"""Streamed file downloads of the pages and the API alike."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO

from django.http import FileResponse, Http404, StreamingHttpResponse

from compute.lib import output_store

UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")

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


def safe_filename(name: str, fallback: str = "download") -> str:
    """A name from elsewhere (a job's file) as one that needs no quoting in a header and
    means nothing to a shell or a browser: letters, digits, dot, dash and underscore."""
    cleaned = UNSAFE_IN_FILENAME.sub("_", name.rsplit("/", 1)[-1]).strip("._")
    return cleaned[:150] or fallback


def file_download(handle: IO[bytes], filename: str) -> FileResponse:
    """A stored file sent as an attachment, never as a page: whatever bytes a job wrote
    (HTML, say) are saved by the browser, not rendered under Hangar's origin."""
    response = FileResponse(
        handle,
        as_attachment=True,
        filename=safe_filename(filename),
        content_type="application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


def zip_download(chunks: Iterator[bytes], filename: str) -> StreamingHttpResponse:
    """`filename` must need no quoting (callers build it from ids)."""
    response = StreamingHttpResponse(chunks, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def output_file_download(item: output_store.OutputFile | None) -> FileResponse:
    """A job's kept output file (one its listing found, or None) as an attachment; 404
    when it is not listed or gone meanwhile (retention)."""
    if item is None:
        raise Http404("This job has no such output file.")
    try:
        return file_download(output_store.open_file(item), item.path)
    except OSError:
        raise Http404("This output file is gone.") from None


def outputs_zip_download(
    job_id: int, files: list[output_store.OutputFile]
) -> StreamingHttpResponse:
    """All of a job's kept output files as one zip, made as it is sent; 404 when none."""
    if not files:
        raise Http404("This job kept no output files.")
    return zip_download(output_store.zip_stream(files), f"job-{job_id}-outputs.zip")
