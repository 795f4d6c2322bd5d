"""Several embedding models on one device (ARRWDB_MODELS): local directories of BERT encoders of other
sizes, built with seeded random weights and saved as sentence-transformers / Hugging Face directories
(one BGE-like with CLS pooling and Normalize, one plain Hugging Face encoder without any
sentence-transformers file), served beside the packaged MiniLM and checked against
sentence-transformers' own vectors for the same directories."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from arrwdb.bench.model_dirs import save_encoder

TEXTS = ["the cat sat on the mat", "vector search with micro-batching", "dogs bark at night", "x"]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        # BGE-style: CLS pooling, then Normalize, a 128-token window.
        "bge-small": save_encoder(
            root / "bge", hidden=128, layers=2, heads=4, seed=1, pooling="cls", normalize=True, max_seq_length=128
        ),
        # A plain Hugging Face encoder: sentence-transformers mean-pools it and does not normalise.
        "plain": save_encoder(root / "plain", hidden=96, layers=3, heads=3, seed=2),
    }


@pytest.fixture(scope="module")
def reference(model_dirs: dict[str, Path]) -> dict[str, np.ndarray]:
    """Each directory's vectors of TEXTS as sentence-transformers computes them."""
    from arrwdb.embed.hub_kernels import load_hub_kernels_first

    load_hub_kernels_first()
    from sentence_transformers import SentenceTransformer

    return {
        name: SentenceTransformer(str(path), device="cpu").encode(TEXTS, convert_to_numpy=True)
        for name, path in model_dirs.items()
    }


@pytest.fixture
def server(start_server: Any, model_dirs: dict[str, Path]) -> Any:
    models = ",".join(f"{name}={path}" for name, path in model_dirs.items())
    return start_server(models=models, embed_precision="float32")


def _embeddings(url: str, model: str | None, texts: list[str]) -> np.ndarray:
    body: dict[str, Any] = {"input": texts, "encoding_format": "float"}
    if model is not None:
        body["model"] = model
    answer = httpx.post(f"{url}/v1/embeddings", json=body, timeout=60.0)
    assert answer.status_code == 200, answer.text
    return np.asarray([d["embedding"] for d in answer.json()["data"]], dtype=np.float32)


def test_models_are_listed_with_their_dimensions_and_memory(server: Any) -> None:
    answer = httpx.get(f"{server.url}/v1/models").json()
    models = {m["id"]: m for m in answer["data"]}
    assert list(models) == ["all-MiniLM-L6-v2", "bge-small", "plain"]
    assert [models[m]["dimension"] for m in models] == [384, 128, 96]
    assert models["all-MiniLM-L6-v2"]["default"] and not models["plain"]["default"]
    assert models["bge-small"]["max_tokens"] == 126 and models["plain"]["max_tokens"] == 510
    # Weights: 30,522 x hidden embeddings dominate; fp32.
    assert models["bge-small"]["memory_bytes"] > 30522 * 128 * 4 > models["plain"]["memory_bytes"] / 2
    metrics = httpx.get(f"{server.url}/metrics").text
    for name, model in models.items():
        line = next(
            line for line in metrics.splitlines() if line.startswith(f'arrwdb_model_memory_bytes{{model="{name}"}}')
        )
        assert float(line.split()[-1]) == model["memory_bytes"]


def test_vectors_are_those_of_sentence_transformers(server: Any, reference: dict[str, np.ndarray]) -> None:
    for name, expected in reference.items():
        got = _embeddings(server.url, name, TEXTS)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=2e-5)
    assert np.allclose(np.linalg.norm(reference["bge-small"], axis=1), 1.0)
    assert not np.allclose(np.linalg.norm(reference["plain"], axis=1), 1.0)  # the directory says: no Normalize
    embed = httpx.post(f"{server.url}/v1/embed", json={"texts": TEXTS, "model": "plain"}, timeout=60.0).json()
    assert embed["dimension"] == 96
    np.testing.assert_allclose(np.asarray(embed["embeddings"]), reference["plain"], atol=2e-5)


