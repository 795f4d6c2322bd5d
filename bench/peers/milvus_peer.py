"""Milvus Lite in the peers run: embedded (pymilvus + milvus-lite) in a driver process of its own venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from arrwdb.bench.peers.common import PeerSettings, package_version
from arrwdb.bench.peers.dataset import PeerData, recall
from arrwdb.bench.peers.envs import ensure, milvus_env

DRIVER = Path(__file__).parent / "drivers" / "milvus_driver.py"


def run_milvus(
    data: PeerData, settings: PeerSettings, work_dir: Path, inputs: dict[str, Path], progress: Any
) -> dict[str, Any]:
    progress.set_postfix_str("milvus: venv")
    python = ensure(milvus_env(), work_dir.parent)
    out = Path(tempfile.mkdtemp(prefix="milvus-", dir=work_dir))
    spec = {
        "vectors": str(inputs["vectors"].resolve()),
        "queries": str(inputs["queries"].resolve()),
        "out_dir": str(out.resolve()),
        "hnsw": settings.hnsw,
        "k": data.k,
        "batch": settings.batch,
        "clients": list(settings.clients),
        "seconds": settings.seconds,
        "warmup": settings.warmup,
    }
    (out / "spec.json").write_text(json.dumps(spec))
    progress.set_postfix_str("milvus hnsw")
    # Bounded: inserting, flushing and a few seconds of load per point; far less than this limit.
    limit = settings.ready_timeout_s + 120 + len(settings.clients) * (settings.seconds + settings.warmup) * 4
    try:
        with open(work_dir / "milvus.log", "ab") as log:
            done = subprocess.run(
                [str(python), str(DRIVER), str(out / "spec.json")], stdout=log, stderr=subprocess.STDOUT, timeout=limit
            )
        if done.returncode != 0:
            raise RuntimeError(f"the Milvus Lite driver exited with {done.returncode}; see {work_dir / 'milvus.log'}")
        timings = json.loads((out / "timings.json").read_text())
        found = np.load(out / "found.npy")
    finally:
        shutil.rmtree(out, ignore_errors=True)
    progress.update()
    if timings["count"] != len(data.vectors):
        raise RuntimeError(f"Milvus Lite holds {timings['count']} rows after inserting {len(data.vectors)}")
    hnsw = settings.hnsw
    return {
        "how": "Milvus Lite embedded (pymilvus MilvusClient on a .db file), client threads in the same process",
        "version": ", ".join(f"{p} {package_version(python, p)}" for p in ("pymilvus", "milvus-lite")),
        "hnsw": {
            "params": {
                "index_type": "HNSW",
                "M": hnsw["m"],
                "efConstruction": hnsw["ef_construction"],
                "ef": hnsw["ef_search"],
            },
            "insert": timings["insert"],
            "ready_s": timings["ready_s"],
            "insert_and_index_docs_per_s": len(data.vectors) / (timings["insert"]["seconds"] + timings["ready_s"]),
            f"recall_at_{data.k}": recall(found, data.truth),
            "qps": timings["qps"],
        },
    }
