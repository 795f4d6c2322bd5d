"""One leg's hits as the library's own row entries and their scores, best first: what the legs of a
keyword or hybrid search bring when every hit's fields are in the library's memory (no text wanted,
documents loaded), so that fusing them and writing the answer's JSON builds no ``Hit`` object and
reads nothing from SQLite.  The answer's JSON is written from each row's kept pieces
(arrwdb.library.hits_json): the same bytes as rendering the ``Hit`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from arrwdb.library.hits_json import HitsJSON, row_json
from arrwdb.library.inputs import Hit

if TYPE_CHECKING:
    from arrwdb.library.library import RowEntry


@dataclass(slots=True)
class RowHits:
    """Hits as rows: ``rows[i]`` is the row id of ``entries[i]``, scored ``scores[i]``, best first.
    ``version``: the library's version (``LibraryState.version``) the entries were read at: the legs
    of one search read at the same version name a chunk by the same row."""

    rows: list[int]
    entries: list[RowEntry]
    scores: list[float]
    version: int

    def hits(self) -> list[Hit]:
        return [
            Hit(entry.doc_id, entry.chunk_index, score, entry.title, None, entry.metadata)
            for entry, score in zip(self.entries, self.scores, strict=True)
        ]


def rows_json(entries: list[RowEntry], scores: list[float]) -> tuple[HitsJSON, int]:
    """The hits as the API's JSON array, and the bytes rendered for rows that were hits for the first
    time (``row_json``)."""
    if not entries:
        return HitsJSON(b"[]"), 0
    # orjson writes each float as it would inside a Hit; no number's JSON holds a comma.
    score_json = orjson.dumps(scores)[1:-1].split(b",")
    added = 0
    pieces = [b"["]
    for entry, score in zip(entries, score_json, strict=True):
        if entry.json_head is None:
            added += row_json(entry)
        pieces += (entry.json_head, score, entry.json_tail, b",")  # type: ignore[list-item]
    pieces[-1] = b"]"  # the last hit's comma
    return HitsJSON(b"".join(pieces)), added
