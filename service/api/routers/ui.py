"""``GET /``: the service's own page, a live view of one stream (``/?stream=<id>[&token=<key>]``).

The page and its assets are static files shipped in ``service/api/static/`` (no CDN, nothing from
the internet): vanilla JavaScript draws the stream's inputs and predicted outputs on canvases
from the WebSocket ``/v1/streams/{id}/live`` and reads the served model from ``GET /v1/models``.
The page holds no data, so it needs no API key itself; the key typed into it (or given as
``?token=``) is sent by the browser with its own requests.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from service.api.errors import ApiError, ErrorCode

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The only files served: name -> media type (no directory listing, no path from the request).
ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# Everything comes from this origin; the live feed is a WebSocket to it.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"], name="ui")
async def index() -> Response:
    """The live page."""
    return FileResponse(
        STATIC_DIR / "index.html",
        media_type="text/html; charset=utf-8",
        headers=SECURITY_HEADERS,
    )


@router.api_route("/static/{name}", methods=["GET", "HEAD"], name="ui_asset")
async def asset(name: str) -> Response:
    """A file of the page (``app.js``, ``style.css``)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(ErrorCode.NOT_FOUND, f"no asset {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type, headers=SECURITY_HEADERS)
