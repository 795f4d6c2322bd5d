"""The peers benchmark's own logic: data and recall, request encoding, ratios and targets, the report,
and a peer that cannot be installed (its reason must reach the output).  The peers themselves are
run by `arrwdb bench peers`, not here: they need their own venvs, minutes and a network."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import orjson
import pytest

from arrwdb.bench.peers.chroma_peer import insert_requests
from arrwdb.bench.peers.dataset import make_data, recall
from arrwdb.bench.peers.envs import PeerEnv, PeerUnavailable, ensure
from arrwdb.bench.peers.report import format_report, peers_figure, ratios, targets


def test_data_is_unit_length_and_truth_is_exact() -> None:
    data = make_data(rows=2000, queries=20, dimension=32, clusters=20)
    assert data.vectors.shape == (2000, 32) and data.truth.shape == (20, 10)
    assert np.allclose(np.linalg.norm(data.vectors, axis=1), 1.0, atol=1e-5)
    scores = data.queries @ data.vectors.T
    assert np.array_equal(data.truth[:, 0], scores.argmax(axis=1))
    assert recall(data.truth, data.truth) == 1.0
    half = [list(row[:5]) + [-1] * 5 for row in data.truth]
    assert recall(half, data.truth) == 0.5


def test_chroma_inserts_carry_the_vectors_as_little_endian_float32_base64() -> None:
    vectors = make_data(rows=3, queries=1, dimension=8, clusters=2, k=3).vectors
    (request,) = insert_requests("c1", vectors, batch=10)
    body = orjson.loads(request.split(b"\r\n\r\n", 1)[1])
    assert body["ids"] == ["0", "1", "2"]
    decoded = np.frombuffer(base64.b64decode(body["embeddings"][1]), dtype="<f4")
    assert np.array_equal(decoded, vectors[1])


def _entry(insert: float, qps64: float, recall_at_10: float = 0.97) -> dict:
    return {
        "insert": {"docs_per_s": insert, "seconds": 1.0},
        "ready_s": 1.0,
        "insert_and_index_docs_per_s": insert / 2,
        "recall_at_10": recall_at_10,
        "qps": [
            {"clients": 1, "qps": qps64 / 4, "p99_ms": 2.0},
            {"clients": 64, "qps": qps64, "p99_ms": 20.0},
        ],
    }


def _report() -> dict:
    report = {
        "benchmark": "peers",
        "machine": {"cpu": "test cpu", "cores": 2, "date": "2026-01-01T00:00:00"},
        "settings": {"clients": [1, 64], "k": 10, "rows": 100, "dimension": 384},
        "systems": {
            "arrwdb": {"hnsw": _entry(3000, 900), "brute_force": _entry(3000, 500, 1.0)},
            "chroma": {"hnsw": _entry(1000, 300)},
            "milvus": {"hnsw": _entry(2000, 600)},
        },
        "embedding": {
            "arrwdb": {"runs": {"1": [{"clients": 64, "texts_per_request": 1, "texts_per_s": 90.0, "p99_ms": 900}]}},
            "infinity": {"runs": {"1": [{"clients": 64, "texts_per_request": 1, "texts_per_s": 100.0, "p99_ms": 800}]}},
        },
        "unavailable": {"other": "PeerUnavailable: it would not install"},
    }
    report["ratios"] = ratios(report)
    report["targets"] = targets(report)
    return report


def test_ratios_and_targets() -> None:
    report = _report()
    r = report["ratios"]
    assert r["search_qps@64.arrwdb_over_chroma"] == pytest.approx(3.0)
    assert r["insert_docs_per_s.arrwdb_over_milvus"] == pytest.approx(1.5)
    assert r["embed_texts_per_s@64x1,threads=1.arrwdb_over_infinity"] == pytest.approx(0.9)
    met = {t["target"]: t["met"] for t in report["targets"]}
    assert met["search QPS@64 >= 2x Chroma at recall@10 >= 0.95"] is True
    assert met["search QPS@64 >= 2x Milvus Lite at recall@10 >= 0.95"] is False  # 1.5x
    assert met["insert rate >= 2x Chroma"] is True
    assert met["embedding throughput >= Infinity's (64 clients x 1 texts, torch threads 1)"] is False


def test_low_recall_fails_the_qps_target_whatever_the_speed() -> None:
    report = _report()
    report["systems"]["arrwdb"]["hnsw"]["recall_at_10"] = 0.9
    report["targets"] = targets(report)
    assert not next(t for t in report["targets"] if "Chroma at recall" in t["target"])["met"]


def test_report_table_and_png(tmp_path: Path) -> None:
    report = _report()
    text = format_report(report)
    assert "arrwdb hnsw" in text and "chroma hnsw" in text and "[MISSED]" in text
    assert "[not run] other: PeerUnavailable: it would not install" in text
    png = peers_figure(report, tmp_path / "peers.png")
    assert png.stat().st_size > 10_000


@pytest.mark.timeout(120)
def test_a_peer_that_cannot_install_says_why(tmp_path: Path) -> None:
    # --no-index: pip looks at no registry at all, so this fails here, quickly and offline.
    broken = PeerEnv("broken", (("--no-index", "arrwdb-peer-that-does-not-exist"),), "import nothing")
    with pytest.raises(PeerUnavailable) as caught:
        ensure(broken, tmp_path)
    message = str(caught.value)
    assert message.startswith("broken: `") and "failed" in message and "broken-install.log" in message
    assert not list(tmp_path.glob("broken-venv/.arrwdb-ready-*"))  # retried next run, not marked done


def test_both_embedding_servers_get_one_dtype(tmp_path: Path) -> None:
    from arrwdb.bench.peers.embed_peer import _infinity_command, precision
    from arrwdb.runtime.device import cpu_has_fast_bf16

    assert precision("auto") == ("bfloat16" if cpu_has_fast_bf16() else "float32")
    assert precision("float32") == "float32" and precision("bfloat16") == "bfloat16"
    with pytest.raises(ValueError, match="float16"):
        precision("float16")
    command = _infinity_command(tmp_path / "bin" / "python", 1234, "float32")
    assert command[command.index("--dtype") + 1] == "float32"
    assert command[command.index("--host") + 1] == "127.0.0.1"  # loopback only
