"""docs/API.md names every route the server registers and every error type with its status, so that a
new route or error cannot go undocumented."""

from __future__ import annotations

import re
from pathlib import Path

from arrwdb import errors
from arrwdb.server import admin, console, documents, libraries, memdebug, openai_api, rerank, search, system

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
ROUTERS = (system, libraries, documents, search, admin, memdebug, openai_api, rerank, console)


def error_classes() -> list[type[errors.ArrwdbError]]:
    found = [errors.ArrwdbError]
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.ArrwdbError) and value not in found:
            found.append(value)
    return found


def test_every_route_is_documented() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    routes = [(method, route.path) for module in ROUTERS for route in module.router.routes for method in route.methods]
    assert len(routes) >= 19, f"only {len(routes)} routes found: the routers moved?"
    # A route is documented as `METHOD /path` or `METHOD /path?query`, in the routes table.
    missing = [
        f"{method} {path}" for method, path in routes if not re.search(rf"`{method} {re.escape(path)}[`?]", text)
    ]
    assert not missing, f"routes missing from docs/API.md: {missing}"


def test_every_error_type_is_documented_with_its_status() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    classes = error_classes()
    assert len(classes) >= 15, f"only {len(classes)} error classes found"
    missing = [
        f"{cls.status} {cls.type}"
        for cls in classes
        if not re.search(rf"^\| {cls.status} \| `{cls.type}` \|", text, re.MULTILINE)
    ]
    assert not missing, f"error types missing from the errors table of docs/API.md: {missing}"
