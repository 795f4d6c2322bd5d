"""`arrwdb bench embed`: texts/s of the packaged model in process, by batch size (no HTTP)."""

from __future__ import annotations

import time
from typing import Any

from arrwdb.bench.datasets import sentences
from arrwdb.bench.machine import machine_info


def run_embed(
    batches: tuple[int, ...] = (1, 8, 64, 256), seconds: float = 3.0, device: str = "cpu", precision: str = "auto"
) -> dict[str, Any]:
    import torch

    from arrwdb.embed.minilm import MiniLMEmbedder
    from arrwdb.runtime.device import model_dtype

    dtype = model_dtype(torch.device(device), precision)  # what the server would run
    model = MiniLMEmbedder(device, dtype=dtype)
    texts = sentences(20_000, seed=3)  # distinct ~12-word sentences
    model.embed(texts[:64])  # warm-up
    figures = []
    cursor = 0
    for batch in batches:
        done = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            chunk = texts[cursor : cursor + batch]
            cursor = (cursor + batch) % (len(texts) - batch)
            model.embed(chunk)
            done += batch
        elapsed = time.perf_counter() - started
        figures.append({"batch": batch, "texts_per_s": done / elapsed, "ms_per_batch": elapsed / (done / batch) * 1000})
    return {
        "benchmark": "embed",
        "machine": machine_info(),
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "model": model.name,
        "figures": figures,
    }


def format_embed(report: dict[str, Any]) -> str:
    lines = [f"{report['model']} on {report['device']} ({report.get('dtype', 'float32')}):"]
    for f in report["figures"]:
        lines.append(f"  batch {f['batch']:>4}: {f['texts_per_s']:8.1f} texts/s ({f['ms_per_batch']:.1f} ms per batch)")
    return "\n".join(lines)
