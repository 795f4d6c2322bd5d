"""A batch write to a sharded library: each document to the shard of its id, one call per shard, each
shard's part all or nothing; when some shards commit and others refuse, a ``PartialWrite`` that says
which ids were written and which may have been (API.md, Errors)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from arrwdb.cluster.shard_errors import names_shard, renamed
from arrwdb.cluster.shard_state import with_copies
from arrwdb.cluster.sharding import shard_name, split_by_shard
from arrwdb.errors import ArrwdbError, NotFound, OutcomeUnknown, PartialWrite, StaleShardMap
from arrwdb.ipc import wire
from arrwdb.library.chunk_plan import checked_embeddings
from arrwdb.library.inputs import DocumentInput

if TYPE_CHECKING:
    from arrwdb.cluster.frontend import ClusterEngine


async def write_batch(
    cluster: ClusterEngine, tenant: str, key: str, docs: list[DocumentInput], bulk: bool, deadline: float
) -> list[str]:
    """The ids written, in input order (a document without one gets one here, before routing)."""
    entry = await cluster.entry(tenant, key)
    settings = entry["settings"]
    # Vectors checked here, before any shard writes: a bad one refuses the whole batch.
    checked_embeddings(SimpleNamespace(dimension=settings["dimension"], metric=settings["metric"]), docs)  # type: ignore[arg-type]
    docs = [doc if doc.id is not None else replace(doc, id=uuid.uuid4().hex) for doc in docs]
    ids = [doc.id for doc in docs]
    parts = split_by_shard(ids, entry["shards"])  # type: ignore[arg-type]
    seconds = max(0.0, deadline - time.monotonic())

    async def write(shard: int, positions: list[int], entry: dict[str, Any] = entry) -> list[str]:
        described, frames = wire.documents_out([docs[p] for p in positions])
        link = cluster.shard_link(entry, shard)
        return await link.ask(  # type: ignore[no-any-return]
            "upsert",
            tenant,
            shard_name(entry, shard),
            described,
            frames,
            bulk,
            seconds,
            with_copies(entry)["epochs"][shard],
            write=True,
            deadline=deadline,
        )

    shards = list(parts)
    results = await asyncio.gather(*(write(s, parts[s]) for s in shards), return_exceptions=True)
    stale = [i for i, r in enumerate(results) if isinstance(r, StaleShardMap)]
    if stale:  # those shards did nothing: once more to the primaries the catalog names now
        cluster.forget(entry)
        fresh = await cluster.entry(tenant, key, fresh=True)
        again = await asyncio.gather(
            *(write(shards[i], parts[shards[i]], fresh) for i in stale), return_exceptions=True
        )
        for i, result in zip(stale, again, strict=True):
            results[i] = result
    failed = [r for r in results if isinstance(r, BaseException)]
    if not failed:
        return ids  # type: ignore[return-value]
    written = [doc_id for r in results if not isinstance(r, BaseException) for doc_id in r]
    cause = failed[0]
    if isinstance(cause, ArrwdbError):
        renamed(cause, entry)
    if isinstance(cause, NotFound) and names_shard(cause):
        cluster.forget(entry)
        if not written:
            raise NotFound(f"library {key!r} not found")
    if not written and not any(isinstance(r, OutcomeUnknown) for r in failed):
        raise cause
    unknown = [
        docs[p].id for s, r in zip(shards, results, strict=True) if isinstance(r, OutcomeUnknown) for p in parts[s]
    ]
    detail = f"; {len(unknown)} may or may not have been (error.unknown: read them back)" if unknown else ""
    error = PartialWrite(
        f"{len(written)} of {len(ids)} documents were written (error.written){detail}; "
        f"the other shards refused: {_message(cause)}",
        written=written,
        unknown=unknown,  # type: ignore[arg-type]
        retry_after_s=getattr(cause, "retry_after_s", None),
    )
    error.status = max(500, getattr(cause, "status", 500))
    raise error


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, ArrwdbError) else f"{type(exc).__name__}: {exc}"
