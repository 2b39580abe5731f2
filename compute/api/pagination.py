"""Cursor pagination for every list: ninja's own CursorPagination (an opaque `cursor`,
`page_size` up to 100), newest first unless a list says otherwise."""

from __future__ import annotations

from ninja.pagination import CursorPagination

PAGE_SIZE = 25
MAX_PAGE_SIZE = 100


def newest_first(*ordering: str) -> dict:
    """`@paginate(CursorPagination, **newest_first("-queued_at", "-id"))`"""
    return {"ordering": ordering, "page_size": PAGE_SIZE, "max_page_size": MAX_PAGE_SIZE}


__all__ = ["CursorPagination", "newest_first"]
