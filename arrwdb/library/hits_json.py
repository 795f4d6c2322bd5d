"""Search answers for the HTTP layer: each query's hits as the JSON array the API returns, written from
pieces of JSON kept on the rows that were hits, without a ``Hit`` object per hit.

Under 64 clients of 64-query HNSW searches on GloVe (2 cores), building the 640 ``Hit`` objects of
each answer on the finishing thread and rendering them on the event loop took ~0.3 of a core: each
hit touched four or five objects of its document (the row's entry, the id, the metadata dict and its
values) that were long out of the CPU's caches (~2.3 us a hit, against ~0.1 us for the same objects
warm).  Without any of that work the server answered 19-21k queries/s instead of 15k.  Here a row's
JSON is rendered the first time it is a hit and kept on its entry (``RowEntry.json_head`` and
``json_tail``: the object before and after the score); an answer is then those bytes and the scores,
joined (~1 us a hit, cold).  Rendering ``Hit`` objects gives the same bytes (tests/unit/test_hits_json.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from arrwdb.library.inputs import Hit

if TYPE_CHECKING:
    from arrwdb.library.library import RowEntry

# The options of every JSON answer (server/responses.py): numpy arrays natively, non-string keys.
JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

_SCORE_MARK = b',"score":0.0,'  # where the score goes in a hit rendered with a score of zero
_BYTES_OBJECT = 33  # CPython's bytes object without its contents


class HitsJSON:
    """One query's hits, best first, as the JSON array of the API's Hit objects (``json``, written into
    an answer as it is)."""

    __slots__ = ("data", "json", "nbytes")

    def __init__(self, json: bytes) -> None:
        self.data = json  # the bytes themselves: what the engine protocol sends (the fragment shares them)
        self.json = orjson.Fragment(json)
        self.nbytes = len(json)

    @classmethod
    def of(cls, hits: Sequence[Hit]) -> HitsJSON:
        return cls(orjson.dumps(list(hits), option=JSON_OPTIONS))


def row_json(entry: RowEntry) -> int:
    """Render the row's hit without its score into ``entry.json_head`` / ``json_tail`` (once: the
    entry is immutable otherwise); the bytes this added, 0 when they were there already."""
    if entry.json_head is not None:
        return 0
    hit = Hit(entry.doc_id, entry.chunk_index, 0.0, entry.title, None, entry.metadata)
    whole = orjson.dumps(hit, option=JSON_OPTIONS)
    # Inside a JSON string every quote is escaped, so the mark (quotes unescaped) is the score key's
    # and nothing else's: the document id cannot hold it, and the title and metadata come after it.
    at = whole.index(_SCORE_MARK) + len(b',"score":')
    # The tail first: a thread that finds the head set (the finishing thread, the event loop) finds
    # the tail set too.
    entry.json_tail = whole[at + len(b"0.0") :]
    entry.json_head = whole[:at]
    return kept_bytes(entry)


def kept_bytes(entry: RowEntry) -> int:
    """The memory a row's rendered hit takes (0 before it was a hit)."""
    if entry.json_head is None or entry.json_tail is None:
        return 0
    return len(entry.json_head) + len(entry.json_tail) + 2 * _BYTES_OBJECT


def queries_json(
    entries: Sequence[RowEntry | None], scores: Sequence[Sequence[float]], at: int
) -> tuple[list[HitsJSON], int]:
    """Each query's hits as JSON from its scores and the entries of its rows from position ``at`` on
    (None for an empty slot or a row no longer live: left out); and the bytes rendered for rows that
    were hits for the first time."""
    flat = [score for row in scores for score in row]
    # orjson writes each float as it would inside a Hit; no number's JSON holds a comma.
    score_json = orjson.dumps(flat)[1:-1].split(b",") if flat else []
    added = 0
    answers = []
    position = 0
    for row in scores:
        pieces = [b"["]
        for entry in entries[at + position : at + position + len(row)]:
            if entry is not None:
                if entry.json_head is None:
                    added += row_json(entry)
                pieces += (entry.json_head, score_json[position], entry.json_tail, b",")  # type: ignore[list-item]
            position += 1
        if len(pieces) > 1:
            pieces[-1] = b"]"  # the last hit's comma
        else:
            pieces.append(b"]")
        answers.append(HitsJSON(b"".join(pieces)))
    return answers, added
