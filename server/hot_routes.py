"""The hot routes: the paths that every search, batch search, embed and insert request takes.

Both the hot path (server/fastpath.py) and the admission gate (server/admission.py, which guards the
device queues' reads: search and embed) recognise them from the raw path, before any routing, so the
matching lives here once.
"""

from __future__ import annotations

from dataclasses import dataclass

SEARCH = "/v1/libraries/{library}/search"
SEARCH_BATCH = "/v1/libraries/{library}/search/batch"
EMBED = "/v1/embed"
EMBEDDINGS = "/v1/embeddings"  # OpenAI's shape (server/openai_api.py), on the same queue as EMBED
DOCUMENTS = "/v1/libraries/{library}/documents"
DOCUMENTS_BATCH = "/v1/libraries/{library}/documents/batch"

_LIBRARY_PREFIX = "/v1/libraries/"
_LIBRARY_SUFFIXES = (
    ("/search", SEARCH),
    ("/search/batch", SEARCH_BATCH),
    ("/documents", DOCUMENTS),
    ("/documents/batch", DOCUMENTS_BATCH),
)
# Refused at the door while the queues are full.  Writes are not: the write queue admits them itself,
# and an import must not be told "overloaded" because searches fill the read queues.
_GUARDED = frozenset({SEARCH, SEARCH_BATCH, EMBED, EMBEDDINGS})


@dataclass(frozen=True)
class RouteLabel:
    """What ``scope["route"]`` holds for a hot request: HttpMetrics labels by its template."""

    path: str


@dataclass(frozen=True)
class HotMatch:
    label: RouteLabel
    library: str  # "" for /v1/embed and /v1/embeddings

    @property
    def guarded(self) -> bool:
        """Whether the admission gate refuses this route while the device queues are full."""
        return self.label.path in _GUARDED


_LABELS = {t: RouteLabel(t) for t in (SEARCH, SEARCH_BATCH, EMBED, EMBEDDINGS, DOCUMENTS, DOCUMENTS_BATCH)}


def match_hot_route(path: str) -> HotMatch | None:
    """The hot route a request path names, with its library; None for every other path.  A library
    is one non-empty path segment, as the router's ``{library}`` is."""
    if path in (EMBED, EMBEDDINGS):
        return HotMatch(_LABELS[path], "")
    if path.startswith(_LIBRARY_PREFIX):
        library_and_rest = path[len(_LIBRARY_PREFIX) :]
        for suffix, template in _LIBRARY_SUFFIXES:
            if library_and_rest.endswith(suffix):
                library = library_and_rest[: -len(suffix)]
                if library and "/" not in library:
                    return HotMatch(_LABELS[template], library)
    return None
