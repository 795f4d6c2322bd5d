"""Start-up on a GPU: warm the batch shapes before /ready says yes, and say where libraries landed.

The first CUDA call of each kind pays for lazy kernel loading, cuBLAS handles and autotuning (hundreds
of ms): without a warm-up the first requests after start would pay it.  Runs on the device worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from arrwdb.embed.protocol import Embedder
from arrwdb.index.flat import FlatIndex
from arrwdb.runtime.tuning import WARMUP_BATCH_SIZES

log = logging.getLogger("arrwdb.engine.warmup")

_WARM_ROWS = 4096
_MAX_DIMENSIONS = 4  # distinct library dimensions warmed (each is its own GEMM shape)


def warm_up(device: torch.device, embedder: Embedder | None, dimensions: Iterable[int], max_batch: int) -> None:
    """Embedder forward passes and exact searches at the batch sizes the scheduler forms; CUDA only.
    A failure is logged and start-up goes on: a warm-up is an optimisation, never a requirement."""
    if device.type != "cuda":
        return
    started = time.perf_counter()
    sizes = sorted({min(size, max_batch) for size in WARMUP_BATCH_SIZES})
    warmed = sorted(set(dimensions))[:_MAX_DIMENSIONS]
    try:
        if embedder is not None:
            # Short and long texts: sequence length is part of every attention kernel's shape.
            for text in ("warm up the embedding model", " ".join(["warm"] * 200)):
                for size in sizes:
                    embedder.embed_prepared(embedder.prepare([text] * size))
        rng = np.random.default_rng(0)
        for dimension in warmed:
            rows = rng.standard_normal((_WARM_ROWS, dimension), dtype=np.float32)
            for metric in ("cosine", "l2"):
                index = FlatIndex(dimension, metric, device)
                index.add(np.arange(_WARM_ROWS, dtype=np.int64), rows)
                for size in sizes:
                    index.search(rows[:size], 10)
        torch.cuda.synchronize(device)
    except Exception as exc:
        log.warning("warm-up on %s failed (serving goes on, first requests may be slower): %r", device, exc)
        return
    log.info(
        "warmed up on %s in %.1f s: batch sizes %s, dimensions %s",
        device,
        time.perf_counter() - started,
        sizes,
        warmed,
    )


def report_placement(name: str, index: Any) -> None:
    """Log, by library, an index that is not (wholly) where the device asked: e.g. too big for the GPU."""
    flat = getattr(index, "flat", index)
    note = getattr(flat, "placement_note", "")
    if note:
        log.warning("library %r (%d vectors): %s", name, len(flat), note)


def report_faiss(device: torch.device) -> None:
    """Log once at start whether ANN indexes can be served from the GPU, and why not."""
    if device.type != "cuda":
        return
    from arrwdb.index import faiss_search

    support = faiss_search.gpu_support()
    if support.gpus:
        log.info("FAISS GPU: %d GPU(s), cuVS (CAGRA) %s", support.gpus, "yes" if support.cuvs else "no")
    else:
        log.warning("FAISS GPU is not available, ANN indexes are searched on the CPU: %s", support.note)
