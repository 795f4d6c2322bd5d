"""A sharded library's lifecycle on the cluster: its shard libraries created on their engines (undone
when one fails) and published in the catalog, listed and described with their documents summed over
shards, deleted from every copy, and its statistics summed over shards."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from arrwdb.cluster.shard_state import copies_placement, readers, with_copies
from arrwdb.cluster.sharding import shard_name, stable_hash
from arrwdb.engine.api import check_layout
from arrwdb.errors import ArrwdbError, NotFound

if TYPE_CHECKING:
    from arrwdb.cluster.frontend import ClusterEngine

Entry = dict[str, Any]  # a catalog entry (arrwdb.cluster.catalog.Catalog)
_TOTALS = ("document_count", "chunk_count", "vector_count", "memory_bytes")


async def create_library(
    cluster: ClusterEngine,
    tenant: str,
    name: str,
    dimension: int | None,
    index_type: str,
    metric: str,
    params: dict[str, Any],
    model: str | None = None,
    shards: int = 1,
    replicas: int = 1,
) -> dict[str, Any]:
    check_layout(shards, replicas, clustered=True)
    library_id = uuid.uuid4().hex
    engines = sorted(cluster.links, key=lambda n: int(n.rsplit("-", 1)[-1]))
    copies = copies_placement(stable_hash(library_id) % len(engines), shards, replicas, engines)
    entry: Entry = {
        "id": library_id,
        "tenant": tenant,
        "name": name,
        "shards": shards,
        "replicas": replicas,
        "placement": [engines_of[0] for engines_of in copies],
        "copies": copies,
        "in_sync": [list(engines_of) for engines_of in copies],
        "epochs": [1] * shards,
    }
    await cluster._catalog("reserve", entry=entry)
    created: list[tuple[int, str]] = []

    async def make(shard: int, engine: str) -> dict[str, Any]:
        args = {
            "tenant": tenant,
            "name": shard_name(entry, shard),
            "dimension": dimension,
            "index_type": index_type,
            "metric": metric,
            "params": params,
            "model": model,
        }
        link = cluster.link(engine)
        if engine == entry["placement"][shard]:
            body: dict[str, Any] = await link.ask("call", "create_library", args, write=True)
        else:  # a replica's copy starts at the primary's first position
            body = await link.ask("create_copy", args, 1, write=True)
        created.append((shard, engine))
        return body

    try:
        bodies = await cluster._gather([make(s, e) for s in range(shards) for e in copies[s]])
    except BaseException:
        await _undo(cluster, entry, created)
        raise
    first = bodies[0]
    entry["settings"] = {k: first[k] for k in ("dimension", "index_type", "metric", "index_params", "model")}
    entry["created_at"] = first["created_at"]
    await cluster._catalog("publish", entry=entry)
    return library_body(entry, 0)


async def _undo(cluster: ClusterEngine, entry: Entry, created: list[tuple[int, str]]) -> None:
    for shard, engine in created:
        try:
            await cluster.link(engine).ask(
                "call", "delete_library", {"tenant": entry["tenant"], "key": shard_name(entry, shard)}, write=True
            )
        except ArrwdbError:
            continue
    try:
        await cluster._catalog("remove", library_id=entry["id"])
    except ArrwdbError:
        pass


def library_body(entry: Entry, document_count: int) -> dict[str, Any]:
    settings = entry["settings"]
    return {
        "id": entry["id"],
        "name": entry["name"],
        "dimension": settings["dimension"],
        "index_type": settings["index_type"],
        "metric": settings["metric"],
        "index_params": settings["index_params"],
        "document_count": document_count,
        "created_at": entry["created_at"],
        "model": settings["model"],
        "shards": entry["shards"],
        "replicas": entry["replicas"],
    }


async def _document_counts(cluster: ClusterEngine, tenant: str, entries: list[Entry]) -> dict[str, int]:
    """Documents of each library (by id), summed over its shards: one call per engine."""
    wanted: dict[str, list[str]] = {}
    for entry in entries:
        for shard in range(entry["shards"]):
            names = readers(entry, shard)
            engine = next((n for n in names if cluster.link(n).up), names[0])
            wanted.setdefault(engine, []).append(shard_name(entry, shard))
    found = await cluster._gather(
        [cluster.link(engine).ask("describe", tenant, names) for engine, names in wanted.items()]
    )
    counts: dict[str, int] = {}
    for bodies in found:
        for name, body in bodies.items():
            library_id = name.rsplit(".s", 1)[0]
            counts[library_id] = counts.get(library_id, 0) + int(body["document_count"])
    return counts


async def list_libraries(cluster: ClusterEngine, tenant: str) -> list[dict[str, Any]]:
    entries: list[Entry] = await cluster._catalog("entries", tenant=tenant)
    counts = await _document_counts(cluster, tenant, entries)
    return [library_body(entry, counts.get(entry["id"], 0)) for entry in entries]


async def get_library(cluster: ClusterEngine, tenant: str, key: str) -> dict[str, Any]:
    entry = await cluster.entry(tenant, key, fresh=True)
    counts = await _document_counts(cluster, tenant, [entry])
    return library_body(entry, counts.get(entry["id"], 0))


async def delete_library(cluster: ClusterEngine, tenant: str, key: str) -> None:
    entry = with_copies(await cluster.entry(tenant, key, fresh=True))

    async def drop(shard: int, engine: str) -> None:
        try:
            args = {"tenant": tenant, "key": shard_name(entry, shard)}
            await cluster.link(engine).ask("call", "delete_library", args, write=True)
        except NotFound:
            pass

    await cluster._gather([drop(s, e) for s in range(entry["shards"]) for e in entry["copies"][s]])
    await cluster._catalog("remove", library_id=entry["id"])
    cluster.forget(entry)


async def statistics(cluster: ClusterEngine, tenant: str, key: str) -> dict[str, Any]:
    async def run(entry: Entry) -> dict[str, Any]:
        calls = [
            cluster.read_call(entry, s, "statistics", {"tenant": tenant, "key": shard_name(entry, s)})
            for s in range(entry["shards"])
        ]
        per_shard: list[dict[str, Any]] = await cluster._gather(calls)
        total = dict(per_shard[0])
        for field in _TOTALS:
            total[field] = sum(int(stats.get(field, 0)) for stats in per_shard)
        total["documents_loaded"] = all(stats.get("documents_loaded", True) for stats in per_shard)
        total["shards"] = [{"shard": s, "engine": entry["placement"][s], **stats} for s, stats in enumerate(per_shard)]
        return total

    return await cluster.on_shards(tenant, key, run)  # type: ignore[no-any-return]
