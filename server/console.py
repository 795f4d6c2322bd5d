"""``/console``: the web console, one page and its scripts and stylesheet from inside the package.

The files live in ``static/console`` (package data, see pyproject.toml): plain ES modules and CSS,
no build step, nothing loaded from another origin.  The page talks only to the public API (and
``/metrics``) of the server that served it, sending the key the user typed in.  Neither the page
nor its assets needs a key.

The page is sent with a Content-Security-Policy that allows scripts, styles and connections from
this origin only and no inline script or style, so a document's text that reached the page as
markup could not run; the scripts also render every value as text (docs/CONSOLE.md).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse, Response

from arrwdb.errors import NotFound

CONSOLE_DIR = Path(__file__).parent / "static" / "console"
PAGE = "index.html"
ASSETS_PATH = "/console/assets"
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# The files served, found once at import: a fixed table, so no request path reaches another file.
ASSETS = {path.name: _MEDIA_TYPES[path.suffix] for path in sorted(CONSOLE_DIR.iterdir()) if path.suffix in _MEDIA_TYPES}

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # The package's files change with an upgrade: the browser asks again (a 304 when unchanged).
    "Cache-Control": "no-cache",
}
PAGE_HEADERS = {
    **_COMMON_HEADERS,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter(tags=["console"], include_in_schema=False)


@router.get("/console")
async def console_page() -> Response:
    return FileResponse(CONSOLE_DIR / PAGE, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get(ASSETS_PATH + "/{name}")
async def console_asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"no console asset {name!r}")
    return FileResponse(CONSOLE_DIR / name, media_type=media_type, headers=_COMMON_HEADERS)
