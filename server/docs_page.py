"""``/docs``: Swagger UI from assets inside the package, and the API-key security scheme.

FastAPI's own ``/docs`` and ``/redoc`` load their scripts from a CDN, so on a host without network
they show a blank page.  ``install_docs`` replaces them with a ``/docs`` whose script, stylesheet and
icon are the vendored ``swagger-ui-dist`` files in ``static/swagger-ui`` (see VENDORED.md there),
served under ``/docs/assets/``.  The schema declares the ways to send a key (server/openapi.py), so
the page has an Authorize button and "Try it out" sends the key.  None of these routes needs a key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import FileResponse, HTMLResponse

from arrwdb.errors import NotFound

SWAGGER_UI_VERSION = "5.36.0"
ASSETS_DIR = Path(__file__).parent / "static" / "swagger-ui"
ASSETS_PATH = "/docs/assets"
# The files the page loads, and the only ones served: a fixed list, so no path reaches other files.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
    "LICENSE": "text/plain; charset=utf-8",
}
# The framework's pages that load from a CDN; replaced (docs) or dropped (redoc, OAuth2 redirect).
_CDN_PAGES = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def install_docs(app: FastAPI) -> None:
    """Serve ``/docs`` from packaged assets instead of the framework's CDN pages."""
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) not in _CDN_PAGES]
    app.docs_url = app.redoc_url = None
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return docs_html(app.title, openapi_url)

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise NotFound(f"no docs asset {name!r}")
        # Versioned by the package: a browser may keep it for a day without asking again.
        return FileResponse(ASSETS_DIR / name, media_type=media_type, headers={"Cache-Control": "max-age=86400"})


def docs_html(title: str, openapi_url: str) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - API docs",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
        swagger_ui_parameters={
            # Swagger UI would otherwise fetch a validity badge from validator.swagger.io.
            "validatorUrl": None,
            # The key entered under Authorize survives a reload of the page.
            "persistAuthorization": True,
        },
    )
