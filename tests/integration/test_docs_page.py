"""/docs works without network: the page references only the server's own URLs, each of them is
served from the package, and the schema declares the API-key scheme (the Authorize button)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx

from arrwdb.server import docs_page

KEY = "docs-page-key"
ROOT = Path(__file__).resolve().parents[2]


def _page_urls(html: str) -> list[str]:
    # Every URL the page loads: script and link targets, and the schema Swagger UI fetches.
    return re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)


def test_docs_page_loads_only_local_assets(start_server):
    server = start_server(api_keys=KEY)
    page = httpx.get(f"{server.url}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = _page_urls(page.text)
    assert sorted(urls) == sorted(
        [
            "/docs/assets/swagger-ui.css",
            "/docs/assets/favicon-32x32.png",
            "/docs/assets/swagger-ui-bundle.js",
            "/openapi.json",
        ]
    )
    assert "https://" not in page.text and "http://" not in page.text
    assert '"validatorUrl": null' in page.text  # no badge fetched from validator.swagger.io
    for url in urls:
        answer = httpx.get(f"{server.url}{url}")  # no key: the page and its assets are public
        assert answer.status_code == 200, url
        assert len(answer.content) > 0
    bundle = httpx.get(f"{server.url}/docs/assets/swagger-ui-bundle.js")
    assert bundle.headers["content-type"].startswith("text/javascript")
    assert bundle.content == (docs_page.ASSETS_DIR / "swagger-ui-bundle.js").read_bytes()


def test_cdn_pages_are_gone_and_unknown_assets_are_404(start_server):
    server = start_server()
    assert httpx.get(f"{server.url}/redoc").status_code == 404
    for name in ("nope.js", "VENDORED.md", "..%2F..%2Fdocs_page.py"):
        answer = httpx.get(f"{server.url}/docs/assets/{name}")
        assert answer.status_code == 404
        assert answer.json()["error"]["type"] == "not_found"


def test_schema_declares_the_key_so_try_it_out_can_send_it(start_server):
    server = start_server(api_keys=KEY)
    schema = httpx.get(f"{server.url}/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert schemes["Bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/v1/libraries"]["get"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
    assert not any(path.startswith("/docs") for path in schema["paths"])
    # What "Try it out" sends once a key is entered under Authorize:
    header = schemes["ApiKey"]["name"]
    assert httpx.get(f"{server.url}/v1/libraries", headers={header: KEY}).status_code == 200
    assert httpx.get(f"{server.url}/v1/libraries").status_code == 401


def test_assets_are_package_data():
    """A wheel install carries every vendored file: pyproject's package-data matches each of them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["arrwdb.server"]
    server_dir = ROOT / config["package-dir"]["arrwdb.server"]
    files = [path.relative_to(server_dir).as_posix() for path in docs_page.ASSETS_DIR.iterdir()]
    assert {f"static/swagger-ui/{name}" for name in docs_page.ASSETS} <= set(files)
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns) for name in files)
