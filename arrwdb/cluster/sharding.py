"""Where a document lives in a sharded library, and how shards' answers become one: pure functions.

A document goes to shard ``blake2b(id) mod shards`` (stable across processes, machines and Python
versions, unlike ``hash``).  Shard ``s`` of a library sits on engine ``(start + s) mod engines``, where
``start`` comes from the library id, so that libraries spread their first shards over the engines.

Merging: every shard answers the same query for the same number of hits, so the best ``n`` hits over
all rows are among the shards' best ``n`` each; sorting their union by score and cutting at ``n`` is
the answer one engine over all the rows gives (ties aside).
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from arrwdb.library.inputs import Hit


def shard_name(library: dict[str, Any], shard: int) -> str:
    """The shard library's name in its engine's store: ``<library id>.s<shard>``."""
    return f"{library['id']}.s{shard}"


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def shard_of(doc_id: str, shards: int) -> int:
    return stable_hash(doc_id) % shards if shards > 1 else 0


def placement(library_id: str, shards: int, engines: Sequence[str]) -> list[str]:
    """The engine of each shard: consecutive engines from one chosen by the library id."""
    if not engines:
        raise ValueError("no engines to place shards on")
    start = stable_hash(library_id) % len(engines)
    return [engines[(start + s) % len(engines)] for s in range(shards)]


def split_by_shard(ids: Sequence[str], shards: int) -> dict[int, list[int]]:
    """Positions of ``ids`` per shard, in input order."""
    positions: dict[int, list[int]] = {}
    for position, doc_id in enumerate(ids):
        positions.setdefault(shard_of(doc_id, shards), []).append(position)
    return positions


def merge_hits(per_shard: Iterable[Sequence[dict[str, Any]]], n: int) -> list[dict[str, Any]]:
    """The best ``n`` of the shards' hits (API Hit dicts, each list best first), best first; equal
    scores keep shard order."""
    ranked = heapq.merge(*per_shard, key=lambda hit: -hit["score"])
    return [hit for _, hit in zip(range(n), ranked, strict=False)]


def as_hits(hits: Sequence[dict[str, Any]]) -> list[Hit]:
    return [
        Hit(h["document_id"], h["chunk_index"], h["score"], h.get("title"), h.get("text"), h.get("metadata") or {})
        for h in hits
    ]


def merge_pages(
    pages: Iterable[tuple[list[dict[str, Any]], str | None]], limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of documents in id order from every shard's page after the same cursor: the first
    ``limit`` ids of their union; the cursor is the last id given when any shard has more."""
    pages = list(pages)
    merged = list(heapq.merge(*(docs for docs, _ in pages), key=lambda doc: doc["id"]))
    more = len(merged) > limit or any(cursor is not None for _, cursor in pages)
    page = merged[:limit]
    return page, (page[-1]["id"] if more and page else None)
