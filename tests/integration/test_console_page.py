"""/console over HTTP, without a browser (tests/browser drives it in chromium: `make console-test`):
the page and every asset are public and served from the package, the page carries a
Content-Security-Policy with no inline script or style and holds none, nothing is loaded from another
origin, the scripts never write markup, and the whole console weighs under 300 KB."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import httpx

from arrwdb.server import console

KEY = "console-page-key"
ROOT = Path(__file__).resolve().parents[2]
MAX_CONSOLE_BYTES = 300 * 1024
# Ways to turn a string into markup or code: none of them appears in the console's scripts.
MARKUP_SINKS = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "srcdoc")


def _served_files() -> list[Path]:
    return [console.CONSOLE_DIR / console.PAGE, *(console.CONSOLE_DIR / name for name in console.ASSETS)]


def _imports(script: str) -> list[str]:
    return re.findall(r'^import .* from "\./([^"]+)";$', script, re.MULTILINE)


def test_page_and_assets_are_public_with_auth_on(start_server):
    server = start_server(api_keys=KEY)
    page = httpx.get(f"{server.url}/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.content == (console.CONSOLE_DIR / console.PAGE).read_bytes()
    loaded = re.findall(r'(?:src|href)="(/[^"]*)"', page.text)
    assert sorted(loaded) == ["/console/assets/app.js", "/console/assets/console.css"]
    for name, media_type in console.ASSETS.items():
        answer = httpx.get(f"{server.url}/console/assets/{name}")  # no key
        assert answer.status_code == 200, name
        assert answer.headers["content-type"] == media_type
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.content == (console.CONSOLE_DIR / name).read_bytes()
    # The API behind it still wants the key.
    assert httpx.get(f"{server.url}/v1/libraries").status_code == 401


def test_page_has_a_strict_content_security_policy_and_nothing_inline(start_server):
    server = start_server()
    page = httpx.get(f"{server.url}/console")
    policy = dict(directive.strip().split(" ", 1) for directive in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and policy["base-uri"] == "'none'"
    assert "unsafe" not in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []  # every script is a file
    assert "<style" not in html and " style=" not in html
    assert re.findall(r"\son[a-z]+=", html) == []  # no inline event handlers


def test_nothing_comes_from_another_origin_and_no_script_writes_markup():
    for path in _served_files():
        text = path.read_text(encoding="utf-8")
        assert (
            re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text.replace("http://www.w3.org/2000/svg", "")) == []
        ), path.name
        if path.suffix == ".js":
            found = [sink for sink in MARKUP_SINKS if sink in text]
            assert found == [], f"{path.name} uses {found}"
            assert "@import" not in text and "url(" not in text
            for imported in _imports(text):
                assert imported in console.ASSETS, f"{path.name} imports {imported}, which is not served"


def test_every_module_is_reached_from_the_entry_point():
    reached, todo = set(), ["app.js"]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo += _imports((console.CONSOLE_DIR / name).read_text(encoding="utf-8"))
    scripts = {name for name in console.ASSETS if name.endswith(".js")}
    assert reached == scripts


def test_the_console_weighs_under_300_kb():
    total = sum(path.stat().st_size for path in _served_files())
    assert 10_000 < total < MAX_CONSOLE_BYTES, total


def test_unknown_assets_are_404(start_server):
    server = start_server()
    for name in ("nope.js", "index.html", "..%2F..%2Fconsole.py", "VENDORED.md"):
        answer = httpx.get(f"{server.url}/console/assets/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["error"]["type"] == "not_found"


def test_console_files_are_package_data():
    """A wheel carries every console file: pyproject's package-data matches each of them."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["arrwdb.server"]
    server_dir = ROOT / config["package-dir"]["arrwdb.server"]
    files = [path.relative_to(server_dir).as_posix() for path in console.CONSOLE_DIR.iterdir()]
    assert "static/console/index.html" in files
    assert all(any(fnmatch.fnmatch(name, pattern) for pattern in patterns) for name in files)
