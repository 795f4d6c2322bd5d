"""The pure parts of scale-out: shard routing, exact merging, the catalog, engine placement and the
merged metrics text (arrwdb/cluster/)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from arrwdb.cluster import metrics_text
from arrwdb.cluster.catalog import Catalog
from arrwdb.cluster.placement import Node, plan
from arrwdb.cluster.sharding import merge_hits, merge_pages, placement, shard_of, split_by_shard, stable_hash
from arrwdb.errors import Conflict, NotFound


def test_shard_of_is_stable_and_spreads() -> None:
    assert stable_hash("doc-1") == stable_hash("doc-1")
    counts = [0, 0, 0]
    for i in range(3000):
        counts[shard_of(f"doc-{i}", 3)] += 1
    assert all(800 < c < 1200 for c in counts), counts
    assert shard_of("anything", 1) == 0
    # Values fixed here: a change of the hash would send every stored document to another shard.
    assert stable_hash("doc-1") == 4752762565065110614
    assert [shard_of(f"doc-{i}", 7) for i in range(8)] == [5, 4, 3, 1, 0, 4, 5, 0]


def test_split_by_shard_keeps_input_order() -> None:
    ids = [f"d{i}" for i in range(50)]
    parts = split_by_shard(ids, 4)
    assert sorted(p for positions in parts.values() for p in positions) == list(range(50))
    for shard, positions in parts.items():
        assert positions == sorted(positions)
        assert all(shard_of(ids[p], 4) == shard for p in positions)


def test_placement_uses_consecutive_engines() -> None:
    engines = ["e0", "e1", "e2"]
    chosen = placement("lib", 5, engines)
    start = engines.index(chosen[0])
    assert chosen == [engines[(start + s) % 3] for s in range(5)]
    with pytest.raises(ValueError):
        placement("lib", 1, [])


def _hit(doc: str, score: float) -> dict[str, object]:
    return {"document_id": doc, "chunk_index": 0, "score": score, "title": None, "text": None, "metadata": {}}


def test_merge_hits_equals_the_best_over_all_rows() -> None:
    rng = random.Random(7)
    for _ in range(200):
        rows = [_hit(f"d{i}", rng.random()) for i in range(rng.randint(0, 60))]
        shards = rng.randint(1, 5)
        k = rng.randint(1, 20)
        per_shard = [
            sorted((h for h in rows if shard_of(h["document_id"], shards) == s), key=lambda h: -h["score"])[:k]
            for s in range(shards)
        ]  # type: ignore[arg-type, operator]
        expected = sorted(rows, key=lambda h: -h["score"])[:k]  # type: ignore[arg-type, operator]
        assert merge_hits(per_shard, k) == expected


def test_merge_pages_walks_every_id_once() -> None:
    ids = sorted(f"doc{i:03d}" for i in range(37))
    shards = {s: [d for d in ids if shard_of(d, 3) == s] for s in range(3)}

    def page(shard: int, after: str | None, limit: int) -> tuple[list[dict[str, str]], str | None]:
        rest = [d for d in shards[shard] if after is None or d > after]
        return [{"id": d} for d in rest[:limit]], (rest[limit - 1] if len(rest) > limit else None)

    seen, after = [], None
    for _ in range(100):
        docs, after = merge_pages([page(s, after, 5) for s in range(3)], 5)
        assert len(docs) <= 5
        seen += [d["id"] for d in docs]
        if after is None:
            break
    assert seen == ids


def test_catalog_reserves_publishes_and_refuses_duplicates(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite3", stale_after_s=60)
    entry = {"id": "a" * 32, "tenant": "t", "name": "docs", "shards": 2, "replicas": 1, "placement": ["e0", "e1"]}
    catalog.reserve(entry)
    with pytest.raises(NotFound):  # reserved, not yet listed
        catalog.get("t", "docs")
    assert catalog.entries("t") == []
    with pytest.raises(Conflict):
        catalog.reserve({**entry, "id": "b" * 32})
    catalog.publish({**entry, "settings": {"dimension": 4}})
    assert catalog.get("t", "docs")["settings"] == {"dimension": 4}
    assert catalog.get("t", "a" * 32)["name"] == "docs"
    with pytest.raises(NotFound):
        catalog.get("other", "docs")
    catalog.close()
    reopened = Catalog(tmp_path / "catalog.sqlite3")  # durable
    assert [e["name"] for e in reopened.entries()] == ["docs"]
    reopened.remove("a" * 32)
    assert reopened.entries() == []


def test_catalog_takes_over_a_stale_reservation(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "c.sqlite3", stale_after_s=0.0)
    entry = {"id": "a" * 32, "tenant": "t", "name": "docs"}
    catalog.reserve(entry)  # a frontend died before publishing
    catalog.reserve({**entry, "id": "b" * 32})
    catalog.publish({**entry, "id": "b" * 32})
    assert catalog.get("t", "docs")["id"] == "b" * 32


def test_plan_returns_folders_to_their_nodes_and_fills_room() -> None:
    gpu = Node("n-gpu", "10.0.0.1", gpus=2, folders=(1,))
    cpu = Node("n-cpu", "10.0.0.2", gpus=0, folders=(0,))
    chosen = plan([gpu, cpu])
    assert chosen[0] is cpu and chosen[1] is gpu
    assert sorted(chosen) == [0, 1, 2]  # the GPU node's second GPU gets a new engine
    assert chosen[2] is gpu
    # One shared disk (a local cluster): every node sees every folder, each folder is placed once.
    shared = [Node(f"n{i}", "127.0.0.1", 0, (0, 1)) for i in range(2)]
    assert sorted((n, node.node_id) for n, node in plan(shared).items()) == [(0, "n0"), (1, "n1")]


def test_metrics_merge_labels_each_sample_and_keeps_one_header() -> None:
    one = b'# HELP x_total X.\n# TYPE x_total counter\nx_total 1.0\nx_total{a="b"} 2.0\n'
    two = b"# HELP x_total X.\n# TYPE x_total counter\nx_total 3.0\n"
    text = metrics_text.merge([("e0", one), ("e1", two)]).decode()
    assert text.count("# TYPE x_total counter") == 1
    assert 'x_total{engine="e0"} 1.0' in text
    assert 'x_total{engine="e0",a="b"} 2.0' in text
    assert 'x_total{engine="e1"} 3.0' in text
