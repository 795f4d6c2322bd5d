"""Restart keeps every library, document and vector, and serves the same hits."""

from __future__ import annotations

import numpy as np


def test_restart_restores_everything(start_server, tmp_path):
    data = tmp_path / "store"
    first = start_server(data)
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    with first.client() as c:
        c.create_library("texts")
        c.create_library("vecs", dimension=8, metric="l2", index_type="hnsw", index_params={"m": 8})
        c.add_documents("texts", [{"id": f"t{i}", "text": f"note {i} about subject {i % 3}"} for i in range(10)])
        c.add_document("texts", {"id": "long", "text": " ".join(f"word{i}" for i in range(900))})
        c.add_documents(
            "vecs", [{"id": f"v{i}", "embedding": v.tolist(), "metadata": {"i": i}} for i, v in enumerate(vectors)]
        )
        c.delete_document("vecs", "v7")
        c.add_document("vecs", {"id": "v8", "embedding": (vectors[8] * 2).tolist(), "metadata": {"i": 800}})
        before_libs = c.list_libraries()
        before_docs = {name: list(c.iter_documents(name)) for name in ("texts", "vecs")}
        before_stats = {name: c.statistics(name) for name in ("texts", "vecs")}
        before_hits = c.search("vecs", embedding=vectors[3].tolist(), k=5, filter={"i": {"$lt": 900}})
        before_text = c.search("texts", query="subject 2", k=4)
    first.stop()

    second = start_server(data)
    with second.client() as c:
        assert c.list_libraries() == before_libs
        for name in ("texts", "vecs"):
            assert list(c.iter_documents(name)) == before_docs[name]
            stats = c.statistics(name)
            for key in ("document_count", "chunk_count", "vector_count", "dimension", "index_type", "metric"):
                assert stats[key] == before_stats[name][key]
        after_hits = c.search("vecs", embedding=vectors[3].tolist(), k=5, filter={"i": {"$lt": 900}})
        assert [h["document_id"] for h in after_hits] == [h["document_id"] for h in before_hits]
        assert "v7" not in [h["document_id"] for h in c.search("vecs", embedding=vectors[7].tolist(), k=50)]
        after_text = c.search("texts", query="subject 2", k=4)
        assert after_text == before_text
        # Writes keep working after the restart, with fresh internal ids.
        c.add_document("vecs", {"id": "new", "embedding": vectors[0].tolist()})
        assert c.search("vecs", embedding=vectors[0].tolist(), k=2)[0]["document_id"] in {"new", "v0"}
        assert c.statistics("vecs")["document_count"] == 50
