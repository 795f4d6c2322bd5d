"""The admission gate and the hot path recognise exactly the hot routes, and their library."""

from __future__ import annotations

import pytest

from arrwdb.server.hot_routes import match_hot_route


@pytest.mark.parametrize(
    ("path", "template", "library", "guarded"),
    [
        ("/v1/libraries/news/search", "/v1/libraries/{library}/search", "news", True),
        ("/v1/libraries/news/search/batch", "/v1/libraries/{library}/search/batch", "news", True),
        ("/v1/libraries/search/search", "/v1/libraries/{library}/search", "search", True),
        ("/v1/embed", "/v1/embed", "", True),
        # Inserts take the hot path, but the write queue admits them itself: the gate lets them by.
        ("/v1/libraries/news/documents", "/v1/libraries/{library}/documents", "news", False),
        ("/v1/libraries/news/documents/batch", "/v1/libraries/{library}/documents/batch", "news", False),
        ("/v1/libraries/search", None, None, None),  # no library segment
        ("/v1/libraries/news/documents/d1", None, None, None),
        ("/v1/libraries/a/b/search", None, None, None),
        ("/v1/libraries/news/search/other", None, None, None),
        # OpenAI's embeddings call shares /v1/embed's queue: refused at the door with it.
        ("/v1/embeddings", "/v1/embeddings", "", True),
        ("/v1/embeddingsx", None, None, None),
        ("/v1/libraries//search", None, None, None),  # an empty library segment is not a route
        ("/v1/embed/", None, None, None),
    ],
)
def test_hot_routes(path: str, template: str | None, library: str | None, guarded: bool | None) -> None:
    match = match_hot_route(path)
    assert (match and match.label.path, match and match.library, match and match.guarded) == (
        template,
        library,
        guarded,
    )
