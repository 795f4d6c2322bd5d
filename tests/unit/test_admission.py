"""The admission gate recognises exactly the hot routes it guards."""

from __future__ import annotations

import pytest

from arrwdb.server.admission import hot_route


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/libraries/news/search", "/v1/libraries/{library}/search"),
        ("/v1/libraries/news/search/batch", "/v1/libraries/{library}/search/batch"),
        ("/v1/embed", "/v1/embed"),
        ("/v1/libraries/search", None),  # no library segment
        ("/v1/libraries/news/documents", None),
        ("/v1/libraries/a/b/search", None),
        ("/v1/libraries/news/search/other", None),
        ("/v1/embeddings", None),
    ],
)
def test_hot_routes(path: str, template: str | None) -> None:
    assert hot_route(path) == template