def test_concurrent_requests_to_every_model_get_their_own_vectors(server: Any) -> None:
    """Requests of three models at once: batches never mix models, so each answer is that model's."""
    alone = {model: _embeddings(server.url, model, TEXTS) for model in ("all-MiniLM-L6-v2", "bge-small", "plain")}
    failures: list[str] = []

    def client(model: str) -> None:
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            for round_ in range(6):
                texts = [TEXTS[(round_ + i) % len(TEXTS)] for i in range(len(TEXTS))]
                answer = http.post("/v1/embed", json={"texts": texts, "model": model})
                got = np.asarray(answer.json()["embeddings"], dtype=np.float32)
                expected = alone[model][[(round_ + i) % len(TEXTS) for i in range(len(TEXTS))]]
                if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-4):
                    failures.append(f"{model} round {round_}")

    threads = [threading.Thread(target=client, args=(m,)) for m in alone for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_unknown_model_is_a_404_naming_the_models(server: Any) -> None:
    answer = httpx.post(f"{server.url}/v1/embed", json={"texts": ["a"], "model": "bge-large"})
    assert answer.status_code == 404
    message = answer.json()["error"]["message"]
    assert all(name in message for name in ("all-MiniLM-L6-v2", "bge-small", "plain"))


def test_token_windows_follow_each_directory(server: Any) -> None:
    """A text longer than bge-small's 128-token window embeds as its first window; usage says so."""
    long_text = " ".join(["word"] * 400)
    answer = httpx.post(f"{server.url}/v1/embeddings", json={"input": long_text, "model": "bge-small"}).json()
    assert answer["usage"]["prompt_tokens"] == 128
    answer = httpx.post(f"{server.url}/v1/embeddings", json={"input": long_text, "model": "plain"}).json()
    assert answer["usage"]["prompt_tokens"] == 402


def test_a_library_embeds_with_its_model(start_server: Any, model_dirs: dict[str, Path], tmp_path: Path) -> None:
    models = ",".join(f"{name}={path}" for name, path in model_dirs.items())
    data = tmp_path / "store"
    server = start_server(data_dir=data, models=models, embed_precision="float32")
    with httpx.Client(base_url=server.url, timeout=60.0) as http:
        created = http.post("/v1/libraries", json={"name": "bge", "model": "bge-small"})
        assert created.status_code == 201, created.text
        assert created.json()["dimension"] == 128 and created.json()["model"] == "bge-small"
        assert http.post("/v1/libraries", json={"name": "mini"}).json()["model"] == "all-MiniLM-L6-v2"
        docs = [{"id": f"d{i}", "text": text} for i, text in enumerate(TEXTS)]
        assert http.post("/v1/libraries/bge/documents/batch", json={"documents": docs}).status_code == 201
        # A text query is embedded by the library's model: each text finds itself first, at cosine 1.
        for i, text in enumerate(TEXTS):
            hits = http.post("/v1/libraries/bge/search", json={"query": text, "k": 1}).json()["results"]
            assert hits[0]["document_id"] == f"d{i}" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        # The stored vectors are bge-small's: its own vector of a text scores 1 against that document.
        vector = _embeddings(server.url, "bge-small", [TEXTS[2]])[0].tolist()
        hits = http.post("/v1/libraries/bge/search", json={"embedding": vector, "k": 1}).json()["results"]
        assert hits[0]["document_id"] == "d2" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        stats = http.get("/v1/libraries/bge/statistics").json()
        assert stats["model"] == "bge-small" and stats["model_memory_bytes"] > 0

        mismatch = http.post("/v1/libraries", json={"name": "x", "model": "plain", "dimension": 384})
        assert mismatch.status_code == 422 and "follows its model" in mismatch.json()["error"]["message"]
        unknown = http.post("/v1/libraries", json={"name": "y", "model": "e5-large"})
        assert unknown.status_code == 404 and "bge-small" in unknown.json()["error"]["message"]
    server.stop()

    # Served again without bge-small: the library keeps its model; its text queries are a clear 404
    # naming the models there are, its vector queries still work.
    again = start_server(data_dir=data, embed_precision="float32")
    with httpx.Client(base_url=again.url, timeout=60.0) as http:
        assert http.get("/v1/libraries/bge").json()["model"] == "bge-small"
        text_query = http.post("/v1/libraries/bge/search", json={"query": TEXTS[0]})
        assert text_query.status_code == 404 and "all-MiniLM-L6-v2" in text_query.json()["error"]["message"]
        hits = http.post("/v1/libraries/bge/search", json={"embedding": vector, "k": 1}).json()["results"]
        assert hits[0]["document_id"] == "d2"
