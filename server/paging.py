"""Listings page with a cursor: the body stays a JSON array, the next page's URL goes in ``Link: <…>; rel="next"``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import MediaType, Request, Response
from litestar.params import Parameter
from litestar.serialization import encode_json

from scheduler.records.pages import Cursor, CursorError, Page

__all__ = ["CURSOR", "page_response", "parse_cursor"]

CURSOR = Parameter(description="Where the page starts: the cursor in the previous page's Link header (rel=next); "
                               "leave it out for the first page. One this server did not give: an empty page",
                   max_length=200)


def parse_cursor(token: str | None) -> Cursor | None:
    """The cursor a client sent back. One this server did not give names no record, so nothing comes after it:
    it gives an empty page (no Link), as a cursor past the last page does."""
    if token is None:
        return None
    try:
        return Cursor.parse(token)
    except CursorError:
        return Cursor(float("-inf"), "")


def page_response(request: Request[Any, Any, Any], page: Page, items: list[Any]) -> Response[bytes]:
    """``items`` as the JSON array, and the next page's URL (this one's query, its cursor) in ``Link``."""
    headers = {}
    if page.next is not None:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        query.append(("cursor", page.next.token()))
        headers["Link"] = f'<{request.url.path}?{urlencode(query)}>; rel="next"'
    return Response(content=encode_json(items), media_type=MediaType.JSON, headers=headers)
